"""`indicf5-fast ui`: the web playground alone on loopback (``serve --ui`` bound to 127.0.0.1).

It takes every ``serve`` option (engine, sampling, limits, voices) and refuses a non-loopback
``--host``: a page on the network belongs behind ``serve --ui`` with an API key. Import-light.
"""

from __future__ import annotations

import argparse
import ipaddress

from indicf5_fast.errors import InputError

DEFAULT_PORT = 7860  # Gradio's usual port


def add_parser(subparsers) -> None:
    from indicf5_fast.server import cli as serve_cli

    # reuse serve's parser as a parent so both commands always take the same options
    holder = argparse.ArgumentParser(add_help=False).add_subparsers()
    serve_cli.add_parser(holder)
    p = subparsers.add_parser(
        "ui",
        parents=[holder.choices["serve"]],
        conflict_handler="resolve",
        help="web playground (Gradio) on 127.0.0.1, with the HTTP API behind it",
        description="Run the web playground locally: http://127.0.0.1:PORT/ui/ (default port "
        f"{DEFAULT_PORT}). Takes the options of `serve`; --host must be a loopback address.",
    )
    p.set_defaults(func=run_ui, port=DEFAULT_PORT, ui=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_ui(args: argparse.Namespace) -> int:
    from indicf5_fast.server.cli import run_serve

    if not is_loopback(args.host):
        raise InputError(
            f"`ui` serves on loopback only, not {args.host!r}; for a network page use "
            "`serve --ui --host ...` with an API key (INDICF5_API_KEY)",
            "host",
        )
    args.ui = True
    return run_serve(args)
