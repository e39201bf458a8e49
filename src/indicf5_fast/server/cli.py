"""`indicf5-fast serve`: load the engine once, then run the HTTP API under uvicorn.

Import-light: FastAPI, uvicorn and torch are imported inside ``run_serve``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from indicf5_fast.errors import BackendUnavailableError, InputError


def add_parser(subparsers) -> None:
    from indicf5_fast.cli import add_engine_args, add_sampling_args
    from indicf5_fast.server.settings import API_KEY_ENV, ServerSettings

    d = ServerSettings()
    p = subparsers.add_parser(
        "serve",
        help="HTTP server: OpenAI-style speech API, voices, streaming, dynamic batching, metrics",
        description="Serve the model over HTTP. The API key may also come from the environment "
        f"variable {API_KEY_ENV} (preferred: flags show up in process lists).",
    )
    add_engine_args(p, model_required=False)
    add_sampling_args(p)
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
    g.add_argument("--max-batch-size", type=int, default=None, help="requests per engine batch (default 8)")
    g.add_argument(
        "--batch-wait-ms", type=float, default=None, help="how long a batch waits to fill (default 10)"
    )
    g.add_argument("--max-queue", type=int, default=d.max_queue, help="admitted requests before 503")
    g.add_argument("--request-timeout", type=float, default=d.request_timeout_s, help="seconds before 504")
    g.add_argument("--max-input-chars", type=int, default=d.max_input_chars)
    g.add_argument("--max-ref-bytes", type=int, default=d.max_ref_bytes)
    g.add_argument("--max-ref-seconds", type=float, default=d.max_ref_seconds)
    g.add_argument("--max-voices", type=int, default=d.max_voices)
    g.add_argument("--shutdown-timeout", type=float, default=d.shutdown_timeout_s)
    g.add_argument("--no-warmup", action="store_true", help="skip the warm-up synthesis")
    g.add_argument("--remove-silence", action="store_true", help="IndicF5 post-processing on full responses")
    g.add_argument(
        "--no-memory-bound",
        action="store_true",
        help="leave oneDNN's primitive caches (1024 shapes), glibc's malloc arenas and trimming at "
        "their defaults: RSS then grows with the variety of request lengths (docs/reliability.md)",
    )
    g.add_argument("--triton-url", default=None, help="backend remote: the Triton server to proxy to")
    g.add_argument("--log-level", default=d.log_level, choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run_serve)


def build_engine(config):
    """The engine the server talks to: in-process TTS, or a Triton proxy for backend 'remote'."""
    if config.backend == "remote":
        if not config.triton_url:
            raise InputError("--backend remote needs --triton-url", "triton_url")
        try:
            from indicf5_fast.deploy.triton.remote import RemoteTTS
        except ImportError as e:
            raise BackendUnavailableError(
                f"backend 'remote' is not available in this build ({e}); "
                "it needs indicf5_fast.deploy.triton.remote and the triton extra"
            ) from e
        factory = getattr(RemoteTTS, "from_config", None)
        return factory(config) if callable(factory) else RemoteTTS(config)
    if not config.model:
        raise InputError("--model is required (a checkpoint directory or hub id)", "model")
    from indicf5_fast.engine import TTS

    return TTS.load(config.model, **{k: v for k, v in config.__dict__.items() if k != "model"})


def settings_from_args(args: argparse.Namespace, config):
    from indicf5_fast.server.settings import API_KEY_ENV, ServerSettings, default_data_dir

    prompts = args.prompts_dir
    if prompts is None and config.model and config.backend != "remote":
        from indicf5_fast.model.checkpoint import resolve_model

        root = resolve_model(config.model)
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
        max_ref_seconds=args.max_ref_seconds,
        max_voices=args.max_voices,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        warmup=not args.no_warmup,
        shutdown_timeout_s=args.shutdown_timeout,
        log_level=args.log_level,
    ).validate()


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from indicf5_fast.backends.native_memory import bound_native_memory
    from indicf5_fast.cli import config_from_args
    from indicf5_fast.server.app import create_app

    extra = {"remove_silence": args.remove_silence, "triton_url": args.triton_url}
    if args.max_batch_size is not None:
        extra["max_batch_size"] = args.max_batch_size
    if args.batch_wait_ms is not None:
        extra["batch_wait_ms"] = args.batch_wait_ms
    config = config_from_args(args, **extra)
    if config.max_batch_size < 1 or config.batch_wait_ms < 0:
        raise InputError("--max-batch-size must be >= 1 and --batch-wait-ms >= 0", "max_batch_size")
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
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    return 0
