"""The command-line rules every benchmark shares: --from-json, and counts that must be positive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_from_json(parser: argparse.ArgumentParser) -> None:
    """Every benchmark's --from-json: print the table of a stored run, measuring nothing."""
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="RESULTS",
        help="measure nothing: print the table from a results file this benchmark wrote",
    )


def parse_positive(parser: argparse.ArgumentParser, *flags: str) -> argparse.Namespace:
    """The parsed arguments; the usage and a one-line error (exit 2) for any of `flags` given below 1."""
    args = parser.parse_args()
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None and value < 1:
            parser.error(f"{flag} {value}: must be 1 or more")
    return args


def one_count(program: str, doc: str, flag: str, default: int, help: str) -> int:
    """The one positive count a program takes (`flag`); one line naming it and exit 1 below 1."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(flag, type=int, default=default, help=help)
    value = getattr(parser.parse_args(), flag.lstrip("-").replace("-", "_"))
    if value < 1:
        sys.exit(f"{program}: {flag} {value}: must be 1 or more")
    return value
