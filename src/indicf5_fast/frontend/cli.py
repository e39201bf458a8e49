"""`indicf5-fast normalize "text" [--lang hi]`: print what the model will read."""

from __future__ import annotations

import argparse
import sys

from indicf5_fast.errors import IndicF5Error


def add_parser(sub) -> None:
    p = sub.add_parser(
        "normalize",
        help="print the text as the model reads it (numbers, amounts, dates, times as words)",
    )
    p.add_argument("text", nargs="?", help="text to normalise ('-' or nothing: read standard input)")
    p.add_argument(
        "--lang",
        default=None,
        help="ISO 639-1 code of the text (as bn gu hi kn ml mr or pa ta te en): decides where the "
        "script is shared (hi/mr, bn/as); default: from the script",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from indicf5_fast.frontend.normalize import normalize_text

    text = sys.stdin.read() if args.text in (None, "-") else args.text
    if not text.strip():
        raise IndicF5Error("no text given (pass it as an argument or on standard input)")
    print(normalize_text(text.rstrip("\n"), args.lang))
    return 0
