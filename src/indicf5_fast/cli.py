"""`indicf5-fast` command line. Every subcommand that runs the engine takes the flags that
``config.add_config_args`` derives from the EngineConfig fields, and builds its engine with
``config.config_from_args`` -> ``TTS.from_config``.

Errors the user can fix (bad input, missing files, a missing optional package) print one line
and exit 2; nothing prints a traceback unless INDICF5_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from indicf5_fast.config import FLAVOURS, SAMPLE_RATE, add_config_args, config_from_args
from indicf5_fast.errors import IndicF5Error, missing_extra

# Subcommands living in their own layers; each module has add_parser(subparsers) and is
# import-light (heavy imports happen inside its run function).
EXTRA_COMMANDS = (
    "indicf5_fast.frontend.cli",
    "indicf5_fast.bench.cli",
    "indicf5_fast.bench.stress.cli",
    "indicf5_fast.server.cli",
    "indicf5_fast.server.ui_cli",
    "indicf5_fast.export.cli",
    "indicf5_fast.deploy.triton.cli",
)


# ---------------------------------------------------------------------------------- synth
def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="text + reference voice -> 24 kHz WAV")
    add_config_args(p, ("model", "runtime", "frontend", "sampling"), required=("model",))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to speak")
    src.add_argument("--text-file", help="read the text from a UTF-8 file")
    p.add_argument(
        "--ref-audio", required=True, help="reference voice (WAV/FLAC/OGG/MP3/M4A/MP4/WebM, any rate)"
    )
    p.add_argument("--ref-text", required=True, help="transcript of the reference audio")
    p.add_argument("--out", required=True, help="output .wav or .flac")
    p.add_argument("--seed", type=int, default=None, help="noise seed (same seed -> same audio)")
    p.add_argument("--subtype", choices=("PCM_16", "FLOAT"), default="PCM_16", help="output sample format")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from indicf5_fast.engine import TTS
    from indicf5_fast.frontend.audio import write_audio

    text = args.text if args.text is not None else _read_text_file(args.text_file)
    out = _output_path(args.out)  # fail before the (slow) model load
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    tts = TTS.from_config(cfg)
    t_load = time.perf_counter() - t0
    voice = tts.prepare_voice(args.ref_audio, args.ref_text)
    req = tts.make_request(text, voice=voice, seed=args.seed)  # sampling: cfg.sampling
    chunks = tts.plan(req, 0)
    bar = None
    if len(chunks) > 1 and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(chunks), desc="chunks", unit="chunk", file=sys.stderr)
    t1 = time.perf_counter()
    wave = tts.synthesize(
        text, voice=voice, seed=args.seed, progress=(lambda i, n: bar.update(1)) if bar else None
    )
    t_synth = time.perf_counter() - t1
    if bar:
        bar.close()
    try:
        write_audio(out, wave, SAMPLE_RATE, subtype=args.subtype)
    except OSError as e:
        raise IndicF5Error(f"cannot write {out}: {e}") from e
    secs = len(wave) / SAMPLE_RATE
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
    p.add_argument("--flavour", choices=FLAVOURS, default="v0")
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
        extra = missing_extra(e)  # an optional package imported where no require() guards it
        if extra is not None:
            print(f"error: {extra}", file=sys.stderr)
            return 2
        print(
            f"internal error: {type(e).__name__}: {e} (set INDICF5_DEBUG=1 for a traceback)", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
