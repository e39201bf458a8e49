"""One DiT pass on CPU bf16 with each attention kernel, side by side (docs/benchmarks.md).

    python scripts/attention_speed.py artifacts/base 300,530,800,1100,1400

Batch 2 (one request with CFG), the checkpoint's full-size DiT (random weights are fine: speed
does not depend on weight values), interleaved runs, medians. Kernels: two batched GEMMs
(``matmul``, the backend's choice without AMX), the fused kernel padded to ``sdpa_lengths`` (the
choice with AMX) and the fused kernel unpadded (for the padding's cost).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import indicf5_fast
from indicf5_fast.backends.torch_backend import sdpa_lengths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="checkpoint directory")
    ap.add_argument("frames", help="comma list of frame counts")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    tts = indicf5_fast.load(args.model, backend="torch", dtype="bfloat16", compile=False, threads=args.threads)
    backend, dit = tts.backend, tts.backend.dit
    kernels = {
        "GEMMs": ("matmul", ()),
        "fused, padded": ("sdpa", sdpa_lengths(dit.args.text_pos_max)),
        "fused, unpadded": ("sdpa", ()),
    }
    print("| frames | " + " | ".join(kernels) + " |")
    print("|---:|" + "---:|" * len(kernels))
    for n in (int(f) for f in args.frames.split(",")):
        g = torch.Generator().manual_seed(n)
        x, cond = torch.randn(2, n, 100, generator=g), torch.randn(2, n, 100, generator=g)
        text_emb = torch.randn(2, n, dit.args.text_dim, generator=g)
        t = torch.tensor([0.3, 0.3])
        times: dict[str, list[float]] = {k: [] for k in kernels}
        for rep in range(args.repeats + 1):  # the first round warms every kernel up
            order = list(kernels.items())
            for name, (impl, lengths) in order if rep % 2 else order[::-1]:
                dit.set_attention(impl, sdpa_lengths=lengths)
                t0 = time.perf_counter()
                backend.velocity(x, cond, text_emb, t, None)
                if rep:
                    times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["GEMMs"])
        cells = [f"{statistics.median(v) * 1000:.0f} ms ({base / statistics.median(v):.2f}×)" for v in times.values()]
        print(f"| {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
