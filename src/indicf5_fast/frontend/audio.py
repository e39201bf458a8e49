"""Audio in and out: reading, resampling, reference loudness, IndicF5's reference clipping, chunk
joining, post-processing and encoding. numpy / torch / soundfile (+ PyAV, optional, for m4a/AAC,
mp4 and webm/Opus references); no torchaudio, librosa, pydub.

Upstream facts reproduced here (F5-TTS `utils_infer.py`, IndicF5 fork):
- reference: mono = mean of channels; `rms = sqrt(mean(x²))`, scaled up to 0.1 if quieter, *then*
  resampled to 24 kHz with `torchaudio.transforms.Resample` (Hann-windowed sinc, width 6, rolloff 0.99);
- chunks are joined with a 0.15 s linear cross-fade;
- the output is written as 16-bit PCM by libsndfile (round(x·2³¹) >> 16, i.e. ≈ floor(x·32768)).
The pydub-based silence rules live in `frontend/silence.py` and are re-exported here.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch

from indicf5_fast.config import HOP_LENGTH, SAMPLE_RATE
from indicf5_fast.errors import AudioError, InputError
from indicf5_fast.frontend.silence import prepare_reference_audio, remove_long_silences

__all__ = [
    "MAX_DECODE_SECONDS",
    "AudioInfo",
    "HOP_LENGTH",
    "SAMPLE_RATE",
    "cross_fade_join",
    "encode_audio",
    "normalize_dbfs",
    "normalize_reference_rms",
    "postprocess_indicf5",
    "prepare_reference_audio",
    "prepare_reference_text",
    "probe_audio",
    "read_audio",
    "read_reference",
    "remove_long_silences",
    "resample",
    "to_int16",
    "wav_stream_header",
    "write_audio",
]

_MIN_SR, _MAX_SR = 1000, 768000  # outside this a "sample rate" is a corrupt header, not audio
_SILENT_RMS = 1e-8


# ----------------------------------------------------------------------------- reading

MAX_DECODE_SECONDS = 600.0  # references are clipped to 15 s; nothing longer is decoded by default
# PyAV containers accepted (FFmpeg's names): phone recordings (m4a / mp4 / 3gp, AAC), browser
# captures (webm / Opus), raw ADTS AAC, Ogg. Everything else stays libsndfile's job, so random
# bytes FFmpeg might half-recognise are not decoded as noise.
_AV_FORMATS = {
    "mov": "M4A",
    "mp4": "M4A",
    "m4a": "M4A",
    "3gp": "M4A",
    "webm": "WEBM",
    "aac": "AAC",
    "ogg": "OGG",
}
_EXPECTED = "WAV/FLAC/OGG/MP3, or M4A/AAC, MP4, WebM/Opus"


@dataclass(frozen=True)
class AudioInfo:
    format: str  # libsndfile's name (WAV, FLAC, OGG, MP3 ...) or M4A / WEBM / AAC (PyAV)
    seconds: float  # duration; when ``complete`` is False, only what was decoded before the limit
    sample_rate: int
    complete: bool = True  # False: longer than the limit given to probe_audio


def read_audio(
    src: str | os.PathLike | bytes | BinaryIO,
    *,
    mono: bool = True,
    max_seconds: float | None = MAX_DECODE_SECONDS,
) -> tuple[np.ndarray, int]:
    """Decode a reference → (float32 wave, sample rate). libsndfile first (WAV / FLAC / OGG / MP3,
    any subtype it knows), then PyAV for m4a/AAC, mp4, webm/Opus (the ``audio`` extra).

    mono=True: [n], the mean of the channels (as upstream, computed like `torch.mean(dim=0)`).
    mono=False: [channels, n] (what pydub sees, for `prepare_reference_audio` on multichannel input).
    max_seconds: longer audio is an error, found before (libsndfile) or while (PyAV) decoding, so
    a small compressed file cannot expand to gigabytes. Every failure is a one-line AudioError.
    """
    source = _source(src)
    chans, sr, complete = _decode(source, max_seconds)
    if not complete:
        raise AudioError(f"reference audio is longer than {max_seconds:g} s")
    if not _MIN_SR <= sr <= _MAX_SR:
        raise AudioError(f"reference audio has an invalid sample rate: {sr} Hz")
    if chans.shape[0] == 0 or chans.shape[1] == 0:
        raise AudioError("reference audio is empty (0 samples)")
    if not np.isfinite(chans).all():
        raise AudioError("reference audio contains NaN or infinite samples")
    if not mono:
        return chans, int(sr)
    # torch.mean over the channel axis, the exact op upstream runs on torchaudio.load's output
    return torch.from_numpy(chans).mean(dim=0).numpy(), int(sr)


def read_reference(ref_audio, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Any reference the engines accept -> (float32 mono wave [n], sample rate).

    ``ref_audio``: a path, file bytes or a file object (decoded by ``read_audio``); a numpy array
    or torch tensor [n], or [channels, n] / [n, channels] (the shorter axis is the channels; mixed
    to mono by their mean), at ``sample_rate`` (default 24 kHz); or a tuple (array, rate). Shared
    by the in-process engine and the Triton proxy so both see the same wave.
    """
    if isinstance(ref_audio, tuple) and len(ref_audio) == 2:
        ref_audio, sample_rate = ref_audio
    if isinstance(ref_audio, torch.Tensor):
        ref_audio = ref_audio.detach().cpu().numpy()
    if isinstance(ref_audio, np.ndarray):
        wave = np.asarray(ref_audio, dtype=np.float32)
        if wave.ndim == 2:  # [channels, n] or [n, channels]: mix to mono
            wave = wave.mean(axis=0 if wave.shape[0] < wave.shape[1] else 1)
        if wave.ndim != 1 or wave.size == 0:
            raise AudioError("reference audio array must be a non-empty 1-D wave")
        if not np.isfinite(wave).all():
            raise AudioError("reference audio contains NaN or infinite samples")
        return wave, int(sample_rate or SAMPLE_RATE)
    if ref_audio is None:
        raise AudioError("reference audio is missing")
    return read_audio(ref_audio)


