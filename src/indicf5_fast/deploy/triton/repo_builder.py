"""Classic Triton model repository for the NGC container: ``config.pbtxt`` + python-backend
``model.py`` per model, an optional ONNX vocoder model, a runbook and a Dockerfile.

Layout written under ``out``::

    indicf5/config.pbtxt, indicf5/1/model.py                 dynamic batching
    indicf5_stream/config.pbtxt, indicf5_stream/1/model.py   decoupled (streaming)
    vocoder/config.pbtxt, vocoder/1/model.onnx               only with vocoder_onnx
    README.md, Dockerfile

``Dockerfile`` is the project's ``docker/Dockerfile.triton``: the package's
``templates/Dockerfile`` is a link to it, which wheels store as the file itself.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from indicf5_fast.config import BOUNDS
from indicf5_fast.deploy.triton import tensors
from indicf5_fast.errors import InputError

KINDS = ("auto", "cpu", "gpu")
VOCODER_MODEL_NAME = "vocoder"


@dataclass
class RepoOptions:
    model: str  # checkpoint path as the Triton server will see it (e.g. /models/IndicF5)
    backend: str = "torch"
    device: str = "auto"  # overridden per instance to cuda:N for KIND_GPU
    dtype: str = "auto"
    kind: str = "auto"  # auto = gpu when CUDA is visible here, else cpu
    instances: int = 1
    max_batch: int = 8
    queue_delay_ms: float = 5.0
    preset: str = ""  # "" = IndicF5's defaults (32 uniform steps)
    voice_dir: str = ""  # NAME.wav + NAME.txt pairs, path as the server sees it
    onnx_dir: str = ""  # exported graphs for backend onnx/openvino, path as the server sees it
    stream: bool = True
    vocoder_onnx: str | None = None  # local ONNX vocoder file to copy into the repository
    vocoder_tensorrt: bool = False
    # TensorRT engines + timing cache of the vocoder, a writable path as the server sees it
    # (model repositories are often mounted read-only)
    vocoder_trt_cache: str = "/tmp/indicf5-trt-cache/vocoder"
    max_frames: int = 4096  # longest mel the vocoder gets (IndicF5's duration limit)

    def validate(self) -> RepoOptions:
        if not self.model:
            raise InputError("give --model: the checkpoint path as the Triton server sees it", "model")
        if self.kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {self.kind!r}", "kind")
        if not 1 <= self.instances <= 64:
            raise InputError("instances must be in 1..64", "instances")
        BOUNDS["max_batch_size"].check("max_batch", self.max_batch)
        BOUNDS["batch_wait_ms"].check("queue_delay_ms", self.queue_delay_ms)
        if self.vocoder_tensorrt and not self.vocoder_onnx:
            raise InputError("--vocoder-tensorrt needs --vocoder-onnx", "vocoder_tensorrt")
        if self.vocoder_tensorrt and not self.vocoder_trt_cache:
            raise InputError("--vocoder-trt-cache must name a writable directory", "vocoder_trt_cache")
        if not 2 <= self.max_frames <= 65536:
            raise InputError("max_frames must be in 2..65536", "max_frames")
        return self


def resolve_kind(kind: str) -> str:
    if kind == "auto":
        import torch

        kind = "gpu" if torch.cuda.is_available() else "cpu"
    return "KIND_GPU" if kind == "gpu" else "KIND_CPU"


def build_repository(out: str | Path, options: RepoOptions) -> Path:
    """Write the repository; existing model directories under ``out`` are replaced."""
    from indicf5_fast import __version__

    opts = options.validate()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    kind = resolve_kind(opts.kind)
    vocoder = _copy_vocoder(root, opts, kind) if opts.vocoder_onnx else None
    common = {
        "version": __version__,
        "instances": opts.instances,
        "kind": kind,
        "model": _escape(opts.model),
        "backend": opts.backend,
        "device": opts.device,
        "dtype": opts.dtype,
        "preset": opts.preset,
        "voice_dir": _escape(opts.voice_dir),
        "onnx_dir": _escape(opts.onnx_dir),
        "vocoder_model": VOCODER_MODEL_NAME if vocoder else "",
        "vocoder_input": vocoder[0] if vocoder else "",
        "vocoder_output": vocoder[1] if vocoder else "",
        "inputs": _tensor_block("input", tensors.INPUTS),
    }
    models = [
        (
            tensors.MODEL_NAME,
            opts.max_batch,
            tensors.OUTPUTS,
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(opts.queue_delay_ms * 1000)}\n}}",
        )
    ]
    if opts.stream:
        models.append(
            (
                tensors.STREAM_MODEL_NAME,
                1,
                tensors.STREAM_OUTPUTS,
                "model_transaction_policy {\n  decoupled: true\n}",
            )
        )
    for name, max_batch, outputs, scheduling in models:
        model_dir = root / name
        if model_dir.exists():
            shutil.rmtree(model_dir)
        (model_dir / "1").mkdir(parents=True)
        config = _template("config.pbtxt.tmpl").substitute(
            common,
            name=name,
            max_batch=max_batch,
            outputs=_tensor_block("output", outputs),
            scheduling=scheduling,
        )
        (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
        (model_dir / "1" / "model.py").write_text(_template_text("model.py"), encoding="utf-8")
    vocoder_row = (
        f"| `{VOCODER_MODEL_NAME}` | Vocos decoder (ONNX Runtime{', TensorRT accelerator' if opts.vocoder_tensorrt else ''}),"
        " called through BLS | none |\n"
        if vocoder
        else ""
    )
    readme = _template("README.md.tmpl").substitute(
        common,
        max_batch=opts.max_batch,
        queue_delay_ms=opts.queue_delay_ms,
        vocoder_row=vocoder_row,
        out_dir=str(root),
    )
    (root / "README.md").write_text(readme, encoding="utf-8")
    (root / "Dockerfile").write_text(_template_text("Dockerfile"), encoding="utf-8")
    return root


def _tensor_block(kind: str, specs: tuple[tensors.TensorSpec, ...]) -> str:
    items = []
    for s in specs:
        lines = [
            f'    name: "{s.name}"',
            f"    data_type: {s.config_dtype}",
            f"    dims: [ {', '.join(map(str, s.shape))} ]",
        ]
        if s.optional:
            lines.append("    optional: true")
        items.append("  {\n" + "\n".join(lines) + "\n  }")
    return f"{kind} [\n" + ",\n".join(items) + "\n]"


def _copy_vocoder(root: Path, opts: RepoOptions, kind: str) -> tuple[str, str]:
    """Copy the ONNX file (+ its external-data files) and write its config from the graph's own
    input/output names and shapes. -> (input name, output name)."""
    import onnx

    src = Path(opts.vocoder_onnx)
    if not src.is_file():
        raise InputError(f"vocoder ONNX file {src} does not exist", "vocoder_onnx")
    graph = onnx.load(str(src), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InputError(
            "the vocoder ONNX graph must have one input (mel) and one output (wave)", "vocoder_onnx"
        )
    external = {
        entry.value
        for t in graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for entry in t.external_data
        if entry.key == "location"
    }
    model_dir = root / VOCODER_MODEL_NAME
    if model_dir.exists():
        shutil.rmtree(model_dir)
    (model_dir / "1").mkdir(parents=True)
    shutil.copyfile(src, model_dir / "1" / "model.onnx")
    for name in sorted(external):
        shutil.copyfile(src.parent / name, model_dir / "1" / name)
    optimization = ""
    if opts.vocoder_tensorrt:
        optimization = tensorrt_accelerator(
            inputs[0].name, _onnx_dims(inputs[0]), opts.max_batch, opts.max_frames, opts.vocoder_trt_cache
        )
    config = _template("vocoder_config.pbtxt.tmpl").substitute(
        name=VOCODER_MODEL_NAME,
        input_name=inputs[0].name,
        input_dims=_onnx_dims(inputs[0]),
        output_name=graph.output[0].name,
        output_dims=_onnx_dims(graph.output[0]),
        kind=kind,
        optimization=optimization,
    )
    (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    return inputs[0].name, graph.output[0].name


def vocoder_profile(input_name: str, dims: str, max_batch: int, max_frames: int) -> dict[str, str]:
    """One TensorRT shape profile for the vocoder input (dims as in config.pbtxt, -1 = dynamic:
    the first dynamic dim is the batch, the last the frames): batch 1..max_batch, frames
    2..max_frames, optimised for one 512-frame mel (the engine vocodes one item at a time)."""
    sizes = [int(d) for d in dims.split(",")]
    dyn = [i for i, d in enumerate(sizes) if d < 0]
    if len(dyn) != 2:
        raise InputError(f"vocoder input {input_name} must have a dynamic batch and frame dim, got [{dims}]")
    out = {}
    for kind, batch, frames in (
        ("min", 1, 2),
        ("opt", 1, min(512, max_frames)),
        ("max", max_batch, max_frames),
    ):
        shape = list(sizes)
        shape[dyn[0]], shape[dyn[-1]] = batch, frames
        out[f"trt_profile_{kind}_shapes"] = f"{input_name}:" + "x".join(map(str, shape))
    return out


def tensorrt_accelerator(input_name: str, dims: str, max_batch: int, max_frames: int, cache: str) -> str:
    """ONNX Runtime backend's TensorRT accelerator block: FP16, an explicit shape profile
    (without one TensorRT rebuilds its engine for every new mel length) and on-disk engine and
    timing caches (without them every server start rebuilds, for minutes)."""
    params = {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": cache,
        **vocoder_profile(input_name, dims, max_batch, max_frames),
    }
    lines = [f'  parameters {{ key: "{k}" value: "{_escape(v)}" }}' for k, v in params.items()]
    return (
        "optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
        '  name: "tensorrt"\n' + "\n".join(lines) + "\n} ] } }"
    )


def _onnx_dims(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return ", ".join(str(d.dim_value) if d.HasField("dim_value") else "-1" for d in dims)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _template_text(name: str) -> str:
    return (
        resources.files("indicf5_fast.deploy.triton").joinpath("templates", name).read_text(encoding="utf-8")
    )


def _template(name: str) -> Template:
    return Template(_template_text(name))
