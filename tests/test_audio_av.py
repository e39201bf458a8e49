"""References in the formats phones and browsers produce (m4a/AAC, mp4, webm/Opus), decoded
through PyAV after libsndfile; files written by PyAV itself."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from indicf5_fast.errors import AudioError
from indicf5_fast.frontend import audio as A

av = pytest.importorskip("av")


def tone(seconds: float, sr: int, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([x * (1.0 - 0.5 * c) for c in range(channels)]).astype(np.float32)  # [c, n]


def encode(wave: np.ndarray, sr: int, fmt: str, codec: str, rate: int | None = None, **opts) -> bytes:
    """[c, n] float32 at sr -> bytes of a `fmt` container with one `codec` stream (PyAV)."""
    layout = "mono" if wave.shape[0] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate or sr, layout=layout, options=opts)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="fltp", layout=layout)
        frame.sample_rate = sr
        frames = av.AudioResampler(format="fltp", layout=layout, rate=rate or sr).resample(frame)
        for f in frames:
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def m4a(seconds=1.0, sr=24000, **kw) -> bytes:
    return encode(tone(seconds, sr, **kw), sr, "ipod", "aac")


def webm(seconds=1.0, sr=48000, **kw) -> bytes:
    return encode(tone(seconds, sr, **kw), sr, "webm", "libopus")


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize(
    "data, sr",
    [(m4a(), 24000), (webm(), 48000), (encode(tone(1.0, 44100), 44100, "mp4", "aac"), 44100)],
    ids=["m4a-aac", "webm-opus", "mp4-aac"],
)
def test_phone_and_browser_formats_decode(data, sr):
    import soundfile as sf

    with pytest.raises(sf.SoundFileError):  # the reason PyAV is needed: libsndfile does not read these
        sf.info(io.BytesIO(data))
    y, got_sr = A.read_audio(data)
    assert got_sr == sr and y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - sr) < sr * 0.1  # codec priming / padding only
    assert abs(dominant_hz(y, sr) - 220.0) < 3.0
    rms = float(np.sqrt(np.mean(y[sr // 10 : -sr // 10] ** 2)))
    assert abs(rms - 0.3 / np.sqrt(2)) < 0.03
    info = A.probe_audio(data, max_seconds=30)
    assert info.complete and info.sample_rate == sr and abs(info.seconds - 1.0) < 0.1
    assert info.format in ("M4A", "WEBM")


def test_stereo_keeps_channels_or_mixes_like_torch_mean(tmp_path):
    data = encode(tone(0.5, 44100, channels=2), 44100, "mp4", "aac")
    both, sr = A.read_audio(data, mono=False)
    assert both.shape[0] == 2 and sr == 44100
    mono, _ = A.read_audio(data)
    assert np.allclose(mono, both.mean(axis=0), atol=1e-6)
    path = tmp_path / "ref.m4a"
    path.write_bytes(data)
    assert np.array_equal(A.read_audio(path)[0], mono)  # path and bytes decode alike


def test_decoding_stops_at_the_length_limit():
    data = encode(tone(20.0, 16000), 16000, "webm", "libopus", rate=48000, b="8000")  # 20 s, small
    assert len(data) < 60_000
    with pytest.raises(AudioError, match="longer than 5 s"):
        A.read_audio(data, max_seconds=5)
    info = A.probe_audio(data, max_seconds=5)
    assert not info.complete and 5.0 < info.seconds < 5.5  # stopped right after the limit
    assert A.read_audio(data, max_seconds=30)[0].shape[0] > 19 * 48000


@pytest.mark.parametrize(
    "make",
    [
        lambda: m4a()[: len(m4a()) // 2],  # cut: the index (moov) is missing
        lambda: m4a()[:40] + bytes(range(256)) * 20,  # a valid header, then garbage
        lambda: webm()[:60],  # the header only
        lambda: b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 100,
    ],
    ids=["truncated-m4a", "garbage-m4a", "header-only-webm", "empty-m4a"],
)
def test_corrupt_files_are_one_line_errors(make):
    with pytest.raises(AudioError) as e:
        A.read_audio(make())
    msg = str(e.value)
    assert "\n" not in msg and "BytesIO" not in msg and e.value.param == "ref_audio"


def test_other_ffmpeg_formats_are_not_guessed():
    aiff = encode(tone(0.3, 16000), 16000, "aiff", "pcm_s16be")  # libsndfile reads AIFF itself
    y, sr = A.read_audio(aiff)
    assert sr == 16000 and len(y) == 4800
    with pytest.raises(AudioError, match="could not decode"):
        A.read_audio(b"ID3" + bytes(range(256)) * 8)  # random bytes FFmpeg may half-recognise


def test_without_pyav_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(AudioError, match=r"pip install 'indicf5-fast\[audio\]'"):
        A.read_audio(m4a())
    y, _ = A.read_audio(_wav(tone(0.2, 16000)[0], 16000))  # libsndfile formats still work
    assert len(y) == 3200


def test_engine_prepares_a_voice_from_m4a_and_webm(tiny_tts, demo_voice):
    import soundfile as sf

    wav, text = demo_voice
    x, sr = sf.read(wav, dtype="float32")
    for data in (encode(x[None], sr, "ipod", "aac"), encode(x[None], sr, "webm", "libopus", rate=48000)):
        voice = tiny_tts.prepare_voice(data, text)
        assert voice.text.startswith(text) and voice.mel.shape[1] == 100
        assert abs(voice.seconds - len(x) / sr) < 0.5


def _wav(x: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV")
    return buf.getvalue()
