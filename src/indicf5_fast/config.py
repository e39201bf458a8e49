"""Engine configuration: the one place that lists every engine field, with its CLI flag, its
environment variable, its bounds, and the constants of the audio format.

Every field of ``EngineConfig`` and ``SamplingOptions`` has exactly one spelling: the keyword
argument (``indicf5_fast.load(model, nfe_step=7)``), the CLI flag (``--nfe-step``: underscores
become dashes) and the environment variable (``INDICF5_NFE_STEP``, read by the command line
only, for containers). On the command line a flag beats the environment, which beats the
command's own default, which beats the default below. ``--preset`` / ``INDICF5_PRESET`` sets the
sampling base that explicit sampling fields then override. Documented aliases (``ALIASES``):
``--nfe`` = ``--nfe-step``, ``--cfg`` = ``--cfg-strength``, ``--sway`` = ``--sway-sampling-coef``,
``--lang`` = ``--language``.

EngineConfig (how the engine runs):
  model              IndicF5-layout dir, upstream checkpoint file, or hub id
  revision           hub revision (branch, tag or commit) of a hub id; None = the default branch
  backend            torch | onnx | openvino | remote (remote = HTTP server in front of Triton)
  device             cpu | cuda | cuda:N | auto
  dtype              auto | float32 | bfloat16 | float16
  flavour            v0 | v1 DiT flavour; None = config.json's arch block, else v0 (IndicF5)
  vocab, vocoder     vocab.txt / Vocos dir, for upstream checkpoint files
  compile            torch.compile the DiT step (torch backend)
  frame_bucket       pad frame counts to a multiple when compiled (graph reuse)
  threads            CPU threads (torch.set_num_threads, process-wide: see backends/base.py)
  onnx_dir           exported ONNX graphs (backend onnx / openvino); None = export once, reuse
  providers          ONNX Runtime providers, best first (cpu, cuda, tensorrt, ...)
  max_ref_seconds    clip references at silences to at most this long (IndicF5: 15 s)
  remove_silence     IndicF5 post-processing of the output: long silences removed, -20 dBFS
  voice_cache_size   prepared reference voices kept in memory
  normalize          numbers, amounts, dates, times -> words before tokenizing (requests only)
  language           ISO 639-1 code of the texts (hi/mr, bn/as ...); None = inferred from the script
  chunking           auto | stream | upstream: text chunk policy (auto = stream when streaming, else upstream)
  max_batch_size     requests sampled together (server, Triton, synthesize_batch)
  batch_wait_ms      how long the server waits to fill a batch
  triton_url         backend remote: the Triton server (grpc://host:8001 or http://host:8000)
  triton_protocol    backend remote: indicf5 (our Triton models) | upstream (F5-TTS's TensorRT-LLM f5_tts)
  sampling           SamplingOptions: the defaults of every request
SamplingOptions (per request; defaults = IndicF5's):
  nfe_step           sampler steps (1..256)
  cfg_strength       classifier-free guidance strength (0..20)
  sway_sampling_coef sway coefficient; None or 0.0 = no sway (the same time grid)
  schedule           uniform | epss (Empirically Pruned Step Sampling)
  speed              speaking rate (0.25..4)
  cfg_skip_last      skip the unconditional pass for the last k steps (0..nfe_step)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from indicf5_fast.errors import InputError

# ---------------------------------------------------------------------------- constants
SAMPLE_RATE = 24_000  # Hz, every wave in and out of the model
HOP_LENGTH = 256  # samples per mel frame
N_MELS = 100  # mel channels
TARGET_RMS = 0.1  # quieter references are raised to this RMS (output scaled back)
CROSS_FADE_SECONDS = 0.15  # linear cross-fade between text chunks

BACKENDS = ("torch", "onnx", "openvino", "remote")
DTYPES = ("auto", "float32", "bfloat16", "float16")
FLAVOURS = ("v0", "v1")
SCHEDULES = ("uniform", "epss")
ENV_PREFIX = "INDICF5_"
# remote backend: our Triton models ("indicf5"), or upstream F5-TTS's TensorRT-LLM "f5_tts" model
TRITON_PROTOCOLS = ("indicf5", "upstream")
CHUNKING = ("auto", "upstream", "stream")

# Sampling presets: "quality" = IndicF5's own defaults (same speech as upstream IndicF5);
# "fast" = Empirically Pruned Step Sampling with 7 steps.
PRESETS: dict[str, dict] = {
    "quality": {"nfe_step": 32, "schedule": "uniform"},
    "fast": {"nfe_step": 7, "schedule": "epss"},
}

# Extra CLI spellings, kept for existing scripts (documented in the module docstring).
ALIASES: dict[str, tuple[str, ...]] = {
    "nfe_step": ("--nfe",),
    "cfg_strength": ("--cfg",),
    "sway_sampling_coef": ("--sway",),
    "language": ("--lang",),
}


# ---------------------------------------------------------------------------- bounds
@dataclass(frozen=True)
class Bounds:
    """Closed range of an option; the config, the HTTP protocol and the Triton client share it."""

    lo: float
    hi: float
    integer: bool = False

    def check(self, name: str, value: Any) -> None:
        kind = "an integer" if self.integer else "a number"
        ok = isinstance(value, numbers.Integral if self.integer else numbers.Real)
        if isinstance(value, bool) or not ok or not (self.lo <= value <= self.hi):
            raise InputError(f"{name} must be {kind} in [{_num(self.lo)}, {_num(self.hi)}], got {value!r}", name)


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


BOUNDS: dict[str, Bounds] = {
    "nfe_step": Bounds(1, 256, integer=True),
    "cfg_strength": Bounds(0.0, 20.0),
    "speed": Bounds(0.25, 4.0),
    "cfg_skip_last": Bounds(0, 256, integer=True),  # and <= nfe_step
    "seed": Bounds(0, 2**63 - 1, integer=True),  # torch.manual_seed's range
    "frame_bucket": Bounds(1, 4096, integer=True),
    "threads": Bounds(1, 4096, integer=True),
    "max_ref_seconds": Bounds(0.5, 3600.0),
    "voice_cache_size": Bounds(0, 1 << 20, integer=True),
    "max_batch_size": Bounds(1, 256, integer=True),
    "batch_wait_ms": Bounds(0.0, 10_000.0),
}


def check_seed(seed: Any) -> None:
    """None (random) or an integer in BOUNDS["seed"]."""
    if seed is not None:
        BOUNDS["seed"].check("seed", seed)


def _opt(help: str, group: str, choices: Iterable[str] | None = None) -> dict:
    """Field metadata: the CLI help text, the flag group and the allowed values."""
    return {"help": help, "group": group, "choices": tuple(choices) if choices else None}


# ---------------------------------------------------------------------------- dataclasses
@dataclass
class SamplingOptions:
    """Per-request sampling knobs (defaults = IndicF5's)."""

    nfe_step: int = field(default=32, metadata=_opt("sampler steps", "sampling"))
    cfg_strength: float = field(default=2.0, metadata=_opt("classifier-free guidance strength", "sampling"))
    sway_sampling_coef: float | None = field(
        default=-1.0, metadata=_opt("sway sampling coefficient (0 = none)", "sampling")
    )
    schedule: str = field(default="uniform", metadata=_opt("time grid", "sampling", SCHEDULES))
    speed: float = field(default=1.0, metadata=_opt("speaking rate", "sampling"))
    cfg_skip_last: int = field(
        default=0, metadata=_opt("skip the uncond pass for the last k steps (CFG truncation)", "sampling")
    )

    @classmethod
    def preset(cls, name: str, **overrides) -> SamplingOptions:
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r} (expected one of {sorted(PRESETS)})", "preset")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes) -> SamplingOptions:
        """A copy with ``changes``; None values mean "keep" (the engine default)."""
        unknown = set(changes) - sampling_field_names()
        if unknown:
            raise InputError(f"unknown sampling option(s) {sorted(unknown)}", sorted(unknown)[0])
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def key(self) -> tuple:
        """Hashable identity: requests with equal keys can share one sampled batch."""
        return dataclasses.astuple(self)

    def validate(self) -> SamplingOptions:
        for name in ("nfe_step", "cfg_strength", "speed", "cfg_skip_last"):
            BOUNDS[name].check(name, getattr(self, name))
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be 'uniform' or 'epss', got {self.schedule!r}", "schedule")
        sway = self.sway_sampling_coef
        if sway is not None and (isinstance(sway, bool) or not isinstance(sway, numbers.Real)):
            raise InputError(f"sway_sampling_coef must be a number, got {sway!r}", "sway_sampling_coef")
        if self.cfg_skip_last > self.nfe_step:
            raise InputError("cfg_skip_last must be in 0..nfe_step", "cfg_skip_last")
        return self


