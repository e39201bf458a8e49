"""`indicf5-fast serve`: load the engine once, then run the HTTP API under uvicorn.

Engine flags (model, backend, batching, remote, sampling) are the EngineConfig's own
(``config.add_config_args``); the flags added here are server-only settings (``ServerSettings``).
Import-light: FastAPI, uvicorn and torch are imported inside ``run_serve``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from indicf5_fast.config import EngineConfig, add_config_args, config_from_args
from indicf5_fast.errors import InputError, require


def add_parser(subparsers) -> None:
    from indicf5_fast.server.settings import API_KEY_ENV, ServerSettings

    d = ServerSettings()
    p = subparsers.add_parser(
        "serve",
        help="HTTP server: OpenAI-style speech API, voices, streaming, dynamic batching, metrics",
        description="Serve the model over HTTP. The API key may also come from the environment "
        f"variable {API_KEY_ENV} (preferred: flags show up in process lists).",
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
    g.add_argument("--log-level", default=d.log_level, choices=("debug", "info", "warning", "error"))
    g.add_argument("--ui", action="store_true", help="web playground at /ui (needs the ui extra)")
    p.set_defaults(func=run_serve)


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

    from indicf5_fast.server.app import create_app

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
    log.info("loading %s (backend %s)", source or "(no model)", config.backend)
    engine = build_engine(config)
    if settings.data_dir:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(engine, settings)
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
