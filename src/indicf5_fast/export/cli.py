"""`indicf5-fast export onnx`: write the ONNX graphs + manifest of a checkpoint.

Import-light on purpose (the CLI imports every subcommand module at start-up): torch, onnx and
onnxruntime are imported inside ``_run_onnx``.
"""

from __future__ import annotations

import argparse

from indicf5_fast.config import add_config_args, config_from_args

CHECKPOINT_FIELDS = ("model", "revision", "flavour", "vocab", "vocoder")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export the model to ONNX (text embedding, DiT step, vocoder)")
    sub = p.add_subparsers(dest="export_format")
    o = sub.add_parser(
        "onnx",
        help="three ONNX graphs with dynamic batch and length + manifest.json",
        description="Export the text embedding, the DiT velocity step and the vocoder to ONNX "
        "(dynamo exporter, external weights). The graphs are checked against PyTorch on two "
        "lengths and batch 1 and 2 before the manifest is written.",
    )
    add_config_args(o, only=CHECKPOINT_FIELDS, required=("model",))
    o.add_argument("--out", default=None, help="output directory (default: <model>/onnx[-fp16|-int8])")
    o.add_argument("--fp16", action="store_true", help="fp16 DiT graph (for GPUs; never on CPU)")
    o.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="dynamic int8 quantization of the DiT MatMul/Gemm weights (CPU; costs fidelity)",
    )
    o.add_argument("--opset", type=int, default=None, help="ONNX opset, 17..23 (default 20)")
    o.add_argument("--force", action="store_true", help="export even if a matching export exists")
    o.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    o.set_defaults(func=_run_onnx)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run_onnx(args: argparse.Namespace) -> int:
    import json
    import time

    from indicf5_fast.errors import require
    from indicf5_fast.export.onnx import MANIFEST, ensure_onnx_export, export_onnx
    from indicf5_fast.model.checkpoint import load_checkpoint

    for module in ("onnx", "onnxscript"):  # before the checkpoint load
        require(module, "onnx", "indicf5-fast export onnx")
    t0 = time.perf_counter()
    cfg = config_from_args(args)
    common = dict(fp16=args.fp16, quantize=args.quantize, opset=args.opset)
    ckpt = load_checkpoint(
        cfg.model, flavour=cfg.flavour, vocab=cfg.vocab, vocoder=cfg.vocoder, revision=cfg.revision
    )
    if args.force or args.no_verify:
        out = export_onnx(ckpt.source, args.out, verify=not args.no_verify, checkpoint=ckpt, **common)
    else:
        out = ensure_onnx_export(ckpt.source, args.out, checkpoint=ckpt, **common)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    size = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
    errs = ", ".join(f"{k} {v:.1e}" for k, v in manifest.get("verify_max_abs_error", {}).items())
    print(
        f"ONNX export ({manifest['variant']}, opset {manifest['opset']}, flavour {manifest['flavour']}) "
        f"in {out}: {len(manifest['files'])} files, {size:.0f} MB; "
        f"max abs error vs PyTorch: {errs or 'not checked'} [{time.perf_counter() - t0:.1f} s]"
    )
    return 0
