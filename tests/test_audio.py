"""Audio front/back end: reading, resampling, reference rules, silence handling, encoding.

References: pydub (test-only; the silence rules are checked sample-for-sample against it), scipy's
resample_poly, values produced by torchaudio's Resample, and the upstream cross-fade written out.
"""

from __future__ import annotations

import io
import math
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from indicf5_fast.errors import AudioError, InputError
from indicf5_fast.frontend import audio as A

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydub warns that ffmpeg is absent (not needed for raw PCM)
    pydub = pytest.importorskip("pydub")
    from pydub import AudioSegment, silence


# ----------------------------------------------------------------------------- helpers


def _wav_bytes(x: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _speechlike(rng, sr: int, pattern: list[tuple[str, float]], channels: int = 1) -> np.ndarray:
    """Bursts of tones / noise separated by quiet gaps, quantized to int16 then back to float
    (so the float is exactly what soundfile returns for a 16-bit file). Returns [c, n] float32."""
    out = []
    for kind, sec in pattern:
        n = int(sec * sr)
        t = np.arange(n) / sr
        if kind == "tone":
            f = rng.uniform(120, 400)
            env = 0.05 + 0.4 * np.abs(np.sin(np.pi * t * rng.uniform(2, 6)))
            x = env * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 3.1 * f * t))
        elif kind == "noise":
            x = rng.standard_normal(n) * 0.08
        else:  # "sil@-NN": a noise floor at about -NN dBFS
            x = rng.standard_normal(n) * 10 ** (float(kind.split("@")[1]) / 20)
        out.append(x)
    x = np.concatenate(out)
    x = np.stack([x * (1.0 - 0.3 * c) for c in range(channels)])
    q = np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)
    return q.astype(np.float32) / 32768.0


def _to_seg(x: np.ndarray, sr: int) -> AudioSegment:
    x2 = x[None] if x.ndim == 1 else x
    q = np.rint(x2 * 32768).astype("<i2").T.reshape(-1)  # interleaved
    return AudioSegment(data=q.tobytes(), sample_width=2, frame_rate=sr, channels=x2.shape[0])


def _from_seg(seg: AudioSegment, channels: int) -> np.ndarray:
    q = np.array(seg.get_array_of_samples(), dtype=np.int16).reshape(-1, channels).T
    x = q.astype(np.float32) / 32768.0
    return x[0] if channels == 1 else x


def _indicf5_reference(aseg: AudioSegment, limit: int = 15000) -> AudioSegment:
    """IndicF5 `preprocess_ref_audio_text` (audio part) + its `remove_silence_edges`, on pydub."""

    def clip(min_len, thresh):
        wave = AudioSegment.silent(duration=0)
        for seg in silence.split_on_silence(aseg, min_len, thresh, keep_silence=1000, seek_step=10):
            if len(wave) > 6000 and len(wave + seg) > limit:
                break
            wave += seg
        return wave

    wave = clip(1000, -50)
    if len(wave) > limit:
        wave = clip(100, -40)
    if len(wave) > limit:
        wave = wave[:limit]
    wave = wave[silence.detect_leading_silence(wave, silence_threshold=-42) :]
    end = wave.duration_seconds
    for ms in reversed(wave):
        if ms.dBFS > -42:
            break
        end -= 0.001
    return wave[: int(end * 1000)] + AudioSegment.silent(duration=50)


# ----------------------------------------------------------------------------- reading


