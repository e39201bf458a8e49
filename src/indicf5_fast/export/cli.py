"""`indicf5-fast export onnx`: write the ONNX graphs + manifest of a checkpoint.
`indicf5-fast export f5tts`: write upstream F5-TTS's file formats (for its TensorRT-LLM runtime).

Import-light on purpose (the CLI imports every subcommand module at start-up): torch, onnx and
onnxruntime are imported inside the run functions.
"""

from __future__ import annotations

import argparse

from indicf5_fast.config import add_config_args, config_from_args

CHECKPOINT_FIELDS = ("model", "revision", "flavour", "vocab", "vocoder")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export the model: ONNX graphs, or upstream F5-TTS files (TensorRT-LLM runtime)"
    )
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
    _add_f5tts(sub)
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


def _add_f5tts(sub) -> None:
    f = sub.add_parser(
        "f5tts",
        help="upstream F5-TTS files: model_<n>.pt, vocab.txt, Vocos dir, model config (for TensorRT-LLM)",
        description="Write the checkpoint in upstream F5-TTS's formats, as its TensorRT-LLM Triton "
        "runtime (f5-tts 1.1.22 runtime/triton_trtllm) reads them: a training-style model_<n>.pt, "
        "vocab.txt, a Vocos directory and an F5TTS_Base-style model_cfg.yaml. See docs/tensorrt-llm.md.",
    )
    f.add_argument(
        "--model", required=True, help="IndicF5-layout directory, upstream checkpoint file, or hub id"
    )
    f.add_argument("--out", required=True, help="output directory (new, empty, or an earlier f5tts export)")
    f.add_argument("--flavour", choices=("v0", "v1"), default=None, help="DiT flavour (IndicF5 = v0)")
    f.add_argument("--vocab", default=None, help="vocab.txt (for upstream checkpoint files)")
    f.add_argument("--vocoder", default=None, help="Vocos directory (for checkpoints without vocoder)")
    f.add_argument("--step", type=int, default=0, help="the <n> of model_<n>.pt (default 0)")
    f.add_argument("--force", action="store_true", help="write into a non-empty directory")
    f.set_defaults(func=_run_f5tts)


def _run_f5tts(args: argparse.Namespace) -> int:
    import json
    import time

    from indicf5_fast.export.f5tts import MANIFEST, convert_command, export_f5tts

    t0 = time.perf_counter()
    out = export_f5tts(
        args.model,
        args.out,
        flavour=args.flavour,
        vocab=args.vocab,
        vocoder=args.vocoder,
        step=args.step,
        force=args.force,
    )
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    size = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
    print(
        f"F5-TTS export (flavour {manifest['flavour']}, upstream preset "
        f"{manifest['upstream_model_name'] or 'none: custom dims'}) in {out}: "
        f"{len(manifest['files'])} files, {size:.0f} MB [{time.perf_counter() - t0:.1f} s]"
    )
    print(
        f"next (in f5_tts/runtime/triton_trtllm, see docs/tensorrt-llm.md): {convert_command(manifest, out)}"
    )
    return 0
