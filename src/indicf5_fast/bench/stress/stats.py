"""Per-request records and the statistics of one load level (pure functions, no I/O)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

PERCENTILES = (50, 90, 95, 99)


@dataclass
class RequestRecord:
    """One request as the client saw it. Times are seconds; `start` is relative to the level start.

    ttfa: time from sending to the first audio byte (streams: first byte after the WAV header;
    non-streamed: the whole body, since nothing is playable before it). None when no audio came.
    status: HTTP status, or None when no response arrived. complete: the whole response arrived;
    a request that is not complete (timeout, connection error, cut stream) is lost.
    """

    index: int
    start: float
    status: int | None = None
    complete: bool = False
    ttfa: float | None = None
    latency: float | None = None
    audio_seconds: float = 0.0
    body_bytes: int = 0
    text_chars: int = 0
    lang: str = ""
    kind: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.complete and self.status is not None and 200 <= self.status < 300 and self.error is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distribution(values: Sequence[float]) -> dict | None:
    """p50/p90/p95/p99, mean, min, max of a sample; None for an empty one."""
    if not values:
        return None
    out = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    out.update(mean=sum(values) / len(values), min=min(values), max=max(values), n=len(values))
    return out


def status_key(record: RequestRecord) -> str:
    if record.error == "timeout":
        return "timeout"
    if record.status is None:
        return "no_response"
    return str(record.status) if record.complete else f"{record.status}_incomplete"


def summarize_level(records: Sequence[RequestRecord], wall_seconds: float) -> dict:
    """The figures of one load level.

    throughput counts successful requests only; rtf is latency / audio seconds per successful
    request (client-side, so it includes queueing); audio_per_wall = generated audio seconds per
    wall-clock second over the whole level.
    """
    ok = [r for r in records if r.ok]
    n = len(records)
    wall = max(wall_seconds, 1e-9)
    audio = sum(r.audio_seconds for r in ok)
    rtfs = [r.latency / r.audio_seconds for r in ok if r.latency is not None and r.audio_seconds > 0]
    statuses = Counter(status_key(r) for r in records)
    return {
        "requests": n,
        "succeeded": len(ok),
        "success_rate": len(ok) / n if n else 0.0,
        "status_counts": dict(sorted(statuses.items())),
        "server_errors": sum(1 for r in records if r.status is not None and r.status >= 500),
        "lost": sum(1 for r in records if not r.complete),
        "wall_seconds": wall_seconds,
        "requests_per_second": len(ok) / wall,
        "audio_seconds": audio,
        "audio_seconds_per_wall_second": audio / wall,
        "ttfa": distribution([r.ttfa for r in ok if r.ttfa is not None]),
        "latency": distribution([r.latency for r in ok if r.latency is not None]),
        "rtf": distribution(rtfs),
        "errors": _error_samples(records),
        "by_kind": {
            kind: {
                "succeeded": len(group),
                "ttfa_p50": percentile([r.ttfa for r in group if r.ttfa is not None], 50),
                "latency_p50": percentile([r.latency for r in group if r.latency is not None], 50),
            }
            for kind in sorted({r.kind for r in ok if r.kind})
            for group in [[r for r in ok if r.kind == kind]]
        },
    }


def _error_samples(records: Sequence[RequestRecord], limit: int = 5) -> list[str]:
    """A few distinct error messages, so a failed run says why."""
    seen: list[str] = []
    for r in records:
        if r.error and r.error not in seen:
            seen.append(r.error)
            if len(seen) >= limit:
                break
    return seen