def test_read_wav_flac_ogg_and_sources(tmp_path):
    x = _speechlike(np.random.default_rng(0), 24000, [("tone", 0.5)])[0]
    path = tmp_path / "a.wav"
    sf.write(path, x, 24000, subtype="PCM_16")
    for src in (str(path), path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        y, sr = A.read_audio(src)
        assert sr == 24000 and y.dtype == np.float32 and np.array_equal(y, x)  # int16/32768, exact
    flac = tmp_path / "a.flac"
    sf.write(flac, x, 16000)
    assert np.array_equal(A.read_audio(flac)[0], x)
    buf = io.BytesIO()
    sf.write(buf, x, 22050, format="OGG")
    y, sr = A.read_audio(buf.getvalue())
    assert sr == 22050 and abs(len(y) - len(x)) < 2048
    y, _ = A.read_audio(_wav_bytes(x * 3.0, 24000, "FLOAT"))  # float WAV: no clipping, any subtype
    assert np.allclose(y, x * 3.0)


def test_read_stereo_is_channel_mean():
    x = _speechlike(np.random.default_rng(1), 24000, [("noise", 0.3)], channels=2)
    raw = _wav_bytes(x.T, 24000)
    y, _ = A.read_audio(raw)
    assert y.shape == (x.shape[1],)
    assert np.array_equal(y, torch.from_numpy(x).mean(dim=0).numpy())
    assert np.allclose(y, x.mean(axis=0), atol=1e-7)
    both, _ = A.read_audio(raw, mono=False)
    assert both.shape == x.shape and np.array_equal(both, x)


@pytest.mark.parametrize(
    "src, match",
    [
        (b"definitely not audio" * 10, "could not decode"),
        (b"", "empty"),
        (_wav_bytes(np.zeros(100, np.float32), 24000)[:30], "could not decode"),
        (_wav_bytes(np.zeros(0, np.float32), 24000), "empty"),
        (_wav_bytes(np.array([0.1, np.nan, 0.2], np.float32), 24000, "FLOAT"), "NaN"),
        (_wav_bytes(np.array([0.1, np.inf, 0.2], np.float32), 24000, "FLOAT"), "NaN or infinite"),
        (12345, "unsupported audio source"),
    ],
)
def test_read_errors(src, match):
    with pytest.raises(AudioError, match=match) as e:
        A.read_audio(src)
    assert "\n" not in str(e.value) and "BytesIO" not in str(e.value) and e.value.param == "ref_audio"


def test_read_missing_file_and_absurd_rate(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        A.read_audio(tmp_path / "nope.wav")
    raw = bytearray(_wav_bytes(np.full(100, 0.1, np.float32), 24000))
    raw[24:28] = struct.pack("<I", 10**9)  # the fmt chunk's sample rate field
    with pytest.raises(AudioError, match="sample rate"):
        A.read_audio(bytes(raw))


# ----------------------------------------------------------------------------- resampling

# Produced by torchaudio.transforms.Resample(sr, 24000) on x = 0.5·sin(0.05·k), k < 4410, float32.
_TA_GOLDEN = {
    44100: (2400, {0: 0.0036494650412350893, 1: 0.045319125056266785, 7: 0.29996269941329956,
                   100: 0.11757879704236984, 1234: 0.13650985062122345, -1: 0.25444895029067993}),
    16000: (6615, {0: 6.964563362998888e-05, 1: 0.015055262483656406, 7: 0.11565309017896652,
                   100: -0.09532652795314789, 1234: -0.14430992305278778, -1: 0.17894554138183594}),
    22050: (4800, {0: 6.964562635403126e-05, 1: 0.02252601832151413, 7: 0.15816019475460052,
                   100: -0.49656394124031067, 1234: 0.06889399141073227, -1: 0.24040983617305756}),
}  # fmt: skip


@pytest.mark.parametrize("sr", sorted(_TA_GOLDEN))
def test_resample_matches_torchaudio_values(sr):
    x = (np.sin(np.arange(4410, dtype=np.float64) * 0.05) * 0.5).astype(np.float32)
    n, values = _TA_GOLDEN[sr]
    y = A.resample(x, sr, 24000)
    assert y.dtype == np.float32 and y.shape == (n,)
    for i, v in values.items():
        assert y[i] == pytest.approx(v, abs=2e-7)


def test_resample_kernel_shape_and_dc_gain():
    # 44.1k→24k reduces to 441→320; width = ceil(6·441/(320·0.99)) = 9; each phase sums to ~1 (DC gain)
    k, width = A._sinc_kernel(441, 320, torch.float32)
    assert width == 9 and tuple(k.shape) == (320, 1, 2 * 9 + 441)
    assert torch.allclose(k.double().sum(-1), torch.ones(320, 1, dtype=torch.float64), atol=2e-3)


def test_resample_identity_length_kinds():
    x = np.random.default_rng(2).standard_normal(1001).astype(np.float32)
    assert A.resample(x, 24000, 24000) is x
    for sr in (8000, 16000, 22050, 44100, 48000, 11025):
        assert A.resample(x, sr).shape == (math.ceil(1001 * 24000 / sr),)
    t = torch.from_numpy(np.stack([x, -x]))[None]  # [1, 2, n]
    y = A.resample(t, 16000)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 2, 1502)
    assert torch.equal(y[0, 1], -y[0, 0])
    # conv1d may pick another algorithm for a batch of 2: equal up to float32 rounding
    assert np.allclose(y[0, 0].numpy(), A.resample(x, 16000), atol=1e-6)
    y64 = A.resample(x.astype(np.float64), 16000)
    assert y64.dtype == np.float64 and np.allclose(y64, y[0, 0].numpy(), atol=1e-5)
    for bad in ((0, 24000), (16000, -1), (16000.5, 24000)):
        with pytest.raises(InputError):
            A.resample(x, *bad)


@pytest.mark.parametrize("sr", [16000, 22050, 44100, 48000])
def test_resample_tone_and_scipy(sr):
    n = sr  # 1 s
    t = np.arange(n) / sr
    x = (0.4 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 3300 * t)).astype(np.float32)
    y = A.resample(x, sr, 24000)
    spec = np.abs(np.fft.rfft(y[2000:-2000] * np.hanning(len(y) - 4000)))
    freqs = np.fft.rfftfreq(len(y) - 4000, 1 / 24000)
    assert abs(freqs[np.argmax(spec)] - 1000) < 2.0  # the tone's frequency survives
    g = math.gcd(sr, 24000)
    ref = resample_poly(x.astype(np.float64), 24000 // g, sr // g)
    m = min(len(ref), len(y))
    err = y[500 : m - 500] - ref[500 : m - 500]  # away from the edges, both are near-ideal
    assert np.sqrt(np.mean(err**2)) < 2e-3


# ----------------------------------------------------------------------------- reference rules


def test_reference_rms_rule():
    x = (np.sin(np.arange(24000) * 0.01) * 0.02).astype(np.float32)
    y, rms = A.normalize_reference_rms(x)
    assert rms == pytest.approx(0.02 / math.sqrt(2), rel=1e-3)
    assert float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(0.1, rel=1e-5)
    t = torch.from_numpy(x)
    ref_rms = torch.sqrt(torch.mean(torch.square(t)))  # upstream, verbatim
    assert np.array_equal(y, (t * 0.1 / ref_rms).numpy()) and rms == float(ref_rms)
    loud = x * 20
    y2, rms2 = A.normalize_reference_rms(torch.from_numpy(loud))
    assert isinstance(y2, torch.Tensor) and np.array_equal(y2.numpy(), loud) and rms2 > 0.1
    for bad, match in ((np.zeros(100, np.float32), "silent"), (np.full(9, 1e-12, np.float32), "silent"),
                       (np.array([0.1, np.nan], np.float32), "NaN"), (np.zeros(0, np.float32), "empty")):  # fmt: skip
        with pytest.raises(AudioError, match=match):
            A.normalize_reference_rms(bad)


@pytest.mark.parametrize(
    "text, want",
    [("hello", "hello. "), ("hello.", "hello. "), ("hello. ", "hello. "), ("你好。", "你好。"),
     ("नमस्ते।", "नमस्ते।. "), ("hi ", "hi . "), ("a?", "a?. ")],
)  # fmt: skip
def test_reference_text_rule(text, want):
    assert A.prepare_reference_text(text) == want


def test_reference_text_empty():
    for bad in ("", "   ", None):
        with pytest.raises(InputError) as e:
            A.prepare_reference_text(bad)
        assert e.value.param == "ref_text"


_PATTERNS = {
    "short": (24000, [("sil@-70", 0.4), ("tone", 1.5), ("sil@-60", 0.3), ("noise", 1.0), ("sil@-65", 0.8)]),
    "long_gaps": (24000, [("tone", 3.5), ("sil@-62", 1.3), ("noise", 3.0), ("sil@-70", 1.5), ("tone", 4.0),
                          ("sil@-58", 1.2), ("tone", 5.0), ("sil@-66", 1.1), ("tone", 3.0)]),
    "short_gaps": (16000, [("tone", 2.7), ("sil@-45", 0.35), ("noise", 3.1), ("sil@-47", 0.25), ("tone", 4.2),
                           ("sil@-44", 0.5), ("tone", 3.3), ("sil@-46", 0.3), ("tone", 4.4), ("sil@-60", 0.2)]),
    "no_gaps": (44100, [("noise", 17.3)]),
    "edges": (22050, [("sil@-80", 2.0), ("tone", 2.2), ("sil@-43", 0.6), ("tone", 1.1), ("sil@-41", 1.7)]),
    "first_piece_long": (24000, [("tone", 16.2), ("sil@-70", 1.4), ("tone", 2.0)]),
    "odd_rate": (12345, [("tone", 7.0), ("sil@-70", 1.2), ("noise", 8.0), ("sil@-55", 1.05), ("tone", 2.0)]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_PATTERNS))
def test_prepare_reference_audio_matches_pydub(name):
    sr, pattern = _PATTERNS[name]
    x = _speechlike(np.random.default_rng(len(name)), sr, pattern)[0]
    ours = A.prepare_reference_audio(x, sr)
    want = _from_seg(_indicf5_reference(_to_seg(x, sr)), 1)
    assert ours.dtype == np.float32 and ours.shape == want.shape
    assert np.array_equal(ours, want)
    assert len(ours) <= int(15.05 * sr) + 1


@pytest.mark.parametrize("seed", range(6))
def test_prepare_reference_audio_random_vs_pydub(seed):
    rng = np.random.default_rng(100 + seed)
    sr = int(rng.choice([16000, 22050, 24000, 32000, 44100, 48000]))
    kinds = ["tone", "noise", "sil@-80", "sil@-55", "sil@-48", "sil@-43", "sil@-41", "sil@-38"]
    pattern = [
        (str(rng.choice(kinds)), float(rng.uniform(0.05, 3.0))) for _ in range(int(rng.integers(2, 14)))
    ]
    x = _speechlike(rng, sr, pattern)[0]
    want = _from_seg(_indicf5_reference(_to_seg(x, sr)), 1)
    assert np.array_equal(A.prepare_reference_audio(x, sr), want)


def test_prepare_reference_audio_stereo_and_limits():
    sr = 24000
    x = _speechlike(np.random.default_rng(7), sr, _PATTERNS["long_gaps"][1], channels=2)
    ours = A.prepare_reference_audio(x, sr)
    want = _from_seg(_indicf5_reference(_to_seg(x, sr)), 2)
    assert ours.shape == want.shape and np.array_equal(ours, want)
    # upstream F5-TTS's 12 s limit
    x1 = x[0]
    assert np.array_equal(
        A.prepare_reference_audio(x1, sr, 12.0), _from_seg(_indicf5_reference(_to_seg(x1, sr), 12000), 1)
    )
    # all silent: only pydub's 50 ms (1198 samples at 24 kHz after its ratecv), then the RMS rule rejects it
    quiet = A.prepare_reference_audio(np.zeros(sr * 3, np.float32), sr)
    assert quiet.shape == (1198,) and not quiet.any()
    with pytest.raises(AudioError, match="silent"):
        A.normalize_reference_rms(quiet)
    with pytest.raises(AudioError):
        A.prepare_reference_audio(np.zeros(10, np.int16), sr)


# ----------------------------------------------------------------------------- output side


def _upstream_cross_fade(waves, seconds, sr=24000):
    final = waves[0]
    for nxt in waves[1:]:
        k = min(int(seconds * sr), len(final), len(nxt))
        if k <= 0:
            final = np.concatenate([final, nxt])
            continue
        ov = final[-k:] * np.linspace(1, 0, k) + nxt[:k] * np.linspace(0, 1, k)
        final = np.concatenate([final[:-k], ov, nxt[k:]])
    return final


def test_cross_fade_join_matches_upstream():
    rng = np.random.default_rng(3)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (9000, 2000, 30, 5000, 0, 7000)]
    for seconds in (0.15, 0.05, 0.0):
        want = np.concatenate(waves) if seconds <= 0 else _upstream_cross_fade(waves, seconds)
        got = A.cross_fade_join(waves, seconds=seconds)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want.astype(np.float32))
    assert A.cross_fade_join([]).shape == (0,)
    assert np.array_equal(A.cross_fade_join(waves[:1]), waves[0])


