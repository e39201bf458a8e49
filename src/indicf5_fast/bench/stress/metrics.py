"""Server-side figures from the Prometheus `/metrics` text: parse, diff two scrapes, summarise.

The stress tool does not hard-code the server's metric names: it diffs every counter/histogram
between the scrapes before and after a level and picks the interesting ones by name (queue
depth, batch size, time-to-first-audio, latency). Gauges are also polled during the level so the
report shows the largest queue depth seen, not only the (usually empty) queue at the end.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# name{labels} value [timestamp]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    """One `/metrics` scrape: samples keyed by (name, sorted label pairs), and metric types."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))


def _float(text: str) -> float | None:
    try:
        return float(text)  # accepts NaN, +Inf, -Inf as Prometheus writes them
    except ValueError:
        return None


def parse_prometheus(text: str) -> Scrape:
    """Parse the Prometheus text exposition format (malformed lines are skipped)."""
    scrape = Scrape()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                scrape.types[parts[2]] = parts[3]
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        value = _float(m.group(3))
        if value is None:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        scrape.samples[(m.group(1), labels)] = value
    return scrape


def _family_type(scrape: Scrape, sample_name: str) -> tuple[str, str]:
    """(family name, type) of a sample: `x_bucket`/`x_sum`/`x_count` belong to histogram x."""
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            if base in scrape.types:
                return base, scrape.types[base]
    return sample_name, scrape.types.get(sample_name, "untyped")


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style quantile from cumulative buckets [(le, count)], linear within a bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # the quantile lies above the largest finite bound
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return buckets[-1][0]


def diff_histograms(before: Scrape, after: Scrape) -> dict[str, dict]:
    """Histograms observed between two scrapes (labels other than `le` summed over):
    {family: {count, sum, mean, p50, p95}}. Families without new observations are left out."""
    acc: dict[str, dict] = {}
    for (name, labels), value in after.samples.items():
        family, kind = _family_type(after, name)
        if kind != "histogram":
            continue
        delta = value - before.samples.get((name, labels), 0.0)
        entry = acc.setdefault(family, {"count": 0.0, "sum": 0.0, "buckets": {}})
        if name.endswith("_bucket"):
            le = _float(dict(labels).get("le", "nan"))
            if le is not None and not math.isnan(le):
                entry["buckets"][le] = entry["buckets"].get(le, 0.0) + delta
        elif name.endswith("_count"):
            entry["count"] += delta
        elif name.endswith("_sum"):
            entry["sum"] += delta
    out = {}
    for family, e in sorted(acc.items()):
        if e["count"] <= 0:
            continue
        buckets = sorted(e["buckets"].items())
        out[family] = {
            "count": e["count"],
            "sum": e["sum"],
            "mean": e["sum"] / e["count"],
            "p50": histogram_quantile(buckets, 0.5),
            "p95": histogram_quantile(buckets, 0.95),
        }
    return out


def diff_counters(before: Scrape, after: Scrape) -> dict[str, float]:
    """Counter increases between two scrapes, keyed `name{labels}` (only non-zero ones)."""
    out = {}
    for (name, labels), value in after.samples.items():
        if _family_type(after, name)[1] != "counter" or name.endswith("_created"):
            continue
        delta = value - before.samples.get((name, labels), 0.0)
        if delta:
            key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "")
            out[key] = delta
    return dict(sorted(out.items()))


def gauges(scrape: Scrape) -> dict[str, float]:
    """Gauge values summed over labels, by name (prometheus_client's `*_created` timestamps,
    which it exposes as gauges, are left out)."""
    out: dict[str, float] = {}
    for (name, _labels), value in scrape.samples.items():
        if scrape.types.get(name) == "gauge" and not name.endswith("_created"):
            out[name] = out.get(name, 0.0) + value
    return out


def server_summary(
    before: Scrape | None, after: Scrape | None, gauge_max: dict[str, float], wall_seconds: float = 0.0
) -> dict:
    """The server-side figures of one level; {} when the server has no /metrics."""
    if before is None or after is None:
        return {}
    hist = diff_histograms(before, after)
    counters = diff_counters(before, after)
    summary: dict = {"histograms": hist, "counters": counters, "gauge_max": gauge_max}
    # highlights, chosen by name so a renamed metric degrades to "not shown", not to an error
    for family, h in hist.items():
        low = family.lower()
        if "batch" in low and "size" in low and "batch_size" not in summary:
            summary["batch_size"] = {
                "mean": h["mean"],
                "p50": h["p50"],
                "p95": h["p95"],
                "batches": h["count"],
            }
        elif ("ttfa" in low or "first_audio" in low) and "server_ttfa" not in summary:
            summary["server_ttfa"] = h
    # Triton: items inferred / model executions = mean dynamic-batch size
    items = sum(v for k, v in counters.items() if k.split("{")[0] == "nv_inference_count")
    execs = sum(v for k, v in counters.items() if k.split("{")[0] == "nv_inference_exec_count")
    if execs and "batch_size" not in summary:
        summary["batch_size"] = {"mean": items / execs, "p50": None, "p95": None, "batches": execs}
    queue = {k: v for k, v in gauge_max.items() if "queue" in k.lower() or "pending_request" in k.lower()}
    if queue:
        summary["queue_depth_max"] = max(queue.values())
    inflight = {k: v for k, v in gauge_max.items() if "inflight" in k.lower()}
    if inflight:
        summary["inflight_max"] = max(inflight.values())
    busy = [v for k, v in counters.items() if "busy_seconds" in k]
    if busy and wall_seconds > 0:
        summary["worker_busy_fraction"] = sum(busy) / wall_seconds
    return summary
