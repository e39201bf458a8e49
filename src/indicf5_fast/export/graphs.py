"""The three ONNX graphs of an export: text embedding, DiT velocity, vocoder.

Each graph wraps one module of ``model/`` with the exact I/O of the ``Backend`` interface, so an
ONNX backend is a thin session runner. Exported with the dynamo exporter (the TorchScript one
fails on this DiT) with symbolic batch and frame dims. Batch examples are >= 2 on purpose:
torch.export specialises a dim whose example size is 0 or 1, which would freeze the batch.

Shapes: b batch, n frames, dt text dim, 100 mel channels, hop 256.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from indicf5_fast.errors import CheckpointError, require
from indicf5_fast.model.dit import DiT
from indicf5_fast.model.vocos import Vocos

# 20: the tanh GELU is one Gelu node (ONNX Runtime runs it as FastGelu; opset <= 19 spells it out
# in five elementwise ops over [b, n, 2·d] per layer)
DEFAULT_OPSET = 20
GRAPH_FILES = {"text_embed": "text_embed.onnx", "velocity": "dit.onnx", "vocoder": "vocoder.onnx"}
# frame counts the exported graphs are checked on (odd, different: a fixed length shows at once)
VERIFY_FRAMES = (7, 12)
# and the DiT graph once more at a long length (batch 1): rotary angles grow with the frame
# index, so precision lost in them (e.g. fp16 inv_freq: 0.6 rad at frame 4000) shows only there
VERIFY_LONG_FRAMES = 2048


def graph_io(text_dim: int, mel_dim: int = 100) -> dict[str, dict]:
    """Names, symbolic shapes and dtypes of every graph input/output (goes into the manifest)."""

    def spec(shape: list, dtype: str) -> dict:
        return {"shape": shape, "dtype": dtype}

    b, n = "batch", "frames"
    return {
        "text_embed": {
            "inputs": {"tokens": spec([b, n], "int64"), "drop": spec([b], "bool")},
            "outputs": {"text_emb": spec([b, n, text_dim], "float32")},
        },
        "velocity": {
            "inputs": {
                "x": spec([b, n, mel_dim], "float32"),
                "cond": spec([b, n, mel_dim], "float32"),
                "text_emb": spec([b, n, text_dim], "float32"),
                "t": spec([b], "float32"),
                "mask": spec([b, n], "bool"),
            },
            "outputs": {"v": spec([b, n, mel_dim], "float32")},
        },
        "vocoder": {
            "inputs": {"mel": spec([b, mel_dim, n], "float32")},
            "outputs": {"wave": spec([b, "(frames-1)*256"], "float32")},
        },
    }


class TextEmbedGraph(nn.Module):
    """tokens [b, n] int64 (already shifted, 0 = filler, fitted to n frames by the engine — no
    ``int(len)`` here, so n stays symbolic), drop [b] bool -> text_emb [b, n, dt] float32."""

    def __init__(self, dit: DiT):
        super().__init__()
        self.text_embed = dit.text_embed

    def forward(self, tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        return self.text_embed(tokens, None, drop).float()


class VelocityGraph(nn.Module):
    """x, cond [b, n, 100], text_emb [b, n, dt] float32, t [b] float32, mask [b, n] bool ->
    v [b, n, 100] float32. The DiT may hold fp16 weights (GPU variant): I/O stays float32 and the
    casts live inside the graph, so every variant has the same interface."""

    def __init__(self, dit: DiT):
        super().__init__()
        self.dit = dit
        self.dtype = dit.proj_out.weight.dtype

    def forward(self, x, cond, text_emb, t, mask) -> torch.Tensor:
        if self.dtype != torch.float32:
            x, cond, text_emb = x.to(self.dtype), cond.to(self.dtype), text_emb.to(self.dtype)
        return self.dit(x, cond, text_emb, t, mask).float()


class VocoderGraph(nn.Module):
    """mel [b, 100, n] -> wave [b, (n - 1) * 256]; needs ``istft_impl == "matmul"``."""

    def __init__(self, vocos: Vocos):
        super().__init__()
        self.vocos = vocos

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocos.decode(mel)


@contextlib.contextmanager
def export_attention_mode(dit: DiT) -> Iterator[DiT]:
    """The DiT as exported: fused QKV (one GEMM per layer; an inference transform with the same
    outputs, kept) and ``export_attention`` for the duration of an export (restored after)."""
    old = [block.attn.attn_impl for block in dit.transformer_blocks]
    dit.fuse_qkv_()
    dit.set_attention("export")
    try:
        yield dit
    finally:
        for block, impl in zip(dit.transformer_blocks, old, strict=True):
            block.attn.attn_impl = impl


@contextlib.contextmanager
def matmul_istft(vocos: Vocos) -> Iterator[Vocos]:
    """The exportable ISTFT for the duration of an export; the caller's setting is restored."""
    old = vocos.istft_impl
    vocos.istft_impl = "matmul"
    try:
        yield vocos
    finally:
        vocos.istft_impl = old