@dataclass
class EngineConfig:
    """Everything that decides how the engine runs. Each field maps 1:1 to a keyword of
    ``indicf5_fast.load``, a CLI flag and an environment variable (module docstring)."""

    model: str = field(
        default="",
        metadata=_opt("IndicF5-layout directory, upstream checkpoint file, or hub id (ai4bharat/IndicF5)", "model"),
    )
    revision: str | None = field(default=None, metadata=_opt("hub revision (branch, tag or commit)", "model"))
    backend: str = field(default="torch", metadata=_opt("inference backend", "runtime", BACKENDS))
    device: str = field(default="auto", metadata=_opt("cpu | cuda | cuda:N | auto", "runtime"))
    dtype: str = field(
        default="auto",
        metadata=_opt("auto = bf16 on CUDA and on CPUs with AVX512-BF16/AMX, else float32", "runtime", DTYPES),
    )
    flavour: str | None = field(
        default=None,
        metadata=_opt("DiT flavour (IndicF5 = v0; default: config.json arch block, else v0)", "model", FLAVOURS),
    )
    vocab: str | None = field(default=None, metadata=_opt("vocab.txt (for upstream checkpoint files)", "model"))
    vocoder: str | None = field(
        default=None, metadata=_opt("Vocos directory (for checkpoints without vocoder weights)", "model")
    )
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    # speed levers
    compile: bool = field(
        default=False, metadata=_opt("torch.compile the DiT step (warm-up compiles buckets)", "runtime")
    )
    frame_bucket: int = field(
        default=64, metadata=_opt("pad frame counts to a multiple when compiled (graph reuse)", "runtime")
    )
    threads: int | None = field(default=None, metadata=_opt("CPU threads (default: all cores)", "runtime"))
    # text front end (requests; sample_mel stays raw)
    normalize: bool = field(
        default=True,
        metadata=_opt("numbers, amounts, dates, times -> words before tokenizing (normalize_text)", "frontend"),
    )
    language: str | None = field(
        default=None,
        metadata=_opt("ISO 639-1 code of the texts (tells hi from mr, bn from as); default: from the script", "frontend"),
    )
    # chunk policy when a request sets none: "auto" = "stream" (short first chunk, growing
    # chunks: time to first audio) for streams, "upstream" (IndicF5's split, same audio as
    # upstream) otherwise; "upstream" / "stream" force one policy for both
    chunking: str = field(
        default="auto",
        metadata=_opt(
            "text chunk policy: auto = stream for streaming, upstream otherwise; stream = short first "
            "chunk then growing chunks (time to first audio); upstream = IndicF5's own split",
            "frontend",
            CHUNKING,
        ),
    )
    # ONNX / OpenVINO backends
    onnx_dir: str | None = field(
        default=None, metadata=_opt("exported ONNX graphs (backend onnx/openvino)", "runtime")
    )
    providers: list[str] | None = field(
        default=None, metadata=_opt("ONNX Runtime providers, comma-separated (cpu, cuda, tensorrt)", "runtime")
    )
    # front end
    max_ref_seconds: float = field(
        default=15.0, metadata=_opt("clip the reference at silences to at most this long", "frontend")
    )
    remove_silence: bool = field(
        default=False,
        metadata=_opt("IndicF5 post-processing: drop silences >= 1 s, normalise to -20 dBFS", "frontend"),
    )
    voice_cache_size: int = field(default=64, metadata=_opt("prepared voices kept in memory", "frontend"))
    # batching (server / Triton / batch API)
    max_batch_size: int = field(default=8, metadata=_opt("requests sampled together in one batch", "batching"))
    batch_wait_ms: float = field(default=10.0, metadata=_opt("how long a batch waits to fill (server)", "batching"))
    # remote backend (HTTP server in front of Triton)
    triton_url: str | None = field(
        default=None, metadata=_opt("backend remote: the Triton server (grpc://host:8001)", "remote")
    )
    triton_protocol: str = field(
        default="indicf5",
        metadata=_opt(
            "backend remote: our Triton models, or upstream F5-TTS's TensorRT-LLM 'f5_tts' model "
            "(no seed/nfe_step/preset/speed; docs/tensorrt-llm.md)",
            "remote",
            TRITON_PROTOCOLS,
        ),
    )

    def validate(self) -> EngineConfig:
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {self.backend!r}", "backend")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {DTYPES}, got {self.dtype!r}", "dtype")
        if self.flavour not in (None, *FLAVOURS):
            raise InputError(f"flavour must be v0 or v1, got {self.flavour!r}", "flavour")
        if self.language is not None:  # a bad code fails here, before the (slow) model load
            from indicf5_fast.frontend.normalize import check_language

            self.language = check_language(self.language)
        if self.triton_protocol not in TRITON_PROTOCOLS:
            raise InputError(
                f"triton_protocol must be one of {TRITON_PROTOCOLS}, got {self.triton_protocol!r}",
                "triton_protocol",
            )
        for name in ("frame_bucket", "max_ref_seconds", "voice_cache_size", "max_batch_size", "batch_wait_ms"):
            BOUNDS[name].check(name, getattr(self, name))
        if self.threads is not None:
            BOUNDS["threads"].check("threads", self.threads)
        if self.chunking not in CHUNKING:
            raise InputError(f"chunking must be one of {CHUNKING}, got {self.chunking!r}", "chunking")
        self.sampling.validate()
        return self

    def replace(self, **changes) -> EngineConfig:
        """A copy with ``changes``: engine fields and sampling fields by name (as ``load`` takes)."""
        unknown = set(changes) - self.field_names()
        if unknown:
            raise InputError(f"unknown engine option(s) {sorted(unknown)}", sorted(unknown)[0])
        samp = {k: changes.pop(k) for k in list(changes) if k in sampling_field_names()}
        cfg = dataclasses.replace(self, **changes)
        if samp:
            cfg.sampling = dataclasses.replace(cfg.sampling, **samp)
        return cfg

    @classmethod
    def field_names(cls) -> set[str]:
        return engine_field_names() | sampling_field_names()


