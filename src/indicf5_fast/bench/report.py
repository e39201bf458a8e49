"""Bench output: JSON (everything), a Markdown table, a PNG plot and a short console table."""

from __future__ import annotations

import json
import math
from pathlib import Path

from indicf5_fast.errors import require


def _f(x, fmt: str = ".2f", none: str = "–") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    return format(x, fmt)


def _ms(x) -> str:
    return _f(None if x is None else 1000 * x, ".0f")


def markdown(results: dict) -> str:
    m = results["machine"]
    peak = results["matmul_peak_gflops"]
    lines = [
        f"**Machine:** {m['cpu']} ({m['cpu_count']} cores, {m['torch_threads']} torch threads)"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; torch {m['torch']}; device `{m['device']}`.  ",
        f"**Model:** `{results['model']}` (DiT dim {results['dit_args']['dim']}, depth "
        f"{results['dit_args']['depth']}; random weights — speed does not depend on values); reference "
        f"{results['reference_seconds']:.2f} s; seed {results['seed']}; medians of {results['repeats']} "
        "interleaved runs; warm-up reported apart.  ",
        f"**Measured torch matmul peak (2048³):** fp32 {peak.get('float32', float('nan')):.0f} GFLOP/s, "
        f"bf16 {peak.get('bfloat16', float('nan')):.0f} GFLOP/s"
        + (f", fp16 {peak['float16']:.0f} GFLOP/s." if "float16" in peak else "."),
        "",
        "| configuration | speech s | e2e s | RTF | × upstream (NFE 32) | × upstream (same NFE) "
        "| front end ms | text emb ms | DiT s | vocoder ms | DiT GFLOP/s (% peak) | engine MB | peak RSS MB "
        "| warm-up s | mel cos | mel max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        st = r["stages_s"]
        pct = f" ({_f(r.get('dit_pct_of_peak'), '.0f')} %)" if r.get("dit_pct_of_peak") is not None else ""
        busy = f" ⚠ {r['disturbed_runs']}/{r['runs']} runs disturbed" if r.get("disturbed_runs") else ""
        lines.append(
            f"| {r['label']}{busy} | {r['audio_seconds']:.2f} | {r['e2e_s']:.2f} | {r['rtf']:.3f} "
            f"| {_f(r['speedup_vs_upstream_default'])}× | {_f(r['speedup_vs_upstream_same_nfe'])}× "
            f"| {_ms(st['frontend'])} | {_ms(st['text_embed'])} | {st['dit']:.2f} | {_ms(st['vocoder'])} "
            f"| {_f(r['dit_gflops_per_s'], '.0f')}{pct} | {_f(r.get('engine_mb'), '.0f')} "
            f"| {_f(r['peak_mem_mb'], '.0f')} "
            f"| {_f(r['warmup_s'], '.1f')} | {_f(r.get('mel_cosine'), '.6f')} "
            f"| {_f(r.get('mel_max_abs_diff'), '.2e')} |"
        )
    for u in results.get("unavailable", []):
        lines.append(f"| {u['label']} | unavailable: {u['reason']} |" + " |" * 14)
    if results.get("ttfa"):
        lines += [
            "",
            f"**Time to first audio** of one sentence (prepared voice; median of {results['repeats']} after a "
            f'warm-up run): "{results["ttfa"][0]["text"]}"',
            "",
            "| configuration | TTFA ms | speech s | how |",
            "|---|---|---|---|",
        ]
        for t in results["ttfa"]:
            how = "first streamed chunk" if t["streamed"] else "whole synthesis (no streaming)"
            lines.append(f"| {t['label']} | {_ms(t['ttfa_s'])} | {_f(t['audio_seconds'])} | {how} |")
    lines += [
        "",
        "× upstream = upstream f5-tts eager (its dtype in its row) end-to-end time / this row's, same reference, text "
        "and length (NFE 32 = IndicF5's default setting; same NFE = upstream run at this row's NFE "
        "and schedule). Mel columns compare the generated mel with the fp32 eager run of the same "
        "NFE, schedule and seed. Engine MB: process memory growth while that engine loaded and "
        "warmed up (weights, prepacked/frozen copies, working memory; engines loaded later can "
        "reuse memory freed by earlier ones). Peak RSS: the whole process (every loaded model) "
        "during the run on CPU, max allocated on CUDA.",
    ]
    return "\n".join(lines) + "\n"


def console_table(results: dict) -> str:
    head = f"{'configuration':44s} {'speech s':>8s} {'e2e s':>8s} {'RTF':>7s} {'× upstream':>10s} {'mel cos':>8s}"
    out = [head, "-" * len(head)]
    for r in results["rows"]:
        out.append(
            f"{r['label']:44s} {r['audio_seconds']:8.2f} {r['e2e_s']:8.2f} {r['rtf']:7.3f} "
            f"{_f(r['speedup_vs_upstream_default']):>9s}× {_f(r.get('mel_cosine'), '.6f'):>8s}"
        )
    for u in results.get("unavailable", []):
        out.append(f"{u['label']:44s} unavailable ({u['reason'][:70]})")
    busy = [
        f"{r['label']} ({r['disturbed_runs']}/{r['runs']})"
        for r in results["rows"]
        if r.get("disturbed_runs")
    ]
    if busy:
        out.append(
            "WARNING: other work slowed some runs (CPU share < 80 % of the best run): " + ", ".join(busy)
        )
    for t in results.get("ttfa", []):
        out.append(f"TTFA {t['label']}: {1000 * t['ttfa_s']:.0f} ms")
    peak = results["matmul_peak_gflops"]
    out.append(
        f"torch matmul peak: fp32 {peak.get('float32', float('nan')):.0f} GFLOP/s, "
        f"bf16 {peak.get('bfloat16', float('nan')):.0f} GFLOP/s"
        + (f", fp16 {peak['float16']:.0f} GFLOP/s" if "float16" in peak else "")
    )
    for r in results["rows"]:
        if r.get("dit_pct_of_peak") is not None and r["backend"] != "upstream":
            out.append(
                f"  {r['label']}: DiT {r['dit_gflops_per_s']:.0f} GFLOP/s = "
                f"{r['dit_pct_of_peak']:.0f} % of the {r['dtype']} peak"
            )
    return "\n".join(out)


def summary(results: dict) -> str:
    """One line per configuration of ours: how many times faster than upstream, in words."""
    lines = []
    for r in results["rows"]:
        if r["backend"] == "upstream" or r["speedup_vs_upstream_default"] is None:
            continue
        what = "same speech as upstream" if (r["nfe"], r["schedule"]) == (32, "uniform") else "fewer steps"
        lines.append(
            f"{r['label']} ({what}): {r['speedup_vs_upstream_default']:.1f}x faster than upstream "
            f"f5-tts fp32 for {r['audio_seconds']:.1f} s of speech ({r['e2e_s']:.1f} s vs "
            f"{r['e2e_s'] * r['speedup_vs_upstream_default']:.1f} s)"
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path | None:
    """Bar chart: speedup vs upstream (NFE 32) per configuration, one group per length."""
    matplotlib = require("matplotlib", "bench", "bench plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in results["rows"] if r["speedup_vs_upstream_default"] is not None]
    if not rows:
        return None
    labels = list(dict.fromkeys(r["label"] for r in rows))
    lengths = sorted({r["target_seconds"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) * max(1, len(lengths)) / 2 + 3), 4.5))
    width = 0.8 / max(1, len(lengths))
    for j, s in enumerate(lengths):
        vals = [
            next(
                (
                    r["speedup_vs_upstream_default"]
                    for r in rows
                    if r["label"] == lab and r["target_seconds"] == s
                ),
                0,
            )
            for lab in labels
        ]
        xs = [i + (j - (len(lengths) - 1) / 2) * width for i in range(len(labels))]
        bars = ax.bar(xs, vals, width, label=f"~{s:g} s speech")
        ax.bar_label(bars, fmt="%.1f×", fontsize=7)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("× upstream f5-tts eager (NFE 32)")
    ax.set_title(
        f"indicf5-fast bench — {results['machine'].get('gpu') or results['machine']['cpu']}", fontsize=9
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(results: dict, output_dir: Path | None, output_json: Path | None) -> list[Path]:
    written = []
    if output_json is not None:
        output_json.parent.mkdir(parents=True, exist_ok=True)
        output_json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(output_json)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        if output_json is None:
            p = output_dir / "bench.json"
            p.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(p)
        md = output_dir / "bench.md"
        md.write_text(markdown(results), encoding="utf-8")
        written.append(md)
        png = plot(results, output_dir / "bench.png")
        if png is not None:
            written.append(png)
    return written