def _dims() -> tuple:
    from torch.export import Dim

    return Dim("batch", min=1, max=1024), Dim("frames", min=2, max=65536)


def _examples(dit: DiT, kind: str, b: int = 2, n: int = 37) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    a = dit.args
    if kind == "text_embed":
        return torch.randint(1, a.vocab_size + 1, (b, n), generator=g), torch.arange(b) % 2 == 1
    if kind == "velocity":
        mask = torch.ones(b, n, dtype=torch.bool)
        mask[1:, n - 5 :] = False  # a padded item, as in a real batch
        return (
            torch.randn(b, n, a.mel_dim, generator=g),
            torch.randn(b, n, a.mel_dim, generator=g),
            torch.randn(b, n, a.text_dim, generator=g),
            torch.rand(b, generator=g),
            mask,
        )
    return (torch.randn(b, a.mel_dim, n, generator=g),)


def _export(module: nn.Module, args: tuple, path: Path, names: dict, opset: int) -> None:
    batch, frames = _dims()
    inputs, outputs = list(names["inputs"]), list(names["outputs"])
    dynamic = {}
    for name, spec in names["inputs"].items():
        axes = {}
        for i, d in enumerate(spec["shape"]):
            if d == "batch":
                axes[i] = batch
            elif d == "frames":
                axes[i] = frames
        dynamic[name] = axes
    # dynamic_shapes is keyed by the forward() argument names; ours equal the graph input names
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=dynamic,
            opset_version=opset,
            dynamo=True,
            external_data=True,
            verbose=False,
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter logs progress lines at INFO/WARNING; keep a CLI run readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


@torch.no_grad()
def export_graphs(
    dit: DiT,
    vocos: Vocos,
    out_dir: Path,
    *,
    fp16: bool,
    opset: int,
    graphs: tuple[str, ...] = tuple(GRAPH_FILES),
) -> dict[str, Path]:
    """Write ``graphs`` into ``out_dir``; returns {graph: path}. ``fp16`` makes the DiT graph
    fp16 inside (text embedding and vocoder stay fp32: they run once per request, and the ISTFT
    needs fp32 range)."""
    io = graph_io(dit.args.text_dim, dit.args.mel_dim)
    paths = {k: out_dir / GRAPH_FILES[k] for k in graphs}
    dit = dit.float().eval()
    if "text_embed" in graphs:
        _export(
            TextEmbedGraph(dit), _examples(dit, "text_embed"), paths["text_embed"], io["text_embed"], opset
        )
    if "velocity" in graphs:
        with export_attention_mode(dit):
            step_dit = _half_keeping_rotary(dit) if fp16 else dit
            _export(VelocityGraph(step_dit), _examples(dit, "velocity"), paths["velocity"], io["velocity"], opset)
            del step_dit
    if "vocoder" in graphs:
        with matmul_istft(vocos):
            _export(
                VocoderGraph(vocos.eval()), _examples(dit, "vocoder"), paths["vocoder"], io["vocoder"], opset
            )
    return paths


def _half_keeping_rotary(dit: DiT) -> DiT:
    """An fp16 copy of ``dit`` whose rotary frequencies stay float32: rounded to fp16, inv_freq
    is off by up to ~1.5e-4 relative, i.e. 0.6 rad of rotary angle at frame 4000. The angles and
    their cos/sin are computed in float32 from it (``rotary_cos_sin``), as on the torch path."""
    half = copy.deepcopy(dit).half()
    half.rotary_embed.inv_freq = dit.rotary_embed.inv_freq.detach().float().clone()
    for name in ("rope_cos", "rope_sin"):  # cached tables (cache_rope_) stay float32 too
        if getattr(dit, name, None) is not None:
            setattr(half, name, getattr(dit, name).detach().float().clone())
    return half


def copy_graph(src: Path, dst_dir: Path) -> Path:
    """Copy a graph and its external-data file (same names: the .onnx refers to the data file by
    its relative name)."""
    import shutil

    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in (src, src.with_name(src.name + ".data")):
        if f.is_file():
            shutil.copyfile(f, dst_dir / f.name)
    return dst_dir / src.name