def request_options(base: SamplingOptions, preset: str | None, options: Mapping[str, Any]) -> SamplingOptions:
    """One request's sampling options: the named preset, else ``base`` (the engine's defaults),
    then every option given and not None. Unknown names are an InputError. Used by every engine
    (in-process and remote) so their defaults cannot drift."""
    start = SamplingOptions.preset(preset) if preset else base
    return start.replace(**options).validate()


def engine_field_names() -> set[str]:
    return {f.name for f in fields(EngineConfig)}


def sampling_field_names() -> set[str]:
    return {f.name for f in fields(SamplingOptions)}


# ---------------------------------------------------------------------------- CLI and environment
GROUPS = ("model", "runtime", "frontend", "batching", "remote", "sampling")
_GROUP_TITLES = {
    "model": "model",
    "runtime": "engine",
    "frontend": "front end",
    "batching": "batching",
    "remote": "remote backend",
    "sampling": "sampling",
}


def flag(name: str) -> str:
    """Field name -> its CLI flag (``nfe_step`` -> ``--nfe-step``)."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """Field name -> its environment variable (``nfe_step`` -> ``INDICF5_NFE_STEP``)."""
    return ENV_PREFIX + name.upper()


def _config_fields() -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of every CLI-settable field, engine then sampling."""
    out = []
    for cls in (EngineConfig, SamplingOptions):
        hints = typing.get_type_hints(cls)
        out += [(f, hints[f.name]) for f in fields(cls) if f.name != "sampling"]
    return out


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int; ``list[str] | None`` -> list."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) or tp


