"""Summary of a ``scripts/gpu-check.sh`` run: test counts and figures from junit.xml, the bench's
headline numbers against the issue's GPU targets. Usage: gpu_check_summary.py OUT_DIR MODE."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# issue 14's targets for the GPU run
TARGET_SPEEDUP_NFE32 = 3.0  # ours vs upstream eager at the same dtype, NFE 32
TARGET_RTF_10S = 0.01  # RTF at NFE 32 for ~10 s of speech
TARGET_TTFA_S = 0.100  # time to first audio of a sentence


def tests_section(out: Path) -> list[str]:
    path = out / "junit.xml"
    if not path.is_file():
        return ["## Tests", "", "no junit.xml (the test part did not run or was killed)", ""]
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    failed, figures, skip_reasons = [], [], set()
    for case in cases:
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            counts["failed"] += 1
            failed.append(name)
        elif "error" in kinds:
            counts["error"] += 1
            failed.append(name + " (error)")
        elif "skipped" in kinds:
            counts["skipped"] += 1
            skip_reasons.add(next(c for c in case if c.tag == "skipped").get("message", "")[:120])
        else:
            counts["passed"] += 1
        for prop in case.iter("property"):
            figures.append(f"| {name} | {prop.get('name')} | {prop.get('value')} |")
    lines = ["## Tests (pytest -m gpu)", "", ", ".join(f"{v} {k}" for k, v in counts.items()), ""]
    lines += [f"- FAILED: {n}" for n in failed]
    lines += [f"- skipped: {r}" for r in sorted(skip_reasons)]
    if figures:
        lines += ["", "| test | figure | value |", "|---|---|---|", *figures]
    return lines + [""]


def _fmt(x, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def bench_section(out: Path) -> list[str]:
    path = out / "bench.json"
    if not path.is_file():
        return ["## Bench", "", "no bench.json (the bench part did not run or was killed: see bench.log)", ""]
    res = json.loads(path.read_text(encoding="utf-8"))
    rows = res.get("rows", [])
    lines = ["## Bench vs upstream f5-tts (same process)", ""]
    m = res.get("machine", {})
    lines.append(f"{m.get('gpu') or m.get('cpu')}; torch {m.get('torch')}; device `{m.get('device')}`")
    lines.append("")
    up = {(r["nfe"], r["schedule"], r["target_seconds"]): r for r in rows if r["backend"] == "upstream"}
    lines += [
        "| configuration | speech s | e2e s | RTF | × upstream same NFE | upstream dtype |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        u = up.get((r["nfe"], r["schedule"], r["target_seconds"]))
        lines.append(
            f"| {r['label']} | {r['audio_seconds']:.2f} | {r['e2e_s']:.3f} | {r['rtf']:.4f} "
            f"| {_fmt(r.get('speedup_vs_upstream_same_nfe'), '.2f')} | {u['dtype'] if u else '–'} |"
        )
    for u in res.get("unavailable", []):
        lines.append(f"| {u['label']} | unavailable: {u['reason'][:100]} | | | | |")
    lines.append("")
    ours32 = [r for r in rows if r["backend"] != "upstream" and (r["nfe"], r["schedule"]) == (32, "uniform")]
    checks = []
    same_dtype = [
        r for r in ours32 if up.get((32, "uniform", r["target_seconds"]), {}).get("dtype") == r["dtype"]
    ]
    best = max((r.get("speedup_vs_upstream_same_nfe") or 0 for r in same_dtype), default=None)
    checks.append(("NFE 32 vs upstream eager, same dtype", best, TARGET_SPEEDUP_NFE32, ">="))
    long = [r for r in ours32 if r["target_seconds"] == max(x["target_seconds"] for x in rows)]
    rtf = min((r["rtf"] for r in long), default=None)
    checks.append(("RTF, NFE 32, longest length", rtf, TARGET_RTF_10S, "<="))
    ttfa = [t for t in res.get("ttfa", []) if t["streamed"]]
    best_ttfa = min((t["ttfa_s"] for t in ttfa), default=None)
    checks.append(("TTFA of a sentence (s), best of ours", best_ttfa, TARGET_TTFA_S, "<="))
    if res.get("machine", {}).get("device", "").startswith("cpu"):
        lines += ["(CPU run: the targets below are the GPU run's; they are not expected to be met here)", ""]
    lines += ["| target | measured | goal | met |", "|---|---|---|---|"]
    for name, value, goal, op in checks:
        met = value is not None and (value >= goal if op == ">=" else value <= goal)
        lines.append(f"| {name} | {_fmt(value, '.4g')} | {op} {goal:g} | {'yes' if met else 'NO'} |")
    if res.get("ttfa"):
        lines += ["", "| TTFA configuration | ms |", "|---|---|"]
        lines += [f"| {t['label']} | {1000 * t['ttfa_s']:.1f} |" for t in res["ttfa"]]
    return lines + [""]


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    mode = argv[2] if len(argv) > 2 else "?"
    lines = [f"# indicf5-fast gpu-check — {mode}", ""]
    lines += tests_section(out)
    lines += bench_section(out)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