def quantize_velocity_int8(src: Path, dst: Path) -> None:
    """ONNX Runtime dynamic int8 quantization of the DiT's MatMul/Gemm weights (activations are
    quantized per call). ``src`` and ``dst`` must live in different directories: both use the
    ``<name>.onnx.data`` external-data file name."""
    quantization = require("onnxruntime.quantization", "onnx", "int8 quantization")
    QuantType, quantize_dynamic = quantization.QuantType, quantization.quantize_dynamic
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns about optional pre-processing
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=False,
            use_external_data_format=True,
        )
    finally:
        root.setLevel(level)


def _cpu_runner(path: Path) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Run a graph on the CPU with ONNX Runtime, else OpenVINO (an ``[openvino]``-only install)."""
    what = "checking the exported graphs (onnxruntime, or openvino)"
    if importlib.util.find_spec("onnxruntime") is not None:
        ort = require("onnxruntime", "onnx", what)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda feeds: sess.run(None, feeds)[0]
    ov = require("openvino", "onnx", what)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda feeds: np.asarray(compiled(feeds)[compiled.output(0)])


ROTARY_INITIALIZER = "rotary_embed.inv_freq"


def check_rotary_frequencies(path: Path, inv_freq: torch.Tensor) -> None:
    """The exported DiT graph must hold the rotary frequencies as the float32 initializer
    ``*rotary_embed.inv_freq``, equal to the checkpoint's: an fp16 graph that rounded them
    (and folded the cast into an anonymous constant) is off by 0.6 rad of angle at frame 4000,
    which random test weights barely show in the outputs. Raises CheckpointError."""
    import onnx
    from onnx import external_data_helper, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    found = [t for t in model.graph.initializer if t.name.endswith(ROTARY_INITIALIZER)]
    if len(found) != 1:
        raise CheckpointError(
            f"{path.name}: no float32 '{ROTARY_INITIALIZER}' initializer (rotary frequencies were folded "
            "or rounded at export)"
        )
    tensor = found[0]
    if tensor.data_type != onnx.TensorProto.FLOAT:
        raise CheckpointError(f"{path.name}: rotary frequencies are stored as {tensor.data_type}, not float32")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        external_data_helper.load_external_data_for_tensor(tensor, str(path.parent))
    got = numpy_helper.to_array(tensor)
    want = inv_freq.detach().float().cpu().numpy()
    if got.shape != want.shape or not np.array_equal(got, want):
        raise CheckpointError(f"{path.name}: rotary frequencies differ from the checkpoint's (rounded?)")


@torch.no_grad()
def verify_graphs(
    dit: DiT,
    vocos: Vocos,
    paths: dict[str, Path],
    frames: tuple[int, ...] = VERIFY_FRAMES,
    long_frames: int | None = VERIFY_LONG_FRAMES,
    checked: dict[str, list] | None = None,
) -> dict[str, float]:
    """Run every graph (CPU) at two frame counts and batch 1 and 2 against the PyTorch modules,
    and the DiT graph also at ``long_frames`` (batch 1; None = skip); returns the max abs error
    per graph. A graph whose length or batch was frozen at export fails here instead of at
    synthesis time, one that lost rotary precision at the long length. ``checked`` (if given)
    receives the [batch, frames] cases run per graph."""
    errors: dict[str, float] = {}
    dit = dit.float().eval()
    names = {g: list(spec["inputs"]) for g, spec in graph_io(dit.args.text_dim, dit.args.mel_dim).items()}
    long_n = min(int(long_frames), dit.args.text_pos_max) if long_frames else None
    for name, path in paths.items():
        run = _cpu_runner(path)
        worst = 0.0
        cases = [(b, n) for b in (1, 2) for n in frames]
        if name == "velocity" and long_n:
            cases.append((1, long_n))
        if checked is not None:
            checked[name] = [list(c) for c in cases]
        for b, n in cases:
            args = tuple(a[:b] for a in _examples(dit, name, b=2, n=n))
            if name == "velocity":
                mask = torch.ones(b, n, dtype=torch.bool)
                mask[1:, n - 3 :] = False  # batch 2: a padded item
                args = (*args[:4], mask)
            got = run({k: a.numpy() for k, a in zip(names[name], args, strict=True)})
            if name == "text_embed":
                ref = dit.text_embed(args[0], None, args[1])
            elif name == "velocity":
                ref = dit(*args)
            else:
                with matmul_istft(vocos):
                    ref = vocos.decode(args[0])
            ref = ref.float().numpy()
            if got.shape != ref.shape:
                raise CheckpointError(
                    f"exported {path.name} gives shape {got.shape} != {ref.shape} at batch {b}, "
                    f"{n} frames (a dim was fixed at export)"
                )
            worst = max(worst, float(np.abs(got - ref).max()))
        errors[name] = worst
        del run
    return errors
