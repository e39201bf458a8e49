"""One configuration dataclass for the engine, shared by the CLI, the server and the bench."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from indicf5_fast.errors import InputError

BACKENDS = ("torch", "onnx", "openvino", "remote")
DTYPES = ("auto", "float32", "bfloat16", "float16")
CHUNKING = ("auto", "upstream", "stream")

# Sampling presets: "quality" = IndicF5's own defaults (same speech as upstream IndicF5);
# "fast" = Empirically Pruned Step Sampling with 7 steps.
PRESETS: dict[str, dict] = {
    "quality": {"nfe_step": 32, "schedule": "uniform"},
    "fast": {"nfe_step": 7, "schedule": "epss"},
}


@dataclass
class SamplingOptions:
    """Per-request sampling knobs (defaults = IndicF5's)."""

    nfe_step: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float | None = -1.0
    schedule: str = "uniform"
    speed: float = 1.0
    cfg_skip_last: int = 0  # CFG truncation: skip the uncond pass for the last k steps

    @classmethod
    def preset(cls, name: str, **overrides) -> SamplingOptions:
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r} (expected one of {sorted(PRESETS)})", "preset")
        return cls(**{**PRESETS[name], **overrides})

    def validate(self) -> SamplingOptions:
        if not isinstance(self.nfe_step, int) or not 1 <= self.nfe_step <= 256:
            raise InputError(f"nfe_step must be an integer in 1..256, got {self.nfe_step!r}", "nfe_step")
        if self.schedule not in ("uniform", "epss"):
            raise InputError(f"schedule must be 'uniform' or 'epss', got {self.schedule!r}", "schedule")
        if not (0.0 <= float(self.cfg_strength) <= 20.0):
            raise InputError(f"cfg_strength must be in [0, 20], got {self.cfg_strength!r}", "cfg_strength")
        if not (0.25 <= float(self.speed) <= 4.0):
            raise InputError(f"speed must be in [0.25, 4.0], got {self.speed!r}", "speed")
        if not (0 <= self.cfg_skip_last <= self.nfe_step):
            raise InputError("cfg_skip_last must be in 0..nfe_step", "cfg_skip_last")
        return self


@dataclass
class EngineConfig:
    """Everything that decides how the engine runs. CLI flags and server options map 1:1."""

    model: str = ""  # IndicF5-layout dir, upstream checkpoint file, or hub id
    backend: str = "torch"
    device: str = "auto"  # cpu | cuda | cuda:N | auto
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    flavour: str | None = None  # v0 | v1; None = from config.json arch block, else v0
    vocab: str | None = None  # vocab.txt for upstream checkpoints
    vocoder: str | None = None  # Vocos dir (config.yaml + pytorch_model.bin) for upstream checkpoints
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    # speed levers
    compile: bool = False
    frame_bucket: int = 64  # pad frame counts to a multiple (compile / shape reuse)
    text_bucket: int = 32
    threads: int | None = None
    # front end
    max_ref_seconds: float = 15.0  # IndicF5 clips references at silences to <= 15 s
    remove_silence: bool = False  # IndicF5 post-processing: long-silence removal + -20 dBFS
    voice_cache_size: int = 64
    # chunk policy when a request sets none: "auto" = "stream" (short first chunk, growing
    # chunks: time to first audio) for streams, "upstream" (IndicF5's split, same audio as
    # upstream) otherwise; "upstream" / "stream" force one policy for both
    chunking: str = "auto"
    # ONNX / OpenVINO backends
    onnx_dir: str | None = None
    providers: list[str] | None = None
    # batching (server / batch API)
    max_batch_size: int = 8
    batch_wait_ms: float = 10.0
    # remote backend (HTTP server in front of Triton)
    triton_url: str | None = None

    def validate(self) -> EngineConfig:
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {self.backend!r}", "backend")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {DTYPES}, got {self.dtype!r}", "dtype")
        if self.flavour not in (None, "v0", "v1"):
            raise InputError(f"flavour must be v0 or v1, got {self.flavour!r}", "flavour")
        if self.chunking not in CHUNKING:
            raise InputError(f"chunking must be one of {CHUNKING}, got {self.chunking!r}", "chunking")
        if self.frame_bucket < 1 or self.text_bucket < 1:
            raise InputError("bucket sizes must be >= 1", "frame_bucket")
        self.sampling.validate()
        return self

    def replace(self, **changes) -> EngineConfig:
        sampling_keys = {f.name for f in fields(SamplingOptions)}
        samp = {k: changes.pop(k) for k in list(changes) if k in sampling_keys}
        cfg = dataclasses.replace(self, **changes)
        if samp:
            cfg.sampling = dataclasses.replace(cfg.sampling, **samp)
        return cfg

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)} | {f.name for f in fields(SamplingOptions)}
