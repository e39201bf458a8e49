"""ONNX export of a checkpoint: three graphs + a manifest that ties them to their source.

An export directory holds ``text_embed.onnx``, ``dit.onnx``, ``vocoder.onnx`` (each with its
``.onnx.data`` external-weight file, so the 2 GB protobuf limit never applies) and
``manifest.json``: format version, variant (fp32 | fp16 | int8), opset, flavour, DiT/Vocos
args, graph I/O shapes, the source checkpoint's ``fingerprint`` and every file's size and
sha256. The manifest is written last, so a crashed export is never mistaken for a good one; the
ONNX backend refuses a manifest that does not match the loaded checkpoint.

Public: :func:`export_onnx`, :func:`ensure_onnx_export`, :func:`read_manifest`,
:func:`check_manifest`, :func:`default_export_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from indicf5_fast.errors import CheckpointError, InputError, require

if TYPE_CHECKING:
    from indicf5_fast.model.checkpoint import Checkpoint
    from indicf5_fast.model.dit import DiT
    from indicf5_fast.model.vocos import Vocos

FORMAT = "indicf5-fast-onnx"
FORMAT_VERSION = 2  # 2: fused QKV, bias-in-GEMM attention, opset 20 (older exports re-export)
MANIFEST = "manifest.json"
VARIANTS = ("fp32", "fp16", "int8")
# max abs error the export-time self check accepts, per variant (fp32 measures ~1e-6..1e-5)
VERIFY_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "int8": None}


def variant_name(fp16: bool = False, quantize: str | None = None) -> str:
    if quantize not in (None, "int8"):
        raise InputError(f"quantize must be None or 'int8', got {quantize!r}", "quantize")
    if fp16 and quantize:
        raise InputError("choose either fp16 or int8 quantization, not both", "quantize")
    return "int8" if quantize else ("fp16" if fp16 else "fp32")


def default_export_dir(model: str | Path, fp16: bool = False, quantize: str | None = None) -> Path:
    """``<model_dir>/onnx[-fp16|-int8]`` (``<file>.onnx[...]`` next to a single weight file)."""
    variant = variant_name(fp16, quantize)
    suffix = "" if variant == "fp32" else f"-{variant}"
    path = Path(model).expanduser()
    if path.is_file():
        return path.parent / f"{path.stem}.onnx{suffix}"
    return path / f"onnx{suffix}"


def _writable_dir(path: Path, fingerprint: str, variant: str) -> Path:
    """``path`` if it can be created/written, else a per-user cache dir keyed by the checkpoint
    (hub snapshots may live on read-only storage)."""
    return writable_or(path, _cache_root() / f"{fingerprint}-{variant}")


def writable_or(path: Path, fallback: Path) -> Path:
    """``path`` if it can be created and written, else ``fallback`` (not created here)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    return fallback


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "indicf5-fast" / "onnx"


# ---------------------------------------------------------------------------------- manifest
def read_manifest(onnx_dir: str | Path) -> dict:
    path = Path(onnx_dir) / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{onnx_dir} is not an ONNX export (no {MANIFEST}); create one with "
            f"`indicf5-fast export onnx --model DIR --out {onnx_dir}`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an indicf5-fast ONNX manifest")
    return manifest


def manifest_problems(
    manifest: dict,
    ckpt: Checkpoint,
    onnx_dir: str | Path,
    variant: str | None = None,
    opset: int | None = None,
) -> list[str]:
    """Every reason why ``onnx_dir`` does not hold an export of ``ckpt`` (empty = it does).
    Graph protobufs are hashed in full; external-data files are checked by size (hashing the
    1.4 GB weights on every load would cost seconds; their sha256 stays in the manifest)."""
    problems = []
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(f"format version {manifest.get('format_version')} != {FORMAT_VERSION} (re-export)")
    src = manifest.get("source", {})
    if src.get("fingerprint") != ckpt.fingerprint:
        problems.append(
            f"exported from checkpoint {src.get('fingerprint')} ({src.get('model')}), "
            f"but the loaded checkpoint is {ckpt.fingerprint} ({ckpt.source})"
        )
    if manifest.get("dit_args") != ckpt.dit_args.to_dict():
        problems.append(
            f"DiT args/flavour differ (export {manifest.get('flavour')}, checkpoint {ckpt.dit_args.flavour})"
        )
    if manifest.get("vocos_args") != asdict(ckpt.vocos_args):
        problems.append("vocoder args differ")
    if variant is not None and manifest.get("variant") != variant:
        problems.append(f"variant {manifest.get('variant')} != requested {variant}")
    if opset is not None and manifest.get("opset") != opset:
        problems.append(f"opset {manifest.get('opset')} != requested {opset}")
    root = Path(onnx_dir)
    for name, info in manifest.get("files", {}).items():
        f = root / name
        if not f.is_file():
            problems.append(f"missing file {name}")
        elif f.stat().st_size != info.get("bytes"):
            problems.append(f"{name} has {f.stat().st_size} bytes, manifest says {info.get('bytes')}")
        elif name.endswith(".onnx") and _sha256(f) != info.get("sha256"):
            problems.append(f"{name} does not match its sha256 in the manifest")
    graphs = manifest.get("graphs", {})
    for g in ("text_embed", "velocity", "vocoder"):
        if graphs.get(g, {}).get("file") not in manifest.get("files", {}):
            problems.append(f"manifest has no {g} graph")
    return problems