def test_remove_long_silences_and_postprocess_match_pydub():
    sr = 24000
    pattern = [("sil@-70", 1.3), ("tone", 1.0), ("sil@-60", 2.2), ("noise", 0.7), ("sil@-45", 1.5),
               ("tone", 0.5), ("sil@-80", 0.9), ("tone", 0.4), ("sil@-75", 1.6)]  # fmt: skip
    x = _speechlike(np.random.default_rng(4), sr, pattern)[0]
    segs = silence.split_on_silence(_to_seg(x, sr), 1000, -50, keep_silence=500, seek_step=10)
    want = _from_seg(sum(segs, AudioSegment.silent(duration=0)), 1)
    got = A.remove_long_silences(x, sr)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert A.remove_long_silences(np.zeros(sr * 2, np.float32), sr).shape == (0,)

    # IndicF5 INF5Model.forward tail: sf.write (PCM_16) → pydub → remove_sil → -20 dBFS → int16
    y = x * 0.9 + 0.001
    buf = io.BytesIO()
    sf.write(buf, y, samplerate=24000, format="WAV")
    buf.seek(0)
    seg = AudioSegment(
        data=sf.read(buf, dtype="int16")[0].astype("<i2").tobytes(), sample_width=2, frame_rate=sr, channels=1
    )
    seg = sum(
        silence.split_on_silence(seg, 1000, -50, keep_silence=500, seek_step=10),
        AudioSegment.silent(duration=0),
    )
    seg = seg.apply_gain(-20.0 - seg.dBFS)
    want = np.array(seg.get_array_of_samples(), dtype=np.int16)
    got = A.postprocess_indicf5(y)
    assert got.dtype == np.int16 and np.array_equal(got, want)
    loud = A.normalize_dbfs(y)
    assert 20 * np.log10(np.sqrt(np.mean(loud.astype(np.float64) ** 2))) == pytest.approx(-20.0, abs=1e-3)
    assert not A.normalize_dbfs(np.zeros(10, np.float32)).any()


