"""Health probe for containers: exit 0 when the local server's ``/ready`` answers 200, else 1.

``python -m indicf5_fast.server.probe [--url URL] [--timeout S]`` is the images' ``HEALTHCHECK``.
It asks ``/ready``, not ``/health``: ``/health`` answers as soon as the process is up, while the
model may still be loading or warming up. ``/ready`` needs the API key when the server has one,
so the probe sends ``INDICF5_API_KEY``; the port comes from ``INDICF5_PORT`` (default 8000).
Standard library only: it runs every few seconds and must start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 8000


def default_url(environ: Mapping[str, str]) -> str:
    port = environ.get("INDICF5_PORT") or str(DEFAULT_PORT)
    return f"http://127.0.0.1:{port}/ready"


def probe(url: str, api_key: str | None, timeout: float) -> tuple[bool, str]:
    """-> (ready, one-line reason)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(url, headers=headers)
    # no proxies: the probe talks to the server in the same container
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status == 200, f"{response.status} {_status(response.read())}"
    except urllib.error.HTTPError as e:  # 503 while warming up, 401 with a wrong key
        return False, f"{e.code} {_status(e.read())}"
    except (OSError, ValueError) as e:  # refused, timeout, bad URL
        return False, f"unreachable: {e}"


def _status(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict) and "status" in data:
        return str(data["status"])
    return ""


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    p = argparse.ArgumentParser(
        prog="python -m indicf5_fast.server.probe", description=__doc__.split("\n")[0]
    )
    p.add_argument("--url", default=None, help="default http://127.0.0.1:$INDICF5_PORT/ready")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds")
    args = p.parse_args(argv)
    ready, reason = probe(args.url or default_url(env), env.get("INDICF5_API_KEY") or None, args.timeout)
    print(("ready: " if ready else "not ready: ") + reason)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