def check_manifest(
    manifest: dict, ckpt: Checkpoint, onnx_dir: str | Path, variant: str | None = None
) -> None:
    """Raise CheckpointError unless ``onnx_dir`` is an intact export of exactly ``ckpt``."""
    problems = manifest_problems(manifest, ckpt, onnx_dir, variant)
    if problems:
        raise CheckpointError(
            f"ONNX export {onnx_dir} does not match the checkpoint: "
            + "; ".join(problems)
            + " — re-export with `indicf5-fast export onnx`"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- export
def export_onnx(
    model: str | Path | None,
    out_dir: str | Path | None = None,
    *,
    fp16: bool = False,
    quantize: str | None = None,
    opset: int | None = None,
    flavour: str | None = None,
    vocab: str | Path | None = None,
    vocoder: str | Path | None = None,
    checkpoint: Checkpoint | None = None,
    modules: tuple[DiT, Vocos] | None = None,
    verify: bool = True,
) -> Path:
    """Export ``model`` (or an already loaded ``checkpoint`` and its built ``modules``) to
    ``out_dir`` and return it. Overwrites a previous export there."""
    from indicf5_fast.export import graphs as eg
    from indicf5_fast.model.checkpoint import load_checkpoint

    variant = variant_name(fp16, quantize)
    opset = int(opset or eg.DEFAULT_OPSET)
    if not 17 <= opset <= 23:
        raise InputError(f"opset must be in 17..23, got {opset}", "opset")
    for module in ("onnx", "onnxscript"):  # torch's dynamo exporter; fail before loading anything
        require(module, "onnx", "ONNX export")
    ckpt = checkpoint or load_checkpoint(model, flavour=flavour, vocab=vocab, vocoder=vocoder)
    dit, vocos = modules or ckpt.build()
    out = Path(out_dir) if out_dir else default_export_dir(ckpt.source, fp16, quantize)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # invalid until the new manifest is written
    for name in eg.GRAPH_FILES.values():
        for f in (out / name, out / f"{name}.data"):
            f.unlink(missing_ok=True)
    t0 = time.perf_counter()
    # fp16/int8 share the fp32 text embedding and vocoder: copy them (and quantize the fp32 DiT)
    # from a matching fp32 export when there is one, instead of exporting again
    base = _matching_fp32_export(ckpt, opset, out) if variant != "fp32" else None
    paths: dict[str, Path] = {}
    if base is not None:
        paths = {g: eg.copy_graph(base / eg.GRAPH_FILES[g], out) for g in ("text_embed", "vocoder")}
    else:
        paths = eg.export_graphs(dit, vocos, out, fp16=False, opset=opset, graphs=("text_embed", "vocoder"))
    if variant == "int8":
        with tempfile.TemporaryDirectory(dir=out, prefix=".fp32-") as tmp:
            if base is not None:
                src = base / eg.GRAPH_FILES["velocity"]
            else:
                src = eg.export_graphs(dit, vocos, Path(tmp), fp16=False, opset=opset, graphs=("velocity",))
                src = src["velocity"]
            paths["velocity"] = out / eg.GRAPH_FILES["velocity"]
            eg.quantize_velocity_int8(src, paths["velocity"])
    else:
        paths |= eg.export_graphs(dit, vocos, out, fp16=variant == "fp16", opset=opset, graphs=("velocity",))
    # rotary frequencies: float32 and exact in every variant (fp16 rounding = 0.6 rad at 4000)
    eg.check_rotary_frequencies(paths["velocity"], dit.rotary_embed.inv_freq)
    checked: dict[str, list] = {}
    errors = eg.verify_graphs(dit, vocos, paths, checked=checked) if verify else {}
    for g, err in errors.items():
        tol = VERIFY_TOLERANCE[variant] if g == "velocity" else VERIFY_TOLERANCE["fp32"]
        if tol is not None and err > tol:
            raise CheckpointError(f"exported {g} graph differs from PyTorch by {err:.2e} (> {tol:g})")
    manifest = _manifest(ckpt, variant, opset, paths, errors, time.perf_counter() - t0)
    manifest["verify_cases"] = checked  # [batch, frames] per graph (the DiT also at a long length)
    tmp_manifest = out / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp_manifest.replace(out / MANIFEST)
    return out


def _matching_fp32_export(ckpt: Checkpoint, opset: int, out: Path) -> Path | None:
    """A valid fp32 export of ``ckpt`` at its default place (other than ``out``), or None."""
    default = default_export_dir(ckpt.source)
    for cand in (default, _cache_root() / f"{ckpt.fingerprint}-fp32"):
        if cand.resolve() == out.resolve() or not (cand / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(cand)
        except CheckpointError:
            continue
        if not manifest_problems(manifest, ckpt, cand, "fp32", opset):
            return cand
    return None


def _manifest(
    ckpt: Checkpoint, variant: str, opset: int, paths: dict[str, Path], errors: dict, seconds: float
) -> dict:
    import onnx
    import torch

    from indicf5_fast import __version__
    from indicf5_fast.export.graphs import graph_io

    io = graph_io(ckpt.dit_args.text_dim, ckpt.dit_args.mel_dim)
    files: dict[str, dict] = {}
    graphs: dict[str, dict] = {}
    for g, path in paths.items():
        dtype = "float16" if (variant == "fp16" and g == "velocity") else "float32"
        if variant == "int8" and g == "velocity":
            dtype = "int8-dynamic"
        graphs[g] = {"file": path.name, "compute_dtype": dtype, **io[g]}
        for f in (path, path.with_name(path.name + ".data")):
            if f.is_file():
                files[f.name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "variant": variant,
        "opset": opset,
        "flavour": ckpt.dit_args.flavour,
        "dit_args": ckpt.dit_args.to_dict(),
        "vocos_args": asdict(ckpt.vocos_args),
        "source": {"model": ckpt.source, "fingerprint": ckpt.fingerprint},
        "graphs": graphs,
        "files": files,
        "verify_max_abs_error": errors,
        "exporter": {
            "indicf5_fast": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "seconds": round(seconds, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


def ensure_onnx_export(
    model_dir: str | Path,
    out_dir: str | Path | None = None,
    fp16: bool = False,
    quantize: str | None = None,
    *,
    opset: int | None = None,
    flavour: str | None = None,
    vocab: str | Path | None = None,
    vocoder: str | Path | None = None,
    checkpoint: Checkpoint | None = None,
    modules: tuple[DiT, Vocos] | None = None,
) -> Path:
    """Return an export of ``model_dir`` in ``out_dir`` (default ``<model_dir>/onnx[-fp16|-int8]``),
    exporting only if it is absent or stale (other checkpoint, flavour, variant, opset, format,
    or damaged files). ``checkpoint``/``modules`` avoid loading the weights a second time."""
    from indicf5_fast.model.checkpoint import load_checkpoint

    variant = variant_name(fp16, quantize)
    ckpt = checkpoint or load_checkpoint(model_dir, flavour=flavour, vocab=vocab, vocoder=vocoder)
    out = (
        Path(out_dir)
        if out_dir
        else _writable_dir(default_export_dir(model_dir, fp16, quantize), ckpt.fingerprint, variant)
    )
    if (out / MANIFEST).is_file():
        try:
            manifest = read_manifest(out)
        except CheckpointError:
            manifest = None
        if manifest is not None and not manifest_problems(manifest, ckpt, out, variant, opset):
            return out
    return export_onnx(
        model_dir,
        out,
        fp16=fp16,
        quantize=quantize,
        opset=opset,
        checkpoint=ckpt,
        modules=modules,
    )