def test_to_int16_matches_libsndfile():
    x = np.random.default_rng(5).uniform(-1.3, 1.3, 20000).astype(np.float32)
    x[:8] = [1.0, -1.0, 0.5, -0.5, 1 / 65534, -1 / 65536, 0.0, 32767 / 32768]
    # just below a step of 1/32768: libsndfile rounds at 2^-31 first, so plain floor(x·32768) is off
    x[8:608] = (np.arange(-300, 300) + 0.999995) / 32768
    want, _ = sf.read(io.BytesIO(_wav_bytes(x, 24000)), dtype="int16")
    assert np.array_equal(A.to_int16(x), want)
    q = np.arange(-32768, 32768, dtype=np.int16)
    assert np.array_equal(A.to_int16(torch.from_numpy(q.astype(np.float32) / 32768)), q)  # lossless


# ----------------------------------------------------------------------------- encoding


def test_encode_round_trips(tmp_path):
    x = _speechlike(np.random.default_rng(6), 24000, [("tone", 0.3)])[0]
    for fmt in ("wav", "flac"):
        y, sr = sf.read(io.BytesIO(A.encode_audio(x, 24000, fmt)), dtype="float32")
        assert sr == 24000 and np.array_equal(y, x)
    raw = A.encode_audio(x, 24000, "pcm")
    assert len(raw) == 2 * len(x) and np.array_equal(np.frombuffer(raw, "<i2"), A.to_int16(x))
    fl = A.encode_audio(x * 2, 24000, "wav", subtype="FLOAT")
    info = sf.info(io.BytesIO(fl))
    assert info.subtype == "FLOAT" and np.array_equal(sf.read(io.BytesIO(fl), dtype="float32")[0], x * 2)
    assert np.array_equal(np.frombuffer(A.encode_audio(x, 24000, "pcm", "FLOAT"), "<f4"), x)
    for ext in ("wav", "flac", "pcm"):
        A.write_audio(tmp_path / f"o.{ext}", x, 24000)
    assert np.array_equal(A.read_audio(tmp_path / "o.flac")[0], x)
    assert (tmp_path / "o.pcm").read_bytes() == raw
    for args in ((x, 24000, "mp3"), (x, 24000, "wav", "PCM_8"), (x, 24000, "flac", "FLOAT")):
        with pytest.raises(InputError):
            A.encode_audio(*args)
    with pytest.raises(InputError):
        A.write_audio(tmp_path / "o.xyz", x, 24000)


def test_wav_stream_header():
    h = A.wav_stream_header(24000)
    assert len(h) == 44 and h[:4] == b"RIFF" and h[8:16] == b"WAVEfmt " and h[36:40] == b"data"
    assert struct.unpack("<I", h[4:8])[0] == 0xFFFFFFFF == struct.unpack("<I", h[40:44])[0]
    tag, ch, sr, byte_rate, block, bits = struct.unpack("<HHIIHH", h[20:36])
    assert (tag, ch, sr, byte_rate, block, bits) == (1, 1, 24000, 48000, 2, 16)
    x = _speechlike(np.random.default_rng(8), 24000, [("tone", 0.2)])[0]
    y, sr = sf.read(io.BytesIO(h + A.encode_audio(x, 24000, "pcm")), dtype="float32")
    assert sr == 24000 and np.array_equal(y, x)  # a streamed body decodes as a normal WAV
    assert struct.unpack("<H", A.wav_stream_header(24000, bits=32)[20:22])[0] == 3
    with pytest.raises(InputError):
        A.wav_stream_header(24000, bits=8)
