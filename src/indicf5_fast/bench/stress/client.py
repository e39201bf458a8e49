"""One speech request as a load client sees it: loopback-only target check, timing of the first
audio byte, audio length from the response (WAV header / PCM bytes / FLAC)."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import struct
import time
from urllib.parse import urlsplit

from indicf5_fast.bench.stress.stats import RequestRecord
from indicf5_fast.errors import InputError

MAX_ERROR_BODY = 64 * 1024  # bytes of an error response kept for its message
MAX_HEADER_SCAN = 4096  # a WAV whose data chunk starts later than this is rejected


def check_loopback(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Return `url` without a trailing slash if it targets this machine (127.0.0.0/8, ::1,
    localhost); raise InputError otherwise. No name is resolved, so no DNS trick gets past it."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise InputError(
            f"target URL {url!r} must start with {' or '.join(s + '://' for s in schemes)}", "url"
        )
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise InputError(f"target URL {url!r} has no host", "url")
    if host != "localhost":
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        mapped = getattr(ip, "ipv4_mapped", None)
        if ip is None or not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            raise InputError(
                f"refusing to load-test {host!r}: stress only targets this machine "
                "(127.0.0.0/8, ::1 or localhost)",
                "url",
            )
    try:
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise InputError(f"target URL {url!r}: {e}", "url") from e
    return url.rstrip("/")


def wav_data_layout(buf: bytes) -> tuple[int, int, int | None] | None:
    """(offset of the PCM data, bytes per second, declared data size or None if unknown) from the
    start of a RIFF/WAVE stream; None while `buf` is too short to tell. Raises ValueError if it
    is not a WAV."""
    if len(buf) < 12:
        return None
    if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
        raise ValueError("response is not a RIFF/WAVE stream")
    pos, byte_rate = 12, None
    while True:
        if pos > MAX_HEADER_SCAN:
            raise ValueError("no WAV data chunk in the first 4 KiB")
        if len(buf) < pos + 8:
            return None
        chunk_id, size = struct.unpack_from("<4sI", buf, pos)
        if chunk_id == b"data":
            if byte_rate is None:
                raise ValueError("WAV data chunk before its fmt chunk")
            return pos + 8, byte_rate, (None if size == 0xFFFFFFFF else size)
        if chunk_id == b"fmt ":
            if len(buf) < pos + 8 + 16:
                return None
            byte_rate = struct.unpack_from("<I", buf, pos + 8 + 8)[0]
            if byte_rate <= 0:
                raise ValueError("WAV header with a zero byte rate")
        pos += 8 + size + (size & 1)  # chunks are word-aligned


def _error_message(status: int, body: bytes) -> str:
    msg = body[:300].decode("utf-8", "replace")
    try:
        err = json.loads(body)
        if isinstance(err, dict):
            inner = err.get("error", err.get("detail", err))
            msg = inner.get("message", str(inner)) if isinstance(inner, dict) else str(inner)
    except (ValueError, TypeError):
        pass
    return f"HTTP {status}: {msg[:200]}"


class _AudioMeter:
    """Counts audio bytes as they arrive and notes when the first one came."""

    def __init__(self, fmt: str, sample_rate: int, t0: float) -> None:
        self.fmt, self.sample_rate, self.t0 = fmt, sample_rate, t0
        self.head = b""  # WAV: bytes until the layout is known; FLAC: the whole body
        self.layout: tuple[int, int, int | None] | None = None
        self.total = 0
        self.first_audio: float | None = None

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.fmt == "wav" and self.layout is None:
            self.head += chunk
            self.layout = wav_data_layout(self.head)
            if self.layout is not None:
                self.head = b""
        elif self.fmt == "flac":
            self.head += chunk
        if self.first_audio is None and self._audio_bytes() > 0:
            self.first_audio = time.perf_counter() - self.t0

    def _audio_bytes(self) -> int:
        if self.fmt == "wav":
            if self.layout is None:
                return 0
            offset, _, size = self.layout
            data = max(self.total - offset, 0)
            return data if size is None else min(data, size)
        return self.total

    def seconds(self) -> float:
        if self.fmt == "wav":
            if self.layout is None:
                raise ValueError("truncated WAV header")
            return self._audio_bytes() / self.layout[1]
        if self.fmt == "flac":
            import soundfile as sf

            return float(sf.info(io.BytesIO(self.head)).duration)
        return self.total / (2 * self.sample_rate)  # headerless int16 mono


async def post_speech(
    client,
    url: str,
    body: dict,
    record: RequestRecord,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    sample_rate: int = 24_000,
) -> RequestRecord:
    """POST one speech request and fill `record` (status, ttfa, latency, audio seconds, error).

    TTFA is the time to the first audio byte for streams and the whole response otherwise (a
    non-streamed WAV is not playable before its end). Never raises for HTTP or network errors:
    they are recorded, so a load level always accounts for every request it sent."""
    fmt = str(body.get("response_format", "wav")).lower()
    stream = bool(body.get("stream", False))
    t0 = time.perf_counter()
    meter = _AudioMeter(fmt, sample_rate, t0)

    async def run() -> None:
        async with client.stream("POST", url, json=body, headers=headers) as resp:
            record.status = resp.status_code
            if not 200 <= resp.status_code < 300:
                err = b""
                async for chunk in resp.aiter_raw():
                    err += chunk
                    if len(err) >= MAX_ERROR_BODY:
                        break
                record.error = _error_message(resp.status_code, err)
                record.complete = True  # an answered error is not a lost request
                return
            async for chunk in resp.aiter_raw():
                meter.feed(chunk)
            record.complete = True

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        record.error = "timeout"
    except ValueError as e:  # not a WAV, bad header
        record.error = f"bad audio: {e}"
    except Exception as e:  # httpx transport errors and protocol errors: the request is lost
        record.error = f"{type(e).__name__}: {e}"[:300]
    record.latency = time.perf_counter() - t0
    record.body_bytes = meter.total
    if record.status is not None and 200 <= record.status < 300 and record.error is None:
        try:
            record.audio_seconds = meter.seconds()
        except Exception as e:  # e.g. a FLAC soundfile cannot read
            record.error = f"bad audio: {e}"[:300]
        if record.error is None and record.audio_seconds <= 0:
            record.error = "no audio in a successful response"
        record.ttfa = meter.first_audio if stream else record.latency
    return record