def probe_audio(data: bytes, max_seconds: float) -> AudioInfo:
    """Container format, duration and rate of an uploaded reference, decoding at most
    ``max_seconds`` (libsndfile formats are not decoded at all). AudioError if unreadable."""
    source = _source(data)
    try:
        info = sf.info(source)
    except Exception as e:
        reason = getattr(e, "error_string", None) or type(e).__name__
        source.seek(0)
        chans, sr, complete, fmt = _decode_av(source, max_seconds, reason)
        if chans.shape[1] == 0:
            raise AudioError("reference audio is empty (0 samples)") from None
        return AudioInfo(fmt, chans.shape[1] / sr, int(sr), complete)
    seconds = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    return AudioInfo(str(info.format), seconds, int(info.samplerate), seconds <= max_seconds)


def _source(src) -> object:
    if isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        if not os.path.isfile(name):
            raise AudioError(f"reference audio file not found: {name}")
        return name
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise AudioError("reference audio is empty (0 bytes)")
        return io.BytesIO(bytes(src))
    if hasattr(src, "read"):
        return src
    raise AudioError(f"unsupported audio source type {type(src).__name__}")


def _decode(source, max_seconds: float | None) -> tuple[np.ndarray, int, bool]:
    """-> ([channels, n] float32, rate, complete). libsndfile, else PyAV."""
    start = source.tell() if hasattr(source, "tell") else None
    try:
        with sf.SoundFile(source) as f:
            sr = int(f.samplerate)
            if max_seconds is not None and sr > 0 and f.frames > max_seconds * sr:
                return np.zeros((1, 0), np.float32), sr, False
            data = f.read(dtype="float32", always_2d=True)  # [n, channels]
        return np.ascontiguousarray(data.T), sr, True  # [c, n], torchaudio.load's layout
    except (sf.SoundFileError, OSError, RuntimeError, TypeError, ValueError, EOFError) as e:
        # LibsndfileError.error_string is libsndfile's reason without the repr of our BytesIO
        reason = getattr(e, "error_string", None) or str(e).strip() or type(e).__name__
    if start is not None and hasattr(source, "seek"):
        source.seek(start)
    chans, sr, complete, _ = _decode_av(source, max_seconds, reason)
    return chans, sr, complete