def _parse(name: str, tp: Any, text: str, source: str) -> Any:
    """A flag or environment string -> the field's value (InputError naming the source)."""
    base, text = _base_type(tp), text.strip()
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType)
    if optional and text.lower() in ("", "none"):
        return None
    try:
        if base is bool:
            low = text.lower()
            if low not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(text)
            return low in ("1", "true", "yes", "on")
        if base is int:
            return int(text)
        if base is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        if base is list:
            return [p.strip() for p in text.split(",") if p.strip()]
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a finite number"}[base]
        raise InputError(f"{source}: expected {kind}, got {text!r}", name) from None
    return text


def add_config_args(
    parser: argparse.ArgumentParser,
    groups: Iterable[str] = GROUPS,
    *,
    only: Iterable[str] | None = None,
    required: Iterable[str] = (),
    presets: bool = True,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add the flags of the config fields in ``groups`` (or exactly the fields in ``only``). Flags
    default to None (= not given), so ``config_from_args`` can tell them from the environment.
    ``aliases``: extra spellings a command keeps for its own old flags (besides ``ALIASES``);
    ``defaults``: the command's own defaults (shown in the help; pass them to config_from_args).
    The parser remembers which fields it exposes: only those are read from flags and environment."""
    wanted = set(only) if only is not None else None
    required = set(required)
    exposed = set(parser.get_default(_EXPOSED) or ())
    by_group: dict[str, argparse._ArgumentGroup] = {}
    for f, tp in _config_fields():
        group = f.metadata.get("group", "runtime")
        if (wanted is not None and f.name not in wanted) or (wanted is None and group not in groups):
            continue
        exposed.add(f.name)
        if group not in by_group:
            by_group[group] = parser.add_argument_group(_GROUP_TITLES[group])
            if group == "sampling" and presets:
                by_group[group].add_argument(
                    "--preset",
                    choices=sorted(PRESETS),
                    default=None,
                    help=f"quality = 32 uniform steps (IndicF5); fast = EPSS 7 steps [env {env_name('preset')}]",
                )
        default = (defaults or {}).get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        shown = "" if f.name == "model" or default is None else f" (default {default})"
        help_text = f"{f.metadata.get('help', '')}{shown} [env {env_name(f.name)}]"
        names = (flag(f.name), *ALIASES.get(f.name, ()), *(aliases or {}).get(f.name, ()))
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if f.name in required:
            kwargs["required"] = True
        if _base_type(tp) is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _cli_type(f.name, tp)
            kwargs["choices"] = f.metadata.get("choices")
        by_group[group].add_argument(*names, **kwargs)
    if presets and "sampling" in by_group:
        exposed.add("preset")
    parser.set_defaults(**{_EXPOSED: frozenset(exposed)})


_EXPOSED = "_config_fields"  # namespace attribute: the config fields a command's parser exposes


def _cli_type(name: str, tp: Any):
    def convert(text: str) -> Any:
        try:
            return _parse(name, tp, text, flag(name))
        except InputError as e:  # argparse turns ArgumentTypeError into its usage error
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = _base_type(tp).__name__
    return convert


def config_from_args(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> EngineConfig:
    """Parsed flags (+ the environment, + command defaults) -> a validated EngineConfig.

    Precedence per field: ``overrides`` (set by the command itself) > flag > ``INDICF5_<FIELD>``
    > ``defaults`` (the command's own defaults) > the dataclass default. Only the fields the
    command's parser exposes (``add_config_args``) are read from flags and environment. ``env``
    defaults to ``os.environ``; pass ``{}`` to ignore the environment.
    """
    env = os.environ if env is None else env
    exposed = getattr(args, _EXPOSED, frozenset())
    values: dict[str, Any] = dict(defaults or {})
    for f, tp in _config_fields():
        if f.name not in exposed:
            continue
        raw = env.get(env_name(f.name))
        if raw is not None and raw.strip() != "":
            values[f.name] = _parse(f.name, tp, raw, env_name(f.name))
            choices = f.metadata.get("choices")
            if choices and values[f.name] not in choices:
                raise InputError(
                    f"bad environment variable: {env_name(f.name)}={raw!r}, expected one of {', '.join(choices)}",
                    f.name,
                )
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    values.update(overrides)
    preset = None
    if "preset" in exposed:
        preset = getattr(args, "preset", None) or env.get(env_name("preset")) or None
    sampling = SamplingOptions.preset(preset) if preset else SamplingOptions()
    samp = {k: values.pop(k) for k in list(values) if k in sampling_field_names()}
    sampling = dataclasses.replace(sampling, **samp)
    unknown = set(values) - engine_field_names()
    if unknown:
        raise InputError(f"unknown engine option(s) {sorted(unknown)}", sorted(unknown)[0])
    return EngineConfig(**values, sampling=sampling).validate()
