"""`indicf5-fast serve`: load the engine once, then run the HTTP API under uvicorn.

Engine flags (model, backend, batching, remote, sampling) are the EngineConfig's own
(``config.add_config_args``, each also read from ``INDICF5_<FIELD>``); the flags added here are
server-only settings (``ServerSettings``), which read the environment too (``--max-queue`` <-
``INDICF5_MAX_QUEUE``, ``--ui`` <- ``INDICF5_UI=1``): how the container images are configured. A flag
given on the command line wins. Import-light: FastAPI, uvicorn and torch are imported inside ``run_serve``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from indicf5_fast.config import EngineConfig, add_config_args, config_from_args
from indicf5_fast.errors import InputError, require

ENV_PREFIX = "INDICF5_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def add_parser(subparsers) -> None:
    from indicf5_fast.server.settings import API_KEY_ENV, ServerSettings

    d = ServerSettings()
    p = subparsers.add_parser(
        "serve",
        help="HTTP server: OpenAI-style speech API, voices, streaming, dynamic batching, metrics",
        description="Serve the model over HTTP. Every option may also come from the environment: "
        f"--max-queue from {ENV_PREFIX}MAX_QUEUE, --ui from {ENV_PREFIX}UI=1, the API key from "
        f"{API_KEY_ENV} (preferred for the key: flags show up in process lists). Flags win.",
    )
    add_config_args(p)  # every engine field; --model is required unless --backend remote
    g = p.add_argument_group("server")
    g.add_argument("--host", default=d.host, help="bind address (default loopback)")
    g.add_argument("--port", type=int, default=d.port)
    g.add_argument("--api-key", default=None, help=f"require this key (default: ${API_KEY_ENV}, if set)")
    g.add_argument(
        "--data-dir", default=None, help="where uploaded voices persist (default ~/.local/share/indicf5-fast)"
    )
    g.add_argument(
        "--prompts-dir",
        default=None,
        help="built-in voices <name>.wav + <name>.txt (default: the checkpoint's prompts/)",
    )
    g.add_argument("--default-voice", default=d.default_voice)
    g.add_argument("--max-queue", type=int, default=d.max_queue, help="admitted requests before 503")
    g.add_argument("--request-timeout", type=float, default=d.request_timeout_s, help="seconds before 504")
    g.add_argument("--max-input-chars", type=int, default=d.max_input_chars)
    g.add_argument("--max-ref-bytes", type=int, default=d.max_ref_bytes)
    g.add_argument(
        "--max-upload-seconds",
        type=float,
        default=d.max_upload_seconds,
        help="longest uploaded reference accepted (the engine then clips to --max-ref-seconds)",
    )
    g.add_argument("--max-voices", type=int, default=d.max_voices)
    g.add_argument("--shutdown-timeout", type=float, default=d.shutdown_timeout_s)
    g.add_argument("--no-warmup", action="store_true", help="skip the warm-up synthesis")
    g.add_argument(
        "--no-memory-bound",
        action="store_true",
        help="leave oneDNN's primitive caches (1024 shapes), glibc's malloc arenas and trimming at "
        "their defaults: RSS then grows with the variety of request lengths (docs/reliability.md)",
    )
    g.add_argument("--log-level", default=d.log_level, choices=("debug", "info", "warning", "error"))
    g.add_argument("--ui", action="store_true", help="web playground at /ui (needs the ui extra)")
    p.set_defaults(func=run_serve)
    apply_env_defaults(p, os.environ)


def env_name(option: str) -> str:
    """``--max-queue`` -> ``INDICF5_MAX_QUEUE``."""
    return ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


def apply_env_defaults(parser: argparse.ArgumentParser, environ) -> None:
    """Each server-only long option takes its default from ``INDICF5_<OPTION>`` when that is set and
    not empty (engine options read theirs in ``config.config_from_args``).

    A value that does not convert is not raised here (the parser is built for every subcommand):
    it is kept as ``args.env_error`` and ``run_serve`` reports it as one ``error:`` line.
    """
    errors = []
    engine_fields = EngineConfig.field_names() | {"preset"}  # config_from_args reads their variables
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or isinstance(action, argparse._HelpAction) or action.dest in engine_fields:
            continue
        name = env_name(longs[0])
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        try:
            action.default = _env_value(action, raw)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            errors.append(f"{name}={raw!r}: {e}")
            continue
        action.required = False
    if errors:
        parser.set_defaults(env_error="; ".join(errors))


def _env_value(action: argparse.Action, raw: str):
    if action.nargs == 0 and isinstance(action.const, bool):  # store_true / store_false
        word = raw.lower()
        if word not in _TRUE | _FALSE:
            raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")
        return action.const if word in _TRUE else not action.const
    value = action.type(raw) if callable(action.type) else raw
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"expected one of {list(action.choices)}")
    return value


def build_engine(config: EngineConfig):
    """The engine the server talks to: in-process TTS, or a Triton proxy for backend 'remote'."""
    if config.backend == "remote":
        if not config.triton_url:
            raise InputError("--backend remote needs --triton-url", "triton_url")
        require("tritonclient", "triton", "backend remote")
        from indicf5_fast.deploy.triton.remote import RemoteTTS

        return RemoteTTS.from_config(config)
    if not config.model:
        raise InputError("--model is required (a checkpoint directory or hub id)", "model")
    from indicf5_fast.engine import TTS

    return TTS.from_config(config)


def settings_from_args(args: argparse.Namespace, config):
    from indicf5_fast.server.settings import API_KEY_ENV, ServerSettings, default_data_dir

    prompts = args.prompts_dir
    if prompts is None and config.model and config.backend != "remote":
        from indicf5_fast.model.checkpoint import resolve_model

        root = resolve_model(config.model, config.revision)
        candidate = (root if root.is_dir() else root.parent) / "prompts"
        prompts = str(candidate) if candidate.is_dir() else None
    return ServerSettings(
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        data_dir=args.data_dir or default_data_dir(),
        prompts_dir=prompts,
        default_voice=args.default_voice,
        max_input_chars=args.max_input_chars,
        max_ref_bytes=args.max_ref_bytes,
        max_upload_seconds=args.max_upload_seconds,
        max_voices=args.max_voices,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        warmup=not args.no_warmup,
        shutdown_timeout_s=args.shutdown_timeout,
        log_level=args.log_level,
        ui=bool(getattr(args, "ui", False)),
    ).validate()


def run_serve(args: argparse.Namespace) -> int:
    for module in ("fastapi", "uvicorn", "prometheus_client"):
        require(module, "server", "indicf5-fast serve")  # before the (slow) model load
    import uvicorn

    from indicf5_fast.backends.native_memory import bound_native_memory
    from indicf5_fast.server.app import create_app

    if getattr(args, "env_error", None):
        raise InputError(f"bad environment variable: {args.env_error}", "environment")
    config = config_from_args(args)
    settings = settings_from_args(args, config)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("indicf5_fast.server")
    if config.backend == "remote" and not config.triton_url:
        raise InputError("--backend remote needs --triton-url", "triton_url")
    if config.backend != "remote" and not config.model:
        raise InputError("--model is required (a checkpoint directory or hub id)", "model")
    source = config.triton_url if config.backend == "remote" else config.model
    # process-wide, so here and only here: before the model loads (the caches read their
    # capacity at the first CPU kernel) and before the worker and intra-op threads start
    memory = None if args.no_memory_bound else bound_native_memory()
    log.info("native memory: %s", memory.describe() if memory else "unbounded (--no-memory-bound)")
    log.info("loading %s (backend %s)", source or "(no model)", config.backend)
    engine = build_engine(config)
    if settings.data_dir:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(engine, settings, after_job=memory.release if memory and memory.trim else None)
    if settings.ui:
        log.info("web playground at http://%s:%d/ui/", settings.host, settings.port)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    return 0
