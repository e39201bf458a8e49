"""Mel front end: filterbank vs librosa, log-mel vs upstream F5-TTS ``MelSpec``, shapes."""

from __future__ import annotations

import pytest
import torch

from indicf5_fast.model.mel import MelFeatures, MelSpectrogram, mel_filterbank
from upstream_oracle import f5_model, install_torchaudio_standins


def _wave(b: int, nw: int, seed: int = 0) -> torch.Tensor:
    # speech-like level: a few sines plus noise, then digital silence for the last quarter so the
    # log-mel spans its whole range, down to the 1e-5 clamp
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(nw) / 24000.0
    tones = sum(torch.sin(2 * torch.pi * f * t) * a for f, a in [(180.0, 0.3), (950.0, 0.1), (4100.0, 0.02)])
    wave = tones + 0.05 * torch.randn(b, nw, generator=g)
    wave[:, nw - nw // 4 :] = 0.0
    return wave


@pytest.mark.parametrize(
    "n_fft,n_mels,sr,f_max",
    [(1024, 100, 24000, None), (1024, 80, 24000, 8000.0), (400, 40, 16000, None)],
)
def test_filterbank_matches_librosa(n_fft: int, n_mels: int, sr: int, f_max: float | None) -> None:
    librosa = pytest.importorskip("librosa")
    n_freqs = n_fft // 2 + 1
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=f_max, htk=True, norm=None, dtype="float64"
    )
    ref = torch.from_numpy(ref).T  # [f, n_mels]
    # the formula itself is librosa's HTK / no-norm bank ...
    exact = mel_filterbank(n_freqs, n_mels, sr, f_max=f_max, dtype=torch.float64)
    torch.testing.assert_close(exact, ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(exact.float(), ref.float(), atol=1e-6, rtol=0)
    # ... and the float32 default (torchaudio's arithmetic, what the checkpoint stores) differs only
    # by float32 rounding of the Hz edges
    fb = mel_filterbank(n_freqs, n_mels, sr, f_max=f_max)
    assert fb.dtype == torch.float32 and fb.shape == (n_freqs, n_mels)
    torch.testing.assert_close(fb, ref.float(), atol=1e-5, rtol=0)
    assert bool((fb.amax(dim=0) > 0.5).all()), "every filter must have a peak"


@pytest.mark.parametrize("nw", [1000, 5000, 24000])
def test_mel_shape_and_keys(nw: int) -> None:
    mel = MelSpectrogram()(_wave(2, nw))
    assert mel.shape == (2, 100, nw // 256 + 1)
    assert torch.isfinite(mel).all()
    assert list(MelSpectrogram().state_dict()) == ["spectrogram.window", "mel_scale.fb"]
    assert list(MelFeatures().state_dict()) == ["mel_spec.spectrogram.window", "mel_spec.mel_scale.fb"]
    # leading dims are kept: [nw] -> [100, n]
    assert MelSpectrogram()(_wave(1, nw)[0]).shape == (100, nw // 256 + 1)


def test_mel_buffers_are_formula_values() -> None:
    m = MelSpectrogram()
    torch.testing.assert_close(m.spectrogram.window, torch.hann_window(1024), atol=0, rtol=0)
    torch.testing.assert_close(m.mel_scale.fb, mel_filterbank(), atol=0, rtol=0)


@pytest.mark.parametrize("b,nw", [(1, 24000), (2, 7777)])
def test_mel_matches_upstream_melspec(b: int, nw: int) -> None:
    f5_model()
    install_torchaudio_standins()  # torchaudio.transforms.MelSpectrogram <- librosa filters + torch.stft
    from f5_tts.model.modules import MelSpec

    wave = _wave(b, nw, seed=b)
    ref = MelSpec(mel_spec_type="vocos")(wave)
    ours = MelSpectrogram()
    got = ours(wave)
    assert got.shape == ref.shape == (b, 100, nw // 256 + 1)
    assert bool((ref <= torch.log(torch.tensor(1e-5)) + 1e-6).any()), "test should reach the clamp"
    # our default bank is torchaudio's float32 arithmetic; the stand-in's is librosa's (float64,
    # cast): they differ by <= ~1e-5 (test_filterbank_matches_librosa), which shows up as ~1e-5
    # on log values near 0
    torch.testing.assert_close(got, ref, atol=3e-5, rtol=1e-5)
    # with the same (exact) bank the pipeline itself — STFT, magnitude, projection, clamp, log —
    # matches upstream's to float32 rounding
    ours.mel_scale.fb.copy_(mel_filterbank(dtype=torch.float64).float())
    torch.testing.assert_close(ours(wave), ref, atol=1e-5, rtol=1e-5)
