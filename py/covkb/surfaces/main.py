"""The `covkb` program's entry point.

`covkb check CASE` is what a reviewer runs once per request, so it starts without the
command-line framework: an argument list made only of CASE, --policy-version V,
--format/-f F, --all/-a and --verbose is decided by covkb.surfaces.command directly.
Anything else (help, --log, an option or value this reading does not know, a malformed
line) goes to the full command line in covkb.surfaces.cli, which also gives every usage
error. Both paths run the same functions, so they print the same bytes and exit with the
same codes (tests/test_command.py compares them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from covkb.surfaces.command import CHECK_FORMATS, POLICY_VERSION, check, guarded


def plain_check(argv: list[str]) -> Optional[dict]:
    """check's arguments when argv is `check` with only the options read here, each at
    most once; None for anything else, which the full command line then reads."""
    if not argv or argv[0] != "check" or os.environ.get("COVKB_LOG"):
        return None
    found: dict = {}
    tokens = iter(argv[1:])
    for token in tokens:
        name, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in ("--all", "-a") and not equals:
            key, value = "every", True
        elif name == "--verbose" and not equals:
            key, value = "verbose", True
        elif name in (POLICY_VERSION, "--format", "-f"):
            if not equals:
                value = next(tokens, None)
            if value is None or value.startswith("-") or not value:
                return None
            key = "version" if name == POLICY_VERSION else "format"
            if key == "format" and value not in CHECK_FORMATS:
                return None
        elif token == "-" or not token.startswith("-"):
            key, value = "case", Path(token)
        else:
            return None
        if key in found:
            return None
        found[key] = value
    if "case" not in found:
        return None
    return {"case": found["case"], "version": found.get("version"), "format": found.get("format", "text"),
            "log": None, "verbose": found.get("verbose", False), "every": found.get("every", False)}


def main() -> None:
    """The `covkb` program: a plain `check` here, everything else through covkb.surfaces.cli."""
    arguments = plain_check(sys.argv[1:])
    if arguments is not None:
        guarded(lambda: check(**arguments))
        return
    from covkb.surfaces.cli import main as full  # typer: loaded only here

    full()
