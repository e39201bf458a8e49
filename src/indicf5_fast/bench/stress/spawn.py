"""Start a server process on a free loopback port, wait until it is ready, stop it afterwards.

Used by `stress --spawn-server` (so the soak can watch the server's memory by pid) and by the
tests (one server per test module)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from indicf5_fast.errors import IndicF5Error


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_command(
    model: str, port: int, extra: list[str] | None = None, host: str = "127.0.0.1"
) -> list[str]:
    """The `indicf5-fast serve` command line for a tiny, CPU, loopback server."""
    return [
        sys.executable,
        "-m",
        "indicf5_fast.cli",
        "serve",
        "--model",
        str(model),
        "--host",
        host,
        "--port",
        str(port),
        *(extra or []),
    ]


class ServerProcess:
    """`with ServerProcess(cmd, port) as srv:` -> srv.url, srv.pid; the server is ready inside.

    The child's output goes to a temporary log file (not a pipe, which could fill and block
    it); the log's tail is in the error raised when the server does not come up."""

    def __init__(
        self,
        cmd: list[str],
        port: int,
        host: str = "127.0.0.1",
        ready_path: str = "/ready",
        ready_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.cmd, self.port, self.host = cmd, port, host
        self.ready_path, self.ready_timeout = ready_path, ready_timeout
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, n: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-n:]

    def start(self) -> ServerProcess:
        import httpx

        self._log = tempfile.NamedTemporaryFile("w+", prefix="indicf5-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        end = time.monotonic() + self.ready_timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise IndicF5Error(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(self.url + self.ready_path, timeout=2.0, trust_env=False)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise IndicF5Error(f"server not ready after {self.ready_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (graceful shutdown), then SIGKILL after `grace` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
