"""`indicf5-fast triton serve | build-repo | run-repo | client`.

Import-light: pytriton, tritonclient and torch are imported inside the run functions.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from indicf5_fast.config import (
    BACKENDS,
    DTYPES,
    PRESETS,
    SAMPLE_RATE,
    add_config_args,
    config_from_args,
    flag,
)
from indicf5_fast.errors import require


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "triton", help="serve the engine under NVIDIA Triton (PyTriton, model repository, client)"
    )
    sub = p.add_subparsers(dest="triton_command", required=True)

    s = sub.add_parser("serve", help="PyTriton: batched + streaming models on Triton's HTTP/gRPC (KServe v2)")
    add_config_args(s, ("model", "runtime", "frontend", "sampling"), required=("model",))
    # Triton's max_batch_size is the engine's: one flag (--max-batch kept as an alias)
    add_config_args(s, only=("max_batch_size",), aliases={"max_batch_size": ("--max-batch",)})
    _add_server_args(s)
    s.add_argument("--queue-delay-ms", type=float, default=5.0, help="how long Triton waits to fill a batch")
    s.add_argument("--instances", type=int, default=1, help="model instances (concurrent calls) per model")
    s.add_argument("--voice-dir", default=None, help="register voices: NAME.wav + NAME.txt (transcript)")
    s.add_argument("--no-warmup", action="store_true", help="skip the warm-up synthesis")
    s.set_defaults(func=_run_serve)

    b = sub.add_parser(
        "build-repo", help="classic model repository (config.pbtxt + python backend) for the NGC container"
    )
    b.add_argument("out", help="output directory")
    b.add_argument("--model", required=True, help="checkpoint path as the Triton server sees it")
    b.add_argument("--backend", default="torch", choices=[x for x in BACKENDS if x != "remote"])
    b.add_argument("--device", default="auto")
    b.add_argument("--dtype", default="auto", choices=DTYPES)
    b.add_argument(
        "--kind", default="auto", choices=("auto", "cpu", "gpu"), help="auto: gpu when CUDA is visible here"
    )
    b.add_argument("--instances", type=int, default=1, help="instances per model (per GPU for KIND_GPU)")
    b.add_argument("--max-batch", type=int, default=8)
    b.add_argument("--queue-delay-ms", type=float, default=5.0)
    b.add_argument("--preset", choices=sorted(PRESETS), default=None, help="engine default sampling")
    b.add_argument("--voice-dir", default="", help="voices dir as the server sees it (NAME.wav + NAME.txt)")
    b.add_argument(
        "--onnx-dir", default="", help="backend onnx/openvino: exported graphs, as the server sees it"
    )
    b.add_argument("--no-stream", action="store_true", help="leave out the decoupled streaming model")
    b.add_argument(
        "--vocoder-onnx", default=None, help="exported Vocos ONNX file: add a 'vocoder' model (BLS)"
    )
    b.add_argument(
        "--vocoder-tensorrt", action="store_true", help="TensorRT accelerator for the ONNX vocoder"
    )
    b.add_argument(
        "--vocoder-trt-cache",
        default="/tmp/indicf5-trt-cache/vocoder",
        help="TensorRT engine/timing cache dir of the vocoder, writable as the server sees it",
    )
    b.set_defaults(func=_run_build_repo)

    r = sub.add_parser(
        "run-repo", help="run a model repository with the tritonserver bundled in nvidia-pytriton"
    )
    r.add_argument("repository")
    _add_server_args(r)
    r.add_argument(
        "--workdir", default=None, help="where the server binaries are copied (default: a temp dir)"
    )
    r.set_defaults(func=_run_repo)

    c = sub.add_parser("client", help="synthesize through a Triton server and write a WAV")
    c.add_argument("--url", default="127.0.0.1:8000", help="host:port, or http://... / grpc://...")
    c.add_argument(
        "--protocol", choices=("http", "grpc"), default=None, help="default: from --url, else http"
    )
    c.add_argument("--text", required=True)
    v = c.add_mutually_exclusive_group(required=True)
    v.add_argument("--voice", help="a voice registered on the server (--voice-dir)")
    v.add_argument("--ref-audio", help="reference audio file (sent with the request)")
    c.add_argument("--ref-text", default=None, help="transcript of --ref-audio")
    c.add_argument("--out", required=True, help="output .wav / .flac")
    c.add_argument(
        "--stream", action="store_true", help="streaming model (gRPC): write chunks as they arrive"
    )
    c.add_argument("--seed", type=int, default=None)
    c.add_argument(flag("nfe_step"), "--nfe", dest="nfe_step", type=int, default=None)
    c.add_argument("--speed", type=float, default=None)
    c.add_argument(
        "--chunking",
        choices=("upstream", "stream"),
        default=None,
        help="text chunking (default: stream for --stream, else IndicF5's split)",
    )
    c.add_argument(
        "--first-chunk-nfe", type=int, default=None, help="progressive first chunk: its sampler steps"
    )
    c.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    c.add_argument(
        "--wait", type=float, default=0.0, help="wait up to this many seconds for Triton to be ready"
    )
    c.set_defaults(func=_run_client)


def _add_server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("triton server")
    g.add_argument(
        "--address", default="127.0.0.1", help="bind address of HTTP, gRPC and metrics (default loopback)"
    )
    g.add_argument("--http-port", type=int, default=8000)
    g.add_argument("--grpc-port", type=int, default=8001)
    g.add_argument("--metrics-port", type=int, default=8002)
    g.add_argument("--log-verbose", type=int, default=0)


def _run_serve(args: argparse.Namespace) -> int:
    require("pytriton", "triton", "indicf5-fast triton serve")  # before the (slow) model load
    from indicf5_fast.deploy.triton.handler import load_voices
    from indicf5_fast.deploy.triton.pytriton_server import PyTritonServer, TritonServeConfig
    from indicf5_fast.engine import TTS

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    serve_cfg = TritonServeConfig(
        address=args.address,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_batch=cfg.max_batch_size,
        queue_delay_ms=args.queue_delay_ms,
        instances=args.instances,
        log_verbose=args.log_verbose,
    ).validate()
    t0 = time.perf_counter()
    tts = TTS.from_config(cfg)
    voices = load_voices(tts, args.voice_dir)
    if voices and not args.no_warmup:  # first synthesis pays one-time costs; not a client's
        voice = next(iter(voices.values()))
        tts.synthesize(voice.text[:40], voice=voice, seed=0)  # sampling: cfg.sampling
    print(
        f"loaded {cfg.model} in {time.perf_counter() - t0:.1f} s [{tts.backend.describe()}], "
        f"{len(voices)} voice(s); starting Triton",
        file=sys.stderr,
    )
    _stop_on_sigterm()  # docker stop / systemd: stop Triton cleanly, as Ctrl-C does
    server = PyTritonServer(tts, voices, serve_cfg).start()
    print(
        f"Triton ready: HTTP {server.http_url}, gRPC {server.grpc_url}, models indicf5 (batched) and "
        "indicf5_stream (decoupled, gRPC)",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM and SIGINT -> KeyboardInterrupt in the main thread (whose handlers stop Triton).
    SIGINT is set explicitly too: a shell starts background jobs with SIGINT ignored."""
    import signal

    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _run_build_repo(args: argparse.Namespace) -> int:
    from indicf5_fast.deploy.triton.repo_builder import RepoOptions, build_repository

    root = build_repository(
        args.out,
        RepoOptions(
            model=args.model,
            backend=args.backend,
            device=args.device,
            dtype=args.dtype,
            kind=args.kind,
            instances=args.instances,
            max_batch=args.max_batch,
            queue_delay_ms=args.queue_delay_ms,
            preset=args.preset or "",
            voice_dir=args.voice_dir,
            onnx_dir=args.onnx_dir,
            stream=not args.no_stream,
            vocoder_onnx=args.vocoder_onnx,
            vocoder_tensorrt=args.vocoder_tensorrt,
            vocoder_trt_cache=args.vocoder_trt_cache,
        ),
    )
    models = sorted(p.parent.name for p in root.glob("*/config.pbtxt"))
    print(f"wrote model repository {root} ({', '.join(models)}); runbook: {root / 'README.md'}")
    return 0


