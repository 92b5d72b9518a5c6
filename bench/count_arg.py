"""The one optional count argument of a benchmark script (``bench/X.py [N]``), with --help."""

from __future__ import annotations

import argparse


def count_arg(doc: str | None, name: str, default: int, help_text: str) -> int:
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument(name, nargs="?", type=int, default=default, help=f"{help_text} ({default})")
    value: int = getattr(parser.parse_args(), name)
    return value