def _decode_av(source, max_seconds: float | None, reason: str) -> tuple[np.ndarray, int, bool, str]:
    """PyAV (FFmpeg) decode of the formats in _AV_FORMATS -> ([c, n] float32, rate, complete, format).
    Stops as soon as more than ``max_seconds`` is decoded. ``reason``: libsndfile's complaint,
    reported when the data is not one of these formats either."""
    failed = f"could not decode reference audio ({_EXPECTED} expected)" + (f": {reason}" if reason else "")
    try:
        import av
    except ImportError:
        raise AudioError(f"{failed} (m4a/mp4/webm need PyAV: pip install 'indicf5-fast[audio]')") from None
    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        raise AudioError(failed) from None
    with container:
        fmt = next((_AV_FORMATS[n] for n in container.format.name.split(",") if n in _AV_FORMATS), None)
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if fmt is None:
            raise AudioError(failed)
        if stream is None:
            raise AudioError(f"reference audio ({fmt.lower()}) has no audio stream")
        sr = int(stream.codec_context.sample_rate or stream.rate or 0)
        if not _MIN_SR <= sr <= _MAX_SR:
            raise AudioError(f"reference audio has an invalid sample rate: {sr} Hz")
        limit = None if max_seconds is None else int(max_seconds * sr)
        to_float = av.AudioResampler(format="fltp")  # planar float32, same rate and layout
        pieces: list[np.ndarray] = []
        total, complete = 0, True
        try:
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    pieces.append(out.to_ndarray().reshape(len(out.layout.channels), -1))
                    total += pieces[-1].shape[1]
                if limit is not None and total > limit:
                    complete = False
                    break
            else:
                pieces += [
                    o.to_ndarray().reshape(len(o.layout.channels), -1) for o in to_float.resample(None)
                ]
        except (av.error.FFmpegError, ValueError) as e:
            raise AudioError(f"could not decode reference audio ({fmt.lower()}): {e}") from None
    channels = {p.shape[0] for p in pieces}
    if len(channels) > 1:
        raise AudioError(f"reference audio ({fmt.lower()}) changes its channel count")
    chans = np.concatenate(pieces, axis=1) if pieces else np.zeros((1, 0), np.float32)
    return np.ascontiguousarray(chans, dtype=np.float32), sr, complete, fmt


# ----------------------------------------------------------------------------- resampling


def _sinc_kernel(orig: int, new: int, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """Polyphase Hann-windowed sinc kernel [new, 1, 2·width + orig] for rates already divided by gcd.

    Row j holds the taps producing output j of every block of `new` outputs; the input advances by
    `orig` per block. Same arithmetic (and order) as torchaudio.transforms.Resample: positions in
    float64 (the phase offsets j/new in float32, as torchaudio builds them), kernel cast at the end.
    """
    width_zeros, rolloff = 6, 0.99
    base = min(orig, new) * rolloff  # cutoff below both Nyquists (antialias / anti-imaging)
    width = math.ceil(width_zeros * orig / base)  # taps each side, in input samples
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig  # [1, 1, K] s
    phase = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new  # [new, 1, 1] s
    t = (phase + idx) * base  # [new, 1, K], in units of 1/base
    t = t.clamp(-width_zeros, width_zeros)
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones((), dtype=t.dtype), t.sin() / t)
    kernel = kernel * (window * (base / orig))
    return kernel.to(dtype), width


