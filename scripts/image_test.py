#!/usr/bin/env python3
"""`make image-test`: build docker/Dockerfile (the CPU server image) here and prove it works.

No Docker daemon and no registry are needed: buildah builds and runs the image with chroot
isolation, on a Debian bookworm base made by debootstrap (+ Debian's python3 and venv), passed in
through the Dockerfile's BASE arg. torch comes from a local wheel directory when pip is configured
with one (find-links), else from the PyTorch CPU index as for a user. Then, inside the image:

  1. the image config: non-root numeric USER, exec-form ENTRYPOINT, HEALTHCHECK on the probe;
  2. `id -u` is not 0; `init-random` writes a tiny checkpoint; `synth` writes a 24 kHz WAV;
  3. the ENTRYPOINT (`indicf5-fast serve`) starts, configured by INDICF5_* variables only, with an
     API key; the HEALTHCHECK command itself reports ready; a wrong key makes it fail;
  4. from the host: `/v1/audio/speech` answers a WAV, and 401 without the key;
  5. SIGTERM: the server shuts down cleanly (admitted requests finish); the probe then fails;
  6. with --triton-python (the make venv): the image's server with `--backend remote` in front of
     PyTriton on this host answers `/v1/audio/speech` (compose.yaml's server half).

Standard library only (it runs before any virtualenv exists). Run as root (buildah, debootstrap).
Logs go to artifacts/image-test/. The base image and buildah's layer cache are kept for the
next run (--fresh-base rebuilds the base; `buildah rmi --prune` frees the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/indicf5-test-base:bookworm"
DEBIAN_PACKAGES = "python3,python3-venv"  # minbase has no Python; the Dockerfile needs 3.11 + venv
TORCH_VERSION = "2.13.0"  # requirements/cpu.txt
API_KEY = "image-test-key"
TEXT = "नमस्ते, यह कंटेनर की जाँच है।"


class Failure(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", default="localhost/indicf5-fast:image-test", help="tag for the built image")
    p.add_argument("--dockerfile", default="docker/Dockerfile")
    p.add_argument("--base-image", default=BASE_IMAGE)
    p.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror for debootstrap")
    p.add_argument("--fresh-base", action="store_true", help="rebuild the debootstrap base image")
    p.add_argument("--logs", default=str(ROOT / "artifacts" / "image-test"))
    p.add_argument(
        "--triton-python",
        default=None,
        help="a Python with indicf5-fast[triton] (the make venv): also serve the image with "
        "--backend remote in front of PyTriton on this host, as compose.yaml does",
    )
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "error: image-test runs buildah and debootstrap as root (sudo make image-test)", file=sys.stderr
        )
        return 2
    os.environ["BUILDAH_ISOLATION"] = "chroot"  # no cgroups/namespaces needed (works in sandboxes)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        for tool in ("buildah",):
            if shutil.which(tool) is None:
                raise Failure(f"{tool} not found: apt-get install buildah debootstrap")
        step("base image", lambda: ensure_base(args.base_image, args.mirror, args.fresh_base, logs))
        step("build", lambda: build(args.image, args.dockerfile, args.base_image, logs))
        config = step("image config", lambda: check_config(args.image))
        step("run", lambda: run_checks(args.image, config, logs, args.triton_python))
    except Failure as e:
        print(f"image-test: FAILED: {e}", file=sys.stderr)
        return 1
    size = image_size(args.image)
    print(f"image-test: passed in {time.monotonic() - t0:.0f} s; {args.image} is {size}")
    return 0


def step(name: str, fn):
    t = time.monotonic()
    print(f"image-test: {name} ...", flush=True)
    out = fn()
    print(f"image-test: {name} ok ({time.monotonic() - t:.0f} s)", flush=True)
    return out


# ------------------------------------------------------------------------------------------ build
def ensure_base(image: str, mirror: str, fresh: bool, logs: Path) -> None:
    """Debian bookworm minbase + python3/venv as an image, debootstrapped straight into a
    mounted scratch container (no copy)."""
    if not fresh and sh(["buildah", "inspect", "--type", "image", image], check=False).returncode == 0:
        print(f"  reusing {image} (--fresh-base rebuilds it)")
        return
    if shutil.which("debootstrap") is None:
        raise Failure("debootstrap not found: apt-get install debootstrap")
    ctr = sh(["buildah", "from", "scratch"]).stdout.strip()
    try:
        mnt = sh(["buildah", "mount", ctr]).stdout.strip()
        cmd = ["debootstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}", "bookworm", mnt, mirror]
        logged(cmd, logs / "debootstrap.log", timeout=1800)
        sh(["buildah", "umount", ctr])
        sh(["buildah", "commit", "--rm", "-q", ctr, image])
    except BaseException:
        sh(["buildah", "rm", ctr], check=False)
        raise


def build(image: str, dockerfile: str, base: str, logs: Path) -> None:
    # --format docker: the OCI format has no HEALTHCHECK; --layers: reruns reuse unchanged steps
    cmd = ["buildah", "build", "--isolation", "chroot", "--format", "docker", "--layers", "--force-rm"]
    cmd += ["--pull=never", "--build-arg", f"BASE={base}", "-f", dockerfile, "-t", image]
    wheels = local_torch_wheels()
    if wheels:  # the CPU wheel on this machine's disk instead of the PyTorch index
        print(f"  torch {TORCH_VERSION}+cpu from {wheels}")
        cmd += ["-v", f"{wheels}:/wheels:ro", "--build-arg", "TORCH_PIP_ARGS=--find-links /wheels"]
        cmd += ["--build-arg", f"TORCH_VERSION={TORCH_VERSION}+cpu"]
    cert = host_ca_bundle()
    if cert:  # a TLS-inspecting proxy's CA reaches pip in the build stage only
        cmd += ["-v", f"{cert}:/run/host-ca.pem:ro", "--build-arg", "PIP_CERT=/run/host-ca.pem"]
    before = image_id(image)
    logged([*cmd, str(ROOT)], logs / "build.log", timeout=3600)
    if before and before != image_id(image):  # the previous test image, now untagged
        sh(["buildah", "rmi", before], check=False)


def image_id(image: str) -> str | None:
    out = sh(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", image], check=False)
    return out.stdout.strip() or None if out.returncode == 0 else None


def local_torch_wheels() -> str | None:
    """The pip find-links directory holding the CPU torch wheel, if pip is configured with one."""
    places = [os.environ.get("PIP_FIND_LINKS", "")]
    for key in ("global.find-links", "install.find-links"):
        out = sh([sys.executable, "-m", "pip", "config", "get", key], check=False)
        if out.returncode == 0:
            places.append(out.stdout.strip())
    for entry in " ".join(places).split():
        d = Path(entry.removeprefix("file://"))
        if d.is_dir() and any(d.glob(f"torch-{TORCH_VERSION}+cpu-cp311-*.whl")):
            return str(d)
    return None


def host_ca_bundle() -> str | None:
    for candidate in (
        os.environ.get("PIP_CERT"),
        pip_config("global.cert"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def pip_config(key: str) -> str | None:
    out = sh([sys.executable, "-m", "pip", "config", "get", key], check=False)
    return out.stdout.strip() if out.returncode == 0 else None


# ----------------------------------------------------------------------------------------- checks
def check_config(image: str) -> dict:
    info = json.loads(sh(["buildah", "inspect", "--type", "image", image]).stdout)
    config = info["Docker"]["config"]
    user = config.get("User") or ""
    uid = user.split(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        raise Failure(f"USER must be a numeric non-root uid, got {user!r}")
    entry = config.get("Entrypoint") or []
    if entry[:2] != ["indicf5-fast", "serve"]:
        raise Failure(f"ENTRYPOINT must be exec form ['indicf5-fast', 'serve', ...], got {entry!r}")
    health = (config.get("Healthcheck") or {}).get("Test") or []
    if health[:1] != ["CMD"] or "indicf5_fast.server.probe" not in health:
        raise Failure(f"HEALTHCHECK must run the probe in exec form, got {health!r} (built --format docker?)")
    env = dict(e.split("=", 1) for e in config.get("Env") or [])
    for name in ("HF_HOME", "INDICF5_MODEL", "INDICF5_PORT", "INDICF5_DATA_DIR"):
        if name not in env:
            raise Failure(f"image environment lacks {name}")
    if "/data" not in (config.get("Volumes") or {}):
        raise Failure("image declares no /data volume")
    print(f"  user {user}, entrypoint {entry}, healthcheck {health[1:]}")
    return config


def run_checks(image: str, config: dict, logs: Path, triton_python: str | None) -> None:
    ctr = sh(["buildah", "from", "--pull-never", image]).stdout.strip()
    server = None
    try:
        uid = run_in(ctr, ["id", "-u"]).stdout.strip()
        if uid == "0":
            raise Failure("the image runs as root")
        print(f"  runs as uid {uid}")
        model = "/data/models/tiny"
        run_in(ctr, ["indicf5-fast", "init-random", model, "--arch", "tiny"])
        ref_text = run_in(ctr, ["cat", f"{model}/prompts/demo.txt"]).stdout.strip()
        synth = ["indicf5-fast", "synth", "--model", model, "--ref-audio", f"{model}/prompts/demo.wav"]
        synth += [
            "--ref-text",
            ref_text,
            "--text",
            TEXT,
            "--seed",
            "0",
            "--out",
            "/data/out.wav",
            "--no-progress",
        ]
        run_in(ctr, synth, timeout=600)
        seconds = check_wav(run_in(ctr, ["cat", "/data/out.wav"], text=False).stdout, "synth")
        print(f"  synth wrote {seconds:.2f} s of 24 kHz audio")

        port = free_port()
        env = {  # configuration through INDICF5_* only, as a user of the image would
            "INDICF5_MODEL": model,
            "INDICF5_HOST": "127.0.0.1",  # chroot isolation shares the host network: stay on loopback
            "INDICF5_PORT": str(port),
            "INDICF5_API_KEY": API_KEY,
            "INDICF5_PRESET": "fast",
            "INDICF5_MAX_QUEUE": "8",
        }
        entry = config["Entrypoint"] + (config.get("Cmd") or [])
        cmd = ["buildah", "run", *env_flags(env), ctr, "--", *entry]
        with open(logs / "serve.log", "wb") as log:  # the child keeps its own copy of the fd
            server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        health = config["Healthcheck"]["Test"][1:]
        wait_ready(ctr, health, env, server, timeout=300)
        print(f"  HEALTHCHECK ({' '.join(health)}) reports ready on port {port}")
        bad = run_in(ctr, health, env={**env, "INDICF5_API_KEY": "wrong"}, check=False)
        if bad.returncode == 0:
            raise Failure("the probe passed with a wrong API key")

        url = f"http://127.0.0.1:{port}/v1/audio/speech"
        body = {"model": "indicf5", "input": TEXT, "voice": "demo", "response_format": "wav", "seed": 0}
        status, audio = post_json(url, body, API_KEY)
        if status != 200:
            raise Failure(f"/v1/audio/speech answered {status}: {audio[:300]!r}")
        seconds = check_wav(audio, "/v1/audio/speech")
        print(f"  /v1/audio/speech from the host: 200, {seconds:.2f} s WAV")
        status, _ = post_json(url, body, None)
        if status != 401:
            raise Failure(f"/v1/audio/speech without the key answered {status}, expected 401")

        stop(server)  # SIGTERM: uvicorn finishes admitted requests, shuts the app down, exits
        code = server.wait(timeout=150)
        server = None
        check_drained(code, (logs / "serve.log").read_text(errors="replace"), logs / "serve.log")
        if run_in(ctr, health, env=env, check=False).returncode == 0:
            raise Failure("the probe still passes after the server stopped")
        print("  SIGTERM: the server shut down cleanly; the probe now fails")
        if triton_python:
            remote_checks(ctr, config, logs, triton_python)
    finally:
        if server is not None:
            stop(server, signal.SIGKILL)
            server.wait(timeout=30)
        sh(["buildah", "rm", ctr], check=False)


def remote_checks(ctr: str, config: dict, logs: Path, python: str) -> None:
    """compose.yaml's server half: the image's server with --backend remote (tritonclient from
    the remote extra) in front of a Triton on this host (PyTriton, same engine, tiny model)."""
    http, grpc, metrics, port = (free_port() for _ in range(4))
    work = Path(tempfile.mkdtemp(prefix="indicf5-image-test-"))
    model = work / "tiny"
    sh([python, "-m", "indicf5_fast.cli", "init-random", str(model), "--arch", "tiny"])
    cmd = [python, "-m", "indicf5_fast.cli", "triton", "serve", "--model", str(model), "--device", "cpu"]
    cmd += ["--voice-dir", str(model / "prompts"), "--http-port", str(http), "--grpc-port", str(grpc)]
    cmd += ["--metrics-port", str(metrics), "--no-warmup"]
    with open(logs / "triton.log", "wb") as log:
        triton = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = None
    try:
        wait_url(f"http://127.0.0.1:{http}/v2/health/ready", triton, timeout=300)
        env = {
            "INDICF5_BACKEND": "remote",
            "INDICF5_TRITON_URL": f"grpc://127.0.0.1:{grpc}",
            "INDICF5_PROMPTS_DIR": "/data/models/tiny/prompts",
            "INDICF5_HOST": "127.0.0.1",
            "INDICF5_PORT": str(port),
        }
        cmd = [
            "buildah",
            "run",
            *env_flags(env),
            ctr,
            "--",
            *config["Entrypoint"],
            *(config.get("Cmd") or []),
        ]
        with open(logs / "serve-remote.log", "wb") as log:
            server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(ctr, config["Healthcheck"]["Test"][1:], env, server, timeout=300)
        body = {"input": TEXT, "voice": "demo", "response_format": "wav", "seed": 0, "preset": "fast"}
        status, audio = post_json(f"http://127.0.0.1:{port}/v1/audio/speech", body, None)
        if status != 200:
            raise Failure(f"--backend remote: /v1/audio/speech answered {status}: {audio[:300]!r}")
        seconds = check_wav(audio, "--backend remote")
        print(f"  --backend remote in front of Triton (gRPC): 200, {seconds:.2f} s WAV")
    finally:
        if server is not None:
            stop(server)
            server.wait(timeout=150)
        stop_group(triton)
        shutil.rmtree(work, ignore_errors=True)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started (PyTriton and its tritonserver), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_url(url: str, proc: subprocess.Popen, timeout: float) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(
                f"`{shlex.join(proc.args[:4])} ...` exited {proc.returncode} before {url} was ready"
            )
        try:
            with opener.open(url, timeout=5) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(1.0)
    raise Failure(f"{url} not ready after {timeout:.0f} s")


def check_drained(code: int, log: str, path: Path) -> None:
    """uvicorn re-raises SIGTERM after a clean shutdown (exit status 143 under Docker; buildah
    reports it as "exited on terminated"), so a graceful stop is that or 0 after the shutdown
    messages; anything else is a crash."""
    clean = "Application shutdown complete." in log and "Finished server process" in log
    if not clean or (code != 0 and "exited on terminated" not in log):
        raise Failure(f"serve did not shut down cleanly on SIGTERM (exit {code}, see {path})")


def wait_ready(ctr: str, health: list[str], env: dict, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Failure(f"serve exited {server.returncode} before it was ready")
        out = run_in(ctr, health, env=env, check=False)
        if out.returncode == 0:
            return
        last = (out.stdout + out.stderr).strip()
        time.sleep(1.0)
    raise Failure(f"not ready after {timeout:.0f} s (probe: {last})")


def check_wav(data: bytes, what: str) -> float:
    import io

    if data[:4] != b"RIFF":
        raise Failure(f"{what}: not a WAV file ({data[:16]!r})")
    with wave.open(io.BytesIO(data)) as w:
        if w.getframerate() != 24_000 or w.getnchannels() != 1 or w.getnframes() == 0:
            raise Failure(f"{what}: {w.getframerate()} Hz, {w.getnchannels()} ch, {w.getnframes()} frames")
        return w.getnframes() / w.getframerate()


def post_json(url: str, body: dict, key: str | None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(req, timeout=300) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the server process itself: buildah's chroot runner does not forward signals (a
    SIGTERM to `buildah run` kills the server without a shutdown)."""
    ours = [pid for pid in descendants(proc.pid) if not cmdline(pid).startswith(b"buildah")]
    target = next((pid for pid in ours if b"indicf5-fast" in cmdline(pid)), proc.pid)
    try:
        os.kill(target, sig)
    except ProcessLookupError:
        pass


