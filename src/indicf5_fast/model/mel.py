"""Log-mel front end (no torchaudio): the features IndicF5 / F5-TTS and Vocos were trained on.

Equal to upstream ``f5_tts.model.modules.MelSpec(mel_spec_type="vocos")``, which runs
``torchaudio.transforms.MelSpectrogram(power=1, center=True, normalized=False, norm=None)`` and
then ``log(clamp(x, 1e-5))``: 24 kHz, n_fft 1024, win 1024 (periodic Hann), hop 256, reflect
centre padding, STFT magnitude, 100 HTK-scale triangular filters without area normalisation.

Buffers are laid out as torchaudio lays them out (``spectrogram.window``, ``mel_scale.fb``) so
the Vocos checkpoint's feature-extractor keys load with ``strict=True``.

Shapes: b batch, nw wave samples, f = n_fft // 2 + 1 frequency bins, n frames = nw // hop + 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _hz_to_mel_htk(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_to_hz_htk(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int = 513,
    n_mels: int = 100,
    sample_rate: int = 24000,
    f_min: float = 0.0,
    f_max: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """HTK-scale triangular mel filters, no normalisation: [n_freqs, n_mels].

    In float32 (the default) this is the same arithmetic, in the same order, as torchaudio's
    ``melscale_fbanks(..., norm=None, mel_scale="htk")``, so the checkpoint's ``fb`` buffer and
    upstream's front end are reproduced to the last bit. Float32 rounding of the Hz edges makes
    that table differ from an exact (float64, e.g. librosa's) one by up to ~1e-5; pass
    ``dtype=torch.float64`` for the exact filters.
    """
    if f_max is None:
        f_max = float(sample_rate // 2)
    # centre frequency of every STFT bin: [f]
    bin_hz = torch.linspace(0, sample_rate // 2, n_freqs, dtype=dtype)
    # n_mels + 2 edges equally spaced on the mel scale (the mel ends are float64 Python maths)
    mel_edges = torch.linspace(_hz_to_mel_htk(f_min), _hz_to_mel_htk(f_max), n_mels + 2, dtype=dtype)
    edges_hz = _mel_to_hz_htk(mel_edges)
    width = edges_hz[1:] - edges_hz[:-1]  # [n_mels + 1]
    # signed distance from each bin to each edge: [f, n_mels + 2]
    dist = edges_hz.unsqueeze(0) - bin_hz.unsqueeze(1)
    rising = -dist[:, :-2] / width[:-1]  # [f, n_mels]: 0 at the left edge, 1 at the centre
    falling = dist[:, 2:] / width[1:]  # [f, n_mels]: 1 at the centre, 0 at the right edge
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class _StftMagnitude(nn.Module):
    """|STFT| with centre reflect padding; holds ``window`` like torchaudio's Spectrogram."""

    def __init__(self, n_fft: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(win_length))  # periodic Hann

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # wave: [b, nw] -> spec: [b, f, n] complex -> magnitude (power 1)
        spec = torch.stft(
            wave,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return spec.abs()


class _MelScale(nn.Module):
    """Linear STFT bins -> mel bands; holds ``fb`` [f, n_mels] like torchaudio's MelScale."""

    def __init__(self, n_freqs: int, n_mels: int, sample_rate: int) -> None:
        super().__init__()
        self.register_buffer("fb", mel_filterbank(n_freqs, n_mels, sample_rate))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # spec: [b, f, n] -> [b, n, f] @ fb [f, n_mels] -> [b, n_mels, n] (torchaudio's order)
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    """Wave -> log-mel exactly as upstream F5-TTS's vocos-type ``MelSpec``."""

    def __init__(
        self,
        sample_rate: int = 24000,
        n_fft: int = 1024,
        win_length: int = 1024,
        hop_length: int = 256,
        n_mels: int = 100,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.spectrogram = _StftMagnitude(n_fft, win_length, hop_length)
        self.mel_scale = _MelScale(n_fft // 2 + 1, n_mels, sample_rate)

    def linear(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel magnitudes before the log: wave [..., nw] -> [..., n_mels, nw // hop + 1]."""
        lead = wave.shape[:-1]
        mel = self.mel_scale(self.spectrogram(wave.reshape(-1, wave.shape[-1])))  # [B, n_mels, n]
        return mel.reshape(*lead, *mel.shape[-2:])

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # wave: [b, nw] float -> log-mel [b, n_mels, nw // hop + 1]
        return torch.log(torch.clamp(self.linear(wave), min=1e-5))


class MelFeatures(nn.Module):
    """Vocos's ``MelSpectrogramFeatures`` ("center" padding): only here so the vocoder's
    ``feature_extractor.mel_spec.*`` checkpoint keys have a home.

    Note Vocos's own encoder side clips at 1e-7 (``safe_log``), not F5's 1e-5; the TTS front
    end is :class:`MelSpectrogram`, not this.
    """

    def __init__(
        self, sample_rate: int = 24000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 100
    ) -> None:
        super().__init__()
        self.mel_spec = MelSpectrogram(sample_rate, n_fft, n_fft, hop_length, n_mels)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # wave: [b, nw] -> [b, n_mels, nw // hop + 1]
        return torch.log(torch.clamp(self.mel_spec.linear(wave), min=1e-7))