def resample(
    wave: np.ndarray | torch.Tensor, orig_sr: int, new_sr: int = SAMPLE_RATE
) -> np.ndarray | torch.Tensor:
    """Band-limited resampling equal to torchaudio's default (`transforms.Resample(orig_sr, new_sr)`).

    wave: [..., n] numpy or torch (float); returns the same kind, [..., ceil(n·new/orig)] (the length
    computed in float32, as torchaudio does). Equal rates return the input unchanged.
    """
    if int(orig_sr) != orig_sr or int(new_sr) != new_sr or orig_sr <= 0 or new_sr <= 0:
        raise InputError(f"sample rates must be positive integers, got {orig_sr} -> {new_sr}")
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr == new_sr:
        return wave
    is_numpy = not isinstance(wave, torch.Tensor)
    x = torch.from_numpy(np.ascontiguousarray(wave)) if is_numpy else wave
    if not x.is_floating_point():
        raise InputError(f"resample needs a float wave, got {x.dtype}")
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    # float32 waves get torchaudio's cached float32 kernel; float64 keeps the float64 kernel
    kernel, width = _sinc_kernel(orig, new, torch.float64 if x.dtype == torch.float64 else torch.float32)
    kernel = kernel.to(x.device, x.dtype if x.dtype == torch.float64 else torch.float32)
    shape = x.shape
    flat = x.reshape(-1, shape[-1]).to(kernel.dtype)  # [b, n]
    n = flat.shape[-1]
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    # [b, 1, n'] * [new, 1, K] stride orig -> [b, new, blocks]; interleave phases -> [b, new·blocks]
    out = torch.nn.functional.conv1d(padded[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(float(np.float32(new * n / orig)))  # torchaudio: ceil(as_tensor(...)) in float32
    out = out[:, :target].reshape(*shape[:-1], -1).to(x.dtype)
    return out.numpy() if is_numpy else out


# ----------------------------------------------------------------------------- reference


def normalize_reference_rms(
    wave: np.ndarray | torch.Tensor, target_rms: float = 0.1
) -> tuple[np.ndarray | torch.Tensor, float]:
    """Upstream's reference loudness rule on the mono wave, before resampling.

    Returns (wave scaled up to `target_rms` if quieter, else unchanged; rms as float). The caller
    scales the generated audio back by rms / target_rms when rms < target_rms.
    Computed in torch float32 with upstream's op order so the result is bit-identical.
    """
    is_numpy = not isinstance(wave, torch.Tensor)
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)) if is_numpy else wave
    if x.numel() == 0:
        raise AudioError("reference audio is empty (0 samples)")
    rms = torch.sqrt(torch.mean(torch.square(x)))
    if not torch.isfinite(rms):
        raise AudioError("reference audio contains NaN or infinite samples")
    if rms.item() < _SILENT_RMS:
        raise AudioError("reference audio is silent")
    if rms < target_rms:
        x = x * target_rms / rms
    return (x.numpy() if is_numpy else x), float(rms)


def prepare_reference_text(ref_text: str) -> str:
    """Upstream `preprocess_ref_audio_text` text rule, verbatim: unless the text already ends with
    ". " or "。", append " " after a final "." and ". " otherwise. No stripping (upstream strips only
    to test emptiness, where it would run ASR: here empty text is an error).

    Note: `infer_batch_process` later appends one more " " when the last character is 1 UTF-8 byte
    (always the case after ". "); that belongs to the text/duration code, not here.
    """
    if not isinstance(ref_text, str) or not ref_text.strip():
        raise InputError("reference text is empty (automatic transcription is not supported)", "ref_text")
    if ref_text.endswith(". ") or ref_text.endswith("。"):
        return ref_text
    return ref_text + (" " if ref_text.endswith(".") else ". ")


# ----------------------------------------------------------------------------- output side


def cross_fade_join(waves: list[np.ndarray], sr: int = SAMPLE_RATE, seconds: float = 0.15) -> np.ndarray:
    """Join chunks as upstream `infer_batch_process`: each overlap is min(int(seconds·sr), len(joined
    so far), len(next)) samples, prev·linspace(1, 0) + next·linspace(0, 1). [n_i] each → [n] float32.
    """
    parts = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waves]
    if not parts:
        return np.zeros(0, np.float32)
    fade = int(seconds * sr)
    if fade <= 0:
        return np.concatenate(parts)
    total = len(parts[0])
    for p in parts[1:]:
        total += len(p) - min(fade, total, len(p))
    out = np.zeros(total, np.float64)  # upstream's joined wave is float64 after the first fade
    out[: len(parts[0])] = parts[0]
    pos = len(parts[0])
    for p in parts[1:]:
        k = min(fade, pos, len(p))
        if k > 0:
            out[pos - k : pos] = out[pos - k : pos] * np.linspace(1, 0, k) + p[:k] * np.linspace(0, 1, k)
        out[pos : pos + len(p) - k] = p[k:]
        pos += len(p) - k
    return out.astype(np.float32)


def normalize_dbfs(wave: np.ndarray, target_dbfs: float = -20.0) -> np.ndarray:
    """Scale so that 20·log10(rms) = target_dbfs (full scale 1.0), clipped to [-1, 1] as int16
    gain would be. Silence is returned unchanged. (`postprocess_indicf5` is the int16-exact chain.)"""
    x = np.asarray(wave, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms == 0.0:
        return x.copy()
    gain = 10 ** ((target_dbfs - 20 * math.log10(rms)) / 20)
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)