def descendants(pid: int) -> list[int]:
    """All processes below `pid`, nearest first (children are listed per thread in /proc)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            queue += kids
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# ---------------------------------------------------------------------------------------- helpers
def run_in(ctr, cmd, env=None, check=True, timeout=300, text=True) -> subprocess.CompletedProcess:
    out = sh(
        ["buildah", "run", *env_flags(env or {}), ctr, "--", *cmd], check=False, timeout=timeout, text=text
    )
    if check and out.returncode != 0:
        err = out.stderr if text else out.stderr.decode(errors="replace")
        raise Failure(f"in the image, `{shlex.join(cmd)}` exited {out.returncode}: {err.strip()[-1500:]}")
    return out


def env_flags(env: dict) -> list[str]:
    return [a for k, v in env.items() for a in ("--env", f"{k}={v}")]


def sh(cmd, check=True, timeout=600, text=True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=text, timeout=timeout)
    if check and out.returncode != 0:
        raise Failure(f"`{shlex.join(cmd)}` exited {out.returncode}: {out.stderr.strip()[-1500:]}")
    return out


def logged(cmd, path: Path, timeout: float) -> None:
    with open(path, "wb") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
    if code != 0:
        tail = path.read_bytes()[-3000:].decode(errors="replace")
        raise Failure(f"`{shlex.join(cmd[:3])} ...` exited {code}; end of {path}:\n{tail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_size(image: str) -> str:
    out = sh(["buildah", "images", "--format", "{{.Size}}", image], check=False)
    return out.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
