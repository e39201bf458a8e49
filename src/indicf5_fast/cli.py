"""`indicf5-fast` command line. Every subcommand builds the same EngineConfig.

Errors the user can fix (bad input, missing files) print one line and exit 2; nothing prints a
traceback unless INDICF5_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from indicf5_fast.config import BACKENDS, DTYPES, PRESETS, EngineConfig, SamplingOptions
from indicf5_fast.errors import IndicF5Error

# Subcommands living in their own layers; each module has add_parser(subparsers) and is
# import-light (heavy imports happen inside its run function).
EXTRA_COMMANDS = (
    "indicf5_fast.bench.cli",
    "indicf5_fast.bench.stress.cli",
    "indicf5_fast.server.cli",
    "indicf5_fast.server.ui_cli",
    "indicf5_fast.export.cli",
    "indicf5_fast.deploy.triton.cli",
)


def add_engine_args(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    g = p.add_argument_group("engine")
    g.add_argument(
        "--model",
        required=model_required,
        help="IndicF5-layout directory, upstream checkpoint file, or hub id (e.g. ai4bharat/IndicF5)",
    )
    g.add_argument("--backend", default="torch", choices=BACKENDS)
    g.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto = bf16 on CUDA and on CPUs with AVX512-BF16/AMX, else float32",
    )
    g.add_argument(
        "--flavour",
        choices=("v0", "v1"),
        default=None,
        help="DiT flavour (IndicF5 = v0; default: config.json arch block, else v0)",
    )
    g.add_argument("--vocab", default=None, help="vocab.txt (for upstream checkpoint files)")
    g.add_argument(
        "--vocoder", default=None, help="Vocos directory (for checkpoints without vocoder weights)"
    )
    g.add_argument(
        "--compile", action="store_true", help="torch.compile the DiT step (warm-up compiles buckets)"
    )
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    g.add_argument("--onnx-dir", default=None, help="exported ONNX graphs (backend onnx/openvino)")
    g.add_argument("--providers", default=None, help="ONNX Runtime providers, comma-separated")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="quality = 32 uniform steps (IndicF5); fast = EPSS 7 steps",
    )
    g.add_argument("--nfe", type=int, default=None, help="number of sampler steps (default 32)")
    g.add_argument("--schedule", choices=("uniform", "epss"), default=None)
    g.add_argument("--cfg", type=float, default=None, help="classifier-free guidance strength (default 2.0)")
    g.add_argument("--sway", type=float, default=None, help="sway sampling coefficient (default -1.0)")
    g.add_argument("--speed", type=float, default=None, help="speaking rate (default 1.0)")
    g.add_argument(
        "--cfg-skip-last", type=int, default=None, help="skip the uncond pass for the last k steps"
    )


def sampling_from_args(args: argparse.Namespace) -> SamplingOptions:
    base = SamplingOptions.preset(args.preset) if getattr(args, "preset", None) else SamplingOptions()
    pairs = {
        "nfe_step": "nfe",
        "schedule": "schedule",
        "cfg_strength": "cfg",
        "sway_sampling_coef": "sway",
        "speed": "speed",
        "cfg_skip_last": "cfg_skip_last",
    }
    for field_name, arg in pairs.items():
        value = getattr(args, arg, None)
        if value is not None:
            setattr(base, field_name, value)
    return base.validate()


def config_from_args(args: argparse.Namespace, **extra) -> EngineConfig:
    providers = args.providers.split(",") if getattr(args, "providers", None) else None
    cfg = EngineConfig(
        model=args.model or "",
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        flavour=args.flavour,
        vocab=args.vocab,
        vocoder=args.vocoder,
        compile=args.compile,
        threads=args.threads,
        onnx_dir=args.onnx_dir,
        providers=providers,
        sampling=sampling_from_args(args),
        **extra,
    )
    return cfg.validate()


# ---------------------------------------------------------------------------------- synth
def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="text + reference voice -> 24 kHz WAV")
    add_engine_args(p)
    add_sampling_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to speak")
    src.add_argument("--text-file", help="read the text from a UTF-8 file")
    p.add_argument("--ref-audio", required=True, help="reference voice (WAV/FLAC/OGG, any rate)")
    p.add_argument("--ref-text", required=True, help="transcript of the reference audio")
    p.add_argument("--out", required=True, help="output .wav or .flac")
    p.add_argument("--seed", type=int, default=None, help="noise seed (same seed -> same audio)")
    p.add_argument("--subtype", choices=("PCM_16", "FLOAT"), default="PCM_16", help="output sample format")
    p.add_argument(
        "--remove-silence",
        action="store_true",
        help="IndicF5 post-processing: drop silences >= 1 s, normalise to -20 dBFS",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from indicf5_fast.engine import TTS
    from indicf5_fast.frontend.audio import write_audio

    text = args.text if args.text is not None else _read_text_file(args.text_file)
    out = _output_path(args.out)  # fail before the (slow) model load
    cfg = config_from_args(args, remove_silence=args.remove_silence)
    t0 = time.perf_counter()
    tts = TTS.load(cfg.model, **{k: v for k, v in cfg.__dict__.items() if k != "model"})
    t_load = time.perf_counter() - t0
    voice = tts.prepare_voice(args.ref_audio, args.ref_text)
    req = tts.make_request(text, voice=voice, seed=args.seed, **cfg.sampling.__dict__)
    chunks = tts.plan(req, 0)
    bar = None
    if len(chunks) > 1 and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(chunks), desc="chunks", unit="chunk", file=sys.stderr)
    t1 = time.perf_counter()
    wave = tts.synthesize(
        text,
        voice=voice,
        seed=args.seed,
        progress=(lambda i, n: bar.update(1)) if bar else None,
        **{k: v for k, v in cfg.sampling.__dict__.items()},
    )
    t_synth = time.perf_counter() - t1
    if bar:
        bar.close()
    try:
        write_audio(out, wave, 24_000, subtype=args.subtype)
    except OSError as e:
        raise IndicF5Error(f"cannot write {out}: {e}") from e
    secs = len(wave) / 24_000
    print(
        f"wrote {out} ({secs:.2f} s audio, {len(chunks)} chunk(s)); load {t_load:.1f} s, "
        f"synthesis {t_synth:.2f} s, RTF {t_synth / max(secs, 1e-9):.3f} [{tts.backend.describe()}]"
    )
    return 0


def _output_path(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() not in (".wav", ".flac"):
        raise IndicF5Error(f"--out must end in .wav or .flac, got {out.name!r}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise IndicF5Error(f"cannot create the output directory {out.parent}: {e}") from e
    return out


def _read_text_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise IndicF5Error(f"cannot read text file {path}: {e}") from e


# ---------------------------------------------------------------------------------- init-random
def _add_init_random(sub) -> None:
    p = sub.add_parser("init-random", help="write a random-weight checkpoint in the exact IndicF5 layout")
    p.add_argument("out", help="output directory")
    p.add_argument("--arch", choices=("tiny", "base"), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flavour", choices=("v0", "v1"), default="v0")
    p.set_defaults(func=_run_init_random)


def _run_init_random(args: argparse.Namespace) -> int:
    from indicf5_fast.model.random_checkpoint import write_random_checkpoint

    out = write_random_checkpoint(args.out, arch=args.arch, seed=args.seed, flavour=args.flavour)
    print(f"wrote random {args.arch} checkpoint to {out} (demo voice: {out / 'prompts' / 'demo.wav'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indicf5-fast", description="Fast IndicF5 speech synthesis")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    _add_synth(sub)
    _add_init_random(sub)
    for name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name or name.startswith(str(e.name)):
                continue  # that layer is not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from indicf5_fast import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except IndicF5Error as e:
        if os.environ.get("INDICF5_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, with a hint how to see the traceback
        if os.environ.get("INDICF5_DEBUG"):
            raise
        print(
            f"internal error: {type(e).__name__}: {e} (set INDICF5_DEBUG=1 for a traceback)", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