def to_int16(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    """float → int16 exactly as libsndfile 1.2 writes a PCM_16 WAV: round(x·2³¹) clipped to int32,
    then an arithmetic shift by 16 (≈ floor(x·32768)). Lossless for a wave read from a 16-bit file,
    and what IndicF5's `sf.write(..., format="WAV")` produces. NaN → 0."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    x = np.nan_to_num(np.asarray(wave, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    q32 = np.clip(np.rint(x * 2147483648.0), -2147483648, 2147483647).astype(np.int64)
    return (q32 >> 16).astype(np.int16)


def postprocess_indicf5(
    wave: np.ndarray, sr: int = SAMPLE_RATE, remove_silence: bool = True, target_dbfs: float = -20.0
) -> np.ndarray:
    """IndicF5 `INF5Model.forward` tail, exactly: int16 (libsndfile rounding), optional long-silence
    removal, gain to `target_dbfs` with audioop's floor rounding. [n] float → [n] int16."""
    q = to_int16(wave)
    x = q.astype(np.float32) / 32768.0  # exact: the int16 view of x is q again
    if remove_silence:
        x = remove_long_silences(x, sr)
    q = np.rint(x * 32768.0).astype(np.int64)
    rms = math.floor(math.sqrt(float(np.dot(q, q)) / q.size)) if q.size else 0
    if rms == 0:
        return q.astype(np.int16)  # pydub would compute an infinite gain; silence stays silence
    gain_db = target_dbfs - 20 * math.log(rms / 32768.0, 10)
    factor = 10 ** (gain_db / 20)
    return np.clip(np.floor(q * factor), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- encoding

_FORMATS = {"wav": "WAV", "flac": "FLAC", "pcm": "RAW", "raw": "RAW"}
_SUBTYPES = ("PCM_16", "FLOAT")


def encode_audio(wave: np.ndarray, sr: int, fmt: str, subtype: str = "PCM_16") -> bytes:
    """Encode mono audio: fmt "wav" (PCM_16 or FLOAT), "flac" (PCM_16), "pcm" (headerless
    little-endian int16, or float32 for FLOAT). int16 samples use `to_int16` rounding."""
    fmt_key = str(fmt).lower()
    if fmt_key not in _FORMATS:
        raise InputError(f"unsupported audio format {fmt!r} (expected wav, flac or pcm)", "response_format")
    if subtype not in _SUBTYPES:
        raise InputError(
            f"unsupported sample format {subtype!r} (expected PCM_16 or FLOAT)", "response_format"
        )
    if int(sr) != sr or sr <= 0:
        raise InputError(f"invalid sample rate {sr}")
    if fmt_key == "flac" and subtype == "FLOAT":
        raise InputError("FLAC cannot store float samples; use PCM_16", "response_format")
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    x = np.asarray(wave).reshape(-1)
    if _FORMATS[fmt_key] == "RAW":
        data = to_int16(x).astype("<i2") if subtype == "PCM_16" else x.astype("<f4")
        return data.tobytes()
    buf = io.BytesIO()
    data = to_int16(x) if subtype == "PCM_16" else x.astype(np.float32)
    sf.write(buf, data, int(sr), format=_FORMATS[fmt_key], subtype=subtype)
    return buf.getvalue()


def write_audio(path: str | os.PathLike, wave: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    """Write to `path`, the format chosen by extension (.wav, .flac, .pcm / .raw)."""
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext not in _FORMATS:
        raise InputError(f"cannot tell the audio format from {os.fspath(path)!r} (use .wav, .flac or .pcm)")
    data = encode_audio(wave, sr, ext, subtype)
    with open(path, "wb") as f:
        f.write(data)


def wav_stream_header(sr: int, channels: int = 1, bits: int = 16) -> bytes:
    """44-byte WAV header for streaming: RIFF and data sizes are 0xFFFFFFFF (length unknown).
    bits 16/24 → integer PCM (format 1), bits 32 → IEEE float (format 3)."""
    if bits not in (16, 24, 32) or channels < 1 or sr <= 0:
        raise InputError(f"unsupported stream format: {sr} Hz, {channels} channels, {bits} bits")
    block = channels * bits // 8
    fmt_tag = 3 if bits == 32 else 1
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, sr, sr * block, block, bits)
    unknown = 0xFFFFFFFF
    return (
        struct.pack("<4sI8sI", b"RIFF", unknown, b"WAVEfmt ", 16)
        + fmt
        + struct.pack("<4sI", b"data", unknown)
    )
