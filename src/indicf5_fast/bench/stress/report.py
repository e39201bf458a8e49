"""Renderings of a stress report: console table, JSON, Markdown, PNG (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path


def _ms(dist: dict | None, key: str) -> str:
    if not dist or dist.get(key) is None:
        return "-"
    return f"{dist[key] * 1000:.0f}"


def _num(value, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _level_name(report: dict) -> str:
    return "rate" if report.get("mode") == "open" else "concurrency"


COLUMNS = (
    "level",
    "ok/sent",
    "status",
    "TTFA p50",
    "p90",
    "p95",
    "p99",
    "latency p50",
    "p90",
    "p95",
    "p99",
    "RTF p50",
    "req/s",
    "audio s/s",
    "batch mean",
    "queue max",
    "busy",
)


def table_rows(report: dict) -> list[list[str]]:
    key = _level_name(report)
    rows = []
    for lv in report["levels"]:
        server = lv.get("server") or {}
        batch = server.get("batch_size") or {}
        rows.append(
            [
                f"{lv[key]:g}",
                f"{lv['succeeded']}/{lv['requests']}",
                " ".join(f"{k}:{v}" for k, v in lv["status_counts"].items()),
                *(_ms(lv["ttfa"], f"p{q}") for q in (50, 90, 95, 99)),
                *(_ms(lv["latency"], f"p{q}") for q in (50, 90, 95, 99)),
                _num((lv["rtf"] or {}).get("p50"), "{:.3f}"),
                _num(lv["requests_per_second"]),
                _num(lv["audio_seconds_per_wall_second"]),
                _num(batch.get("mean")),
                _num(server.get("queue_depth_max"), "{:g}"),
                _num(server.get("worker_busy_fraction"), "{:.0%}"),
            ]
        )
    return rows


def console_table(report: dict) -> str:
    header = list(COLUMNS)
    header[0] = _level_name(report)
    rows = [header] + table_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n(times in ms; TTFA = time to first audio byte)"


def markdown(report: dict) -> str:
    cfg = report["config"]
    texts = cfg.get("texts", {})
    header = list(COLUMNS)
    header[0] = _level_name(report)
    out = [
        f"# Stress test: {report['target']['url']}",
        "",
        f"- started {report['started']}, indicf5-fast {report['version']}, {report['mode']} loop",
        f"- per level: {cfg['requests']} requests"
        if cfg.get("requests")
        else f"- per level: {cfg['duration']} s",
        f"- voice `{cfg['voice']}`, format {cfg['response_format']}, stream {cfg['stream']}, "
        f"preset {cfg.get('preset') or 'server default'}, nfe_step {cfg.get('nfe_step') or 'server default'}, "
        f"chunking {cfg.get('chunking') or 'server default'}, timeout {cfg['timeout']} s",
        f"- texts: {texts.get('count')} ({', '.join(texts.get('languages', [])) or 'user file'}; "
        f"{', '.join(texts.get('kinds', []))})",
        f"- warm-up: {report['warmup']['succeeded']}/{report['warmup']['requests']} ok",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(report)]
    out += [
        "",
        "Times in ms. TTFA = time to the first audio byte after the WAV header (streamed) or to the "
        "whole response (not streamed). RTF = client latency / audio duration. audio s/s = seconds "
        "of audio delivered per wall-clock second. batch mean, queue max (requests waiting for the model, "
        "largest seen while polling) and busy (model worker busy time / wall time) come from the "
        "server's /metrics.",
    ]
    kinds = sorted({k for lv in report["levels"] for k in lv.get("by_kind", {})})
    if len(kinds) > 1:
        key = _level_name(report)
        out += ["", "TTFA / latency p50 (ms) by text kind:", ""]
        out += ["| " + key + " | " + " | ".join(kinds) + " |", "|---:|" + "---:|" * len(kinds)]
        for lv in report["levels"]:
            cells = []
            for k in kinds:
                g = lv.get("by_kind", {}).get(k)
                cells.append(
                    "-"
                    if not g or g["latency_p50"] is None
                    else f"{(g['ttfa_p50'] or 0) * 1000:.0f} / {g['latency_p50'] * 1000:.0f}"
                )
            out.append(f"| {lv[key]:g} | " + " | ".join(cells) + " |")
    if report.get("truncated_by_max_time"):
        out += ["", "**Stopped early: the --max-time budget ran out.**"]
    errors = [(lv, e) for lv in report["levels"] for e in lv.get("errors", [])]
    if errors:
        out += ["", "## Errors (first distinct messages per level)", ""]
        key = _level_name(report)
        out += [f"- {key} {lv[key]:g}: `{e}`" for lv, e in errors]
    return "\n".join(out) + "\n"


def plot(report: dict, path: str | Path) -> None:
    """Latency (TTFA and total, p50 and p95) and throughput vs concurrency / rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = _level_name(report)
    xs = [lv[key] for lv in report["levels"]]

    def series(metric: str, q: str) -> list[float]:
        values = [(lv[metric] or {}).get(q) for lv in report["levels"]]
        return [float("nan") if v is None else v * 1000 for v in values]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for metric, label, style in (("ttfa", "TTFA", "o-"), ("latency", "latency", "s--")):
        for q in ("p50", "p95"):
            ax1.plot(xs, series(metric, q), style, label=f"{label} {q}")
    ax1.set_xlabel(key)
    ax1.set_ylabel("ms")
    ax1.set_title("time to first audio and total latency")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.plot(xs, [lv["requests_per_second"] for lv in report["levels"]], "o-", label="requests/s")
    ax2.plot(
        xs, [lv["audio_seconds_per_wall_second"] for lv in report["levels"]], "s-", label="audio s / wall s"
    )
    ax2.set_xlabel(key)
    ax2.set_title("throughput")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    if len(xs) > 1 and min(xs) > 0:
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:g}" for x in xs])
    fig.suptitle(f"indicf5-fast stress: {report['target']['url']} ({report['mode']} loop)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(
    report: dict, out_dir: str | Path, stem: str = "stress", records: bool = False
) -> dict[str, Path]:
    """Write <stem>.json, <stem>.md and <stem>.png into `out_dir`; per-request records go into
    the JSON only when `records` is true (they can be large)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = (
        report
        if records
        else {
            **report,
            "levels": [{k: v for k, v in lv.items() if k != "records"} for lv in report["levels"]],
        }
    )
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    plot(report, paths["png"])
    return paths


# ------------------------------------------------------------------------------------- soak
def soak_markdown(report: dict) -> str:
    cfg, s, v = report["config"], report["summary"], report["verdict"]
    lat = s.get("latency") or {}
    out = [
        f"# Soak: {report['target']['url']} (pid {report['target']['pid']})",
        "",
        f"**{'PASSED' if v['passed'] else 'FAILED'}**"
        + ("" if v["passed"] else ": " + "; ".join(v["failures"])),
        "",
        f"- {cfg['requests']} requests at concurrency {cfg['concurrency']}, first {cfg['warmup']} = warm-up; "
        f"stream {cfg['stream']}, format {cfg['response_format']}, preset {cfg['preset']}, nfe_step {cfg['nfe_step']}",
        f"- succeeded {s['succeeded']}/{s['requests']}, statuses "
        + ", ".join(f"{k}: {n}" for k, n in s["status_counts"].items())
        + f"; lost {s['lost']}; 5xx {s['server_errors']}",
        f"- wall {s['wall_seconds']:.1f} s, {s['requests_per_second']:.2f} req/s, "
        f"latency p50 {_ms(lat, 'p50')} ms / p99 {_ms(lat, 'p99')} ms",
        f"- server RSS: start {report['start']['rss_mib']:.1f} MiB, after warm-up "
        f"{v.get('rss_baseline_mib', 0):.1f} MiB, end {v.get('rss_final_mib', 0):.1f} MiB "
        f"(growth {v.get('rss_growth', 0):+.2%}, limit {cfg['max_rss_growth']:.0%}; second half alone "
        f"{v.get('rss_late_growth', 0):+.2%}), max {v.get('rss_max_mib', 0):.1f} MiB",
        f"- open fds: start {report['start']['fds']}, after warm-up {v.get('fds_baseline', 0):g}, "
        f"end {v.get('fds_final', 0):g}, max {v.get('fds_max', 0)}",
        f"- medians over windows of {v.get('window', '-')} responses right after warm-up and at the end",
    ]
    out += [f"- warning: {w}" for w in v.get("warnings", [])]
    errors = s.get("errors") or []
    if errors:
        out += ["", "Errors: " + "; ".join(f"`{e}`" for e in errors)]
    return "\n".join(out) + "\n"


def plot_soak(report: dict, path: str | Path) -> None:
    """Server RSS and open fds against responses received, warm-up end marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    xs = [p["completed"] for p in samples]
    fig, ax1 = plt.subplots(figsize=(9, 4))
    ax1.plot(xs, [p["rss_kib"] / 1024 for p in samples], "-", color="tab:blue", label="RSS (MiB)")
    ax1.set_xlabel("responses received")
    ax1.set_ylabel("server RSS (MiB)", color="tab:blue")
    ax1.axvline(report["config"]["warmup"], color="gray", ls=":", label="end of warm-up")
    ax2 = ax1.twinx()
    ax2.plot(xs, [p["fds"] for p in samples], "-", color="tab:orange", label="open fds")
    ax2.set_ylabel("open file descriptors", color="tab:orange")
    verdict = "passed" if report["verdict"]["passed"] else "FAILED"
    ax1.set_title(f"soak: {report['config']['requests']} requests, {verdict}", fontsize=10)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_soak_reports(report: dict, out_dir: str | Path, stem: str = "soak") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    paths["markdown"].write_text(soak_markdown(report), encoding="utf-8")
    plot_soak(report, paths["png"])
    return paths
