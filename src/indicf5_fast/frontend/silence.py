"""Silence handling with pydub's exact semantics, vectorized in numpy (no pydub at runtime).

IndicF5 clips and trims the reference voice, and optionally strips long pauses from the output, with
pydub (`split_on_silence`, `detect_leading_silence`, a per-millisecond tail loop). Those rules are
defined on pydub's integer samples and millisecond grid, so to reproduce them we:

- decide on the int16 view of the wave (`round(x * 32768)`): for audio read from a 16-bit file this is
  exactly the integer data pydub sees, and dBFS is relative to int16 full scale (32768);
- cut on pydub's grid: a segment is `round(1000 * frames / sr)` ms long, ms `m` is frame
  `int(m * (sr / 1000.0))`, slices are clamped to the length in ms and zero-padded when that length
  was rounded up;
- take `rms` as pydub (`audioop.rms`) does: `floor(sqrt(sum(q²) / n_samples))` over every channel.

The cuts are applied to the caller's float samples (not the quantized ones), so a 16-bit source comes
out bit-identical to pydub's. Waves are [n] (mono) or [channels, n].
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from indicf5_fast.errors import AudioError, InputError

_PYDUB_SILENT_RATE = 11025  # AudioSegment.silent()'s default frame rate


@dataclass(frozen=True)
class _Segment:
    """A pydub AudioSegment stand-in: float samples [channels, n] at `sr`, cut on the ms grid."""

    x: np.ndarray  # [c, n] float32, the caller's samples
    sr: int

    @property
    def frames(self) -> int:
        return self.x.shape[1]

    @property
    def len_ms(self) -> int:
        # AudioSegment.__len__: Python round (half to even) of the float duration in ms
        return round(1000 * (self.frames / self.sr))

    def frame_of(self, ms: np.ndarray | int) -> np.ndarray:
        # AudioSegment._parse_position: int(ms * (sr / 1000.0)), truncation (ms >= 0 here)
        return (np.asarray(ms, dtype=np.float64) * (self.sr / 1000.0)).astype(np.int64)

    def energy_prefix(self) -> np.ndarray:
        """[n + 1] int64 cumulative sum over frames of sum over channels of q², q the int16 view."""
        q = np.clip(np.rint(self.x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int64)
        per_frame = (q * q).sum(axis=0)  # ≤ c·2^30, exact in int64
        return np.concatenate([np.zeros(1, np.int64), np.cumsum(per_frame)])

    def window_rms(self, prefix: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
        """audioop.rms of `self[start_ms:end_ms]` for many windows at once (int16 units, floored).

        Frames past the data (the length in ms was rounded up) count as zeros, as pydub pads them.
        """
        s = self.frame_of(start_ms)
        e = self.frame_of(end_ms)
        total = prefix[np.minimum(e, self.frames)] - prefix[np.minimum(s, self.frames)]
        count = np.maximum(e - s, 0) * self.x.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            rms = np.floor(np.sqrt(total.astype(np.float64) / count))
        return np.where(count > 0, rms, 0.0)

    def slice_ms(self, start_ms: int, end_ms: int | None = None) -> _Segment:
        """`AudioSegment[start_ms:end_ms]`: clamp to the length in ms, zero-pad a rounded-up end."""
        length = self.len_ms
        start = min(start_ms, length)
        end = length if end_ms is None else min(end_ms, length)
        s, e = int(self.frame_of(start)), int(self.frame_of(end))
        if e <= s:
            return _Segment(self.x[:, :0], self.sr)
        data = self.x[:, s:e]
        missing = (e - s) - data.shape[1]
        if missing > 0:
            data = np.concatenate([data, np.zeros((data.shape[0], missing), data.dtype)], axis=1)
        return _Segment(data, self.sr)


def _concat(segments: list[_Segment], channels: int, sr: int) -> _Segment:
    if not segments:
        return _Segment(np.zeros((channels, 0), np.float32), sr)
    return _Segment(np.concatenate([s.x for s in segments], axis=1), sr)


def _rms_to_dbfs(rms: np.ndarray) -> np.ndarray:
    # pydub ratio_to_db: 20 * log(rms / 32768, 10), -inf for rms == 0
    with np.errstate(divide="ignore"):
        return 20.0 * (np.log(rms / 32768.0) / math.log(10))


def _detect_silence(
    seg: _Segment, prefix: np.ndarray, min_silence_ms: int, thresh_dbfs: float, seek_step: int
) -> list[tuple[int, int]]:
    """pydub.silence.detect_silence → [(start_ms, end_ms)] of silent runs."""
    length = seg.len_ms
    if length < min_silence_ms:
        return []
    thresh = 10 ** (thresh_dbfs / 20) * 32768.0  # db_to_float(thresh) * max_possible_amplitude
    last = length - min_silence_ms
    starts = np.arange(0, last + 1, seek_step, dtype=np.int64)
    if last % seek_step:  # pydub always probes the final window too
        starts = np.append(starts, last)
    silent = starts[seg.window_rms(prefix, starts, starts + min_silence_ms) <= thresh]
    if silent.size == 0:
        return []
    prev, cur = silent[:-1], silent[1:]
    # a new run starts only where the probes are neither consecutive nor overlapping
    brk = (cur != prev + seek_step) & (cur > prev + min_silence_ms)
    run_starts = np.concatenate([silent[:1], cur[brk]])
    run_ends = np.concatenate([prev[brk], silent[-1:]]) + min_silence_ms
    return list(zip(run_starts.tolist(), run_ends.tolist(), strict=True))


def _split_on_silence(
    seg: _Segment, min_silence_ms: int, thresh_dbfs: float, keep_ms: int, seek_step: int
) -> list[_Segment]:
    """pydub.silence.split_on_silence (detect_nonsilent + keep_silence, overlaps split at midpoint)."""
    length = seg.len_ms
    silent = _detect_silence(seg, seg.energy_prefix(), min_silence_ms, thresh_dbfs, seek_step)
    if not silent:
        ranges = [[0, length]]
    elif silent[0][0] == 0 and silent[0][1] == length:
        ranges = []  # all silence
    else:
        ranges, prev_end = [], 0
        for start, end in silent:
            ranges.append([prev_end, start])
            prev_end = end
        if silent[-1][1] != length:
            ranges.append([prev_end, length])
        if ranges[0] == [0, 0]:
            ranges.pop(0)
    ranges = [[s - keep_ms, e + keep_ms] for s, e in ranges]
    for a, b in itertools.pairwise(ranges):
        if b[0] < a[1]:  # keep_silence overlap: give each side half
            a[1] = (a[1] + b[0]) // 2
            b[0] = a[1]
    return [seg.slice_ms(max(s, 0), min(e, length)) for s, e in ranges]


def _leading_silence_ms(seg: _Segment, prefix: np.ndarray, thresh_dbfs: float, chunk_ms: int = 10) -> int:
    """pydub.silence.detect_leading_silence: first 10 ms chunk with dBFS >= thresh, else the length."""
    length = seg.len_ms
    starts = np.arange(0, length, chunk_ms, dtype=np.int64)
    loud = _rms_to_dbfs(seg.window_rms(prefix, starts, np.minimum(starts + chunk_ms, length))) >= thresh_dbfs
    return int(starts[np.argmax(loud)]) if loud.any() else length


def _trim_trailing_indicf5(seg: _Segment, thresh_dbfs: float) -> _Segment:
    """IndicF5's tail trim: walk back 1 ms at a time while dBFS <= thresh, subtracting 0.001 s.

    The float bookkeeping (`duration_seconds -= 0.001` per ms, then `int(d * 1000)`) is reproduced
    literally: it often lands one ms short of the exact count (≈ 1 case in 3).
    """
    length = seg.len_ms
    if length == 0:
        return seg
    ms = np.arange(length, dtype=np.int64)
    quiet = _rms_to_dbfs(seg.window_rms(seg.energy_prefix(), ms, ms + 1)) <= thresh_dbfs
    loud_idx = np.flatnonzero(~quiet)
    n_quiet_tail = length if loud_idx.size == 0 else length - 1 - int(loud_idx[-1])
    duration = seg.frames / seg.sr if seg.frames else 0.0
    for _ in range(n_quiet_tail):
        duration -= 0.001
    return seg.slice_ms(0, max(int(duration * 1000), 0))


def _pydub_silence_frames(ms: int, sr: int) -> int:
    """Frames of `AudioSegment.silent(ms)` (11025 Hz) after pydub resamples it to `sr` with ratecv.

    ratecv emits floor((n - 1) * out / in) + 1 frames for n input frames: 50 ms → 1198 at 24 kHz.
    Below 11025 Hz pydub would upsample the *voice* instead; we keep sr and append int(sr·ms) zeros.
    """
    n = int(_PYDUB_SILENT_RATE * (ms / 1000.0))
    if n == 0 or sr < _PYDUB_SILENT_RATE:
        return int(sr * (ms / 1000.0))
    return (n - 1) * sr // _PYDUB_SILENT_RATE + 1


def _as_channels_first(wave: np.ndarray, what: str) -> tuple[np.ndarray, bool]:
    x = np.asarray(wave)
    if x.ndim not in (1, 2) or not np.issubdtype(x.dtype, np.floating):
        param = "ref_audio" if what.startswith("reference") else None
        raise AudioError(f"{what} must be a float array [n] or [channels, n], got {x.dtype} {x.shape}", param)
    return (x[None] if x.ndim == 1 else x).astype(np.float32, copy=False), x.ndim == 1


def _clip_at_silences(seg: _Segment, min_silence_ms: int, thresh_dbfs: float, limit_ms: int) -> _Segment:
    """Accumulate split_on_silence pieces; stop before the one that pushes a > 6 s total past limit."""
    pieces: list[_Segment] = []
    frames = 0
    for piece in _split_on_silence(seg, min_silence_ms, thresh_dbfs, keep_ms=1000, seek_step=10):
        if (
            round(1000 * (frames / seg.sr)) > 6000
            and round(1000 * ((frames + piece.frames) / seg.sr)) > limit_ms
        ):
            break
        pieces.append(piece)
        frames += piece.frames
    return _concat(pieces, seg.x.shape[0], seg.sr)


def prepare_reference_audio(wave: np.ndarray, sr: int, max_seconds: float = 15.0) -> np.ndarray:
    """IndicF5's `preprocess_ref_audio_text` audio part, same sample rate in and out.

    1. split at ≥ 1 s silences (-50 dBFS, keep 1 s), keep whole pieces while the total is ≤ max_seconds
       (a piece that crosses the limit is still taken while the total is ≤ 6 s);
    2. if still too long, the same with ≥ 100 ms silences at -40 dBFS; 3. else hard cut at max_seconds;
    then trim edge silence at -42 dBFS and append pydub's 50 ms of silence.
    `wave`: [n] or [channels, n] float; returns float32 of the same layout.
    """
    x, was_mono = _as_channels_first(wave, "reference audio")
    if sr <= 0:
        raise AudioError(f"invalid sample rate {sr}")
    limit_ms = round(max_seconds * 1000)
    seg = _Segment(x, sr)
    clipped = _clip_at_silences(seg, 1000, -50.0, limit_ms)
    if clipped.len_ms > limit_ms:
        clipped = _clip_at_silences(seg, 100, -40.0, limit_ms)
    if clipped.len_ms > limit_ms:
        clipped = clipped.slice_ms(0, limit_ms)
    lead = _leading_silence_ms(clipped, clipped.energy_prefix(), -42.0)
    trimmed = _trim_trailing_indicf5(clipped.slice_ms(lead), -42.0)
    pad = np.zeros((x.shape[0], _pydub_silence_frames(50, sr)), np.float32)
    out = np.concatenate([trimmed.x, pad], axis=1)
    return out[0] if was_mono else out


def remove_long_silences(
    wave: np.ndarray, sr: int, min_silence_ms: int = 1000, thresh_dbfs: float = -50.0, keep_ms: int = 500
) -> np.ndarray:
    """IndicF5 `remove_sil` output step: split_on_silence(seek 10 ms) and join the pieces back-to-back.

    All-silent input gives an empty array (as pydub does). [n] or [channels, n] float → float32.
    """
    x, was_mono = _as_channels_first(wave, "audio")
    if min_silence_ms <= 0 or keep_ms < 0:
        raise InputError("min_silence_ms must be > 0 and keep_ms >= 0")
    pieces = _split_on_silence(_Segment(x, sr), min_silence_ms, thresh_dbfs, keep_ms, seek_step=10)
    out = _concat(pieces, x.shape[0], sr).x
    return out[0] if was_mono else out