def _run_repo(args: argparse.Namespace) -> int:
    import tempfile

    require("pytriton", "triton", "indicf5-fast triton run-repo")
    from indicf5_fast.deploy.triton.bundled import prepare_server, server_command, server_environment

    with tempfile.TemporaryDirectory(prefix="indicf5-triton-") as tmp:
        server_dir = prepare_server(args.workdir or tmp)
        cmd = server_command(
            args.repository,
            server_dir,
            address=args.address,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            log_verbose=args.log_verbose,
        )
        import signal
        import subprocess

        _stop_on_sigterm()
        proc = subprocess.Popen(cmd, env=server_environment())
        try:
            return proc.wait()
        except KeyboardInterrupt:  # also stop the server when only we got the signal
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return 130


def _run_client(args: argparse.Namespace) -> int:
    import numpy as np

    require("tritonclient", "triton", "indicf5-fast triton client")
    from indicf5_fast.deploy.triton.client import TritonTTSClient
    from indicf5_fast.errors import InputError
    from indicf5_fast.frontend.audio import read_audio, write_audio

    item: dict = {"seed": args.seed, "nfe_step": args.nfe_step, "speed": args.speed, "chunking": args.chunking}
    item["first_chunk_nfe"] = args.first_chunk_nfe
    if args.voice:
        item["voice"] = args.voice
    else:
        if not args.ref_text:
            raise InputError("--ref-audio needs --ref-text (its transcript)", "ref_text")
        wave, sr = read_audio(args.ref_audio)
        item.update(ref_audio=wave, ref_sample_rate=sr, ref_text=args.ref_text)
    item = {k: v for k, v in item.items() if v is not None}
    t0 = time.perf_counter()
    with TritonTTSClient(args.url, args.protocol, timeout_s=args.timeout) as client:
        client.wait_ready(args.wait)  # a clear error when Triton is down or still loading models
        if args.stream:
            pieces, t_first = [], None
            for chunk in client.stream(args.text, **item):
                t_first = t_first if t_first is not None else time.perf_counter() - t0
                pieces.append(chunk)
                print(f"chunk {len(pieces)}: {chunk.shape[0] / SAMPLE_RATE:.2f} s", file=sys.stderr)
            wave_out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        else:
            t_first, wave_out = None, client.synthesize(args.text, **item)
    total = time.perf_counter() - t0
    write_audio(Path(args.out), wave_out, SAMPLE_RATE)
    first = f", first audio {t_first:.2f} s" if t_first is not None else ""
    print(f"wrote {args.out} ({wave_out.shape[0] / SAMPLE_RATE:.2f} s audio) in {total:.2f} s{first}")
    return 0
