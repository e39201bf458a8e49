"""Run a classic model repository with the ``tritonserver`` binary that ships inside
``nvidia-pytriton`` (no container needed; python backend only, CPU or GPU).

The wheel keeps the python-backend stubs apart, one per Python version; the server expects the
stub next to ``libtriton_python.so``. So we copy the server tree once into a work directory, put
this interpreter's stub in place, and start the binary with an environment in which the stub
finds ``libpython`` (interpreter LIBDIR), the server's own libraries, and this interpreter's
packages (its ``bin`` first on PATH).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from indicf5_fast.errors import BackendUnavailableError, InputError, require


def prepare_server(workdir: str | Path) -> Path:
    """Copy the bundled server into ``workdir/tritonserver`` (once) -> that directory."""
    pytriton = require("pytriton", "triton", "the bundled Triton server")
    src = Path(pytriton.__file__).parent / "tritonserver"
    stub = (
        src
        / "python_backend_stubs"
        / f"{sys.version_info[0]}.{sys.version_info[1]}"
        / "triton_python_backend_stub"
    )
    if not stub.is_file():
        raise BackendUnavailableError(f"nvidia-pytriton has no python-backend stub for Python {sys.version}")
    dst = Path(workdir) / "tritonserver"
    if not (dst / "bin" / "tritonserver").is_file():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("python_backend_stubs"), dirs_exist_ok=True)
        shutil.copy2(stub, dst / "backends" / "python" / "triton_python_backend_stub")
    return dst


def server_environment() -> dict[str, str]:
    import pytriton

    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    paths = [sysconfig.get_config_var("LIBDIR") or "", str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def server_command(
    repository: str | Path,
    server_dir: str | Path,
    *,
    address: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    exit_timeout_s: int = 10,
    log_verbose: int = 0,
) -> list[str]:
    repo = Path(repository)
    if not repo.is_dir():
        raise InputError(f"model repository {repo} does not exist", "repository")
    server = Path(server_dir)
    return [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repo.resolve()}",
        f"--backend-directory={server / 'backends'}",
        f"--cache-directory={server / 'caches'}",
        f"--http-address={address}",
        f"--http-port={http_port}",
        f"--grpc-address={address}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={address}",
        f"--metrics-port={metrics_port}",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-verbose={log_verbose}",
    ]


def start_server(
    repository: str | Path, workdir: str | Path, *, log_file: str | Path | None = None, **ports
) -> subprocess.Popen:
    """Start tritonserver on ``repository`` in the background (the caller stops it)."""
    server_dir = prepare_server(workdir)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 (handed to the child)
    try:
        return subprocess.Popen(
            server_command(repository, server_dir, **ports),
            env=server_environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log_file:
            out.close()
