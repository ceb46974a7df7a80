"""`covkb check`'s work, and the program's entry point.

`covkb check CASE` is what a reviewer runs once per request, so it starts without the
command-line framework: an argument list made only of CASE, --policy-version V,
--format/-f F, --all/-a and --verbose is decided here directly. Anything else (help,
--log, an option or value this reading does not know, a malformed line) goes to the full
command line in covkb.cli, which also gives every usage error. Both paths run the same
functions below, so they print the same bytes and exit with the same codes
(tests/test_command.py compares them).
"""

from __future__ import annotations

import codecs
import errno
import os
import sys
from pathlib import Path
from typing import Optional

POLICY_VERSION = "--policy-version"
CHECK_FORMATS = ("text", "json", "pas", "crd")


def echo(message: str, err: bool = False, nl: bool = True) -> None:
    """Write one message and flush, as the command line's echo does: UTF-8 to a stream
    whose encoding is ASCII."""
    stream = sys.stderr if err else sys.stdout
    text = message + ("\n" if nl else "")
    buffer = getattr(stream, "buffer", None)
    if buffer is not None and codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "ascii":
        stream.flush()
        buffer.write(text.encode("utf-8", "replace"))
        buffer.flush()
        return
    stream.write(text)
    stream.flush()


def fail(message: str) -> SystemExit:
    """Exit 2: the input is wrong; the message names it."""
    from covkb.terminal import printable

    echo(f"covkb: {printable(message, lines=False)}", err=True)
    return SystemExit(2)


def stop(message: str) -> SystemExit:
    """Exit 3: the run could not finish (I/O failure, disk full, a signal)."""
    from covkb.terminal import printable

    echo(f"covkb: {printable(message, lines=False)}", err=True)
    try:  # a reader that went away must not cost a second error at exit
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return SystemExit(3)


def open_log(path: Path):
    """An open decision log, or exit 2 naming the file."""
    import sqlite3

    from covkb import audit

    try:
        return audit.connect(path)
    except audit.NotALog as error:
        raise fail(f"{path}: {error}") from None
    except sqlite3.DatabaseError as error:
        raise fail(f"{path}: not a covkb decision log ({error})") from None


def known_version(version: Optional[str], option: str = POLICY_VERSION) -> Optional[str]:
    if version is None:
        return None
    from covkb.api import versions

    known = versions()
    if version not in known:
        raise fail(f"{option} {version!r}: expected one of {', '.join(sorted(known))}")
    return version


def say_engine(verbose: bool, count: Optional[int]) -> None:
    """With verbose, which engine decides chunks of `count` cases (None: batch's default chunk)."""
    if verbose:
        from covkb.batch import chunk_size
        from covkb.decide import prepare

        echo(f"covkb: {prepare(chunk_size(count))}", err=True)


def read_case(case: Path):
    """The case, and what covkb.fhir read with it when the file is a FHIR resource."""
    from covkb import case as cases
    from covkb.result import SOURCES

    SOURCES.set({})  # one case per command: no earlier case's sources may name this one's facts
    try:
        if str(case) != "-" and case.suffix.lower() in (".yaml", ".yml", ".lp"):
            return cases.load(case), None
        raw = cases.parse_json(cases.read_limited(case))
        if isinstance(raw, dict) and "resourceType" in raw:
            from covkb import fhir

            read = fhir.case_from_fhir(raw)
            SOURCES.set(read.named_sources())  # one case per command: its facts name their resources
            return read.case, read
        return cases.from_object(raw), None
    except FileNotFoundError:
        raise fail(f"{case}: no such file") from None
    except IsADirectoryError:
        raise fail(f"{case}: is a directory, not a case file") from None
    except OSError as error:  # a symlink loop, no permission, an unreadable disk
        raise (stop if error.errno == errno.EIO else fail)(f"{case}: {error.strerror or error}") from None
    except cases.InvalidCase as error:
        raise fail(f"{case}: {error.message}") from None


def check(case: Path, version: Optional[str], format: str, log: Optional[Path],
          verbose: bool, every: bool) -> None:
    """Decide one request and print it in `format` (one of CHECK_FORMATS)."""
    from covkb.render import as_json, as_text
    from covkb.terminal import printable

    version = known_version(version)
    one, read = read_case(case)
    say_engine(verbose, 1)
    if log is None:
        from covkb.api import check as decide_one

        result = decide_one(one, version)
    else:
        from covkb import audit
        from covkb.api import determine_explained

        result, explanation = determine_explained([one], version)[0]
        connection = open_log(log)
        try:
            audit.append(connection, [audit.prepare(one, version, result, explanation, audit.kb_hash())])
        finally:
            connection.close()
    if format in ("pas", "crd"):
        from covkb import fhir

        answer = fhir.pas_response if format == "pas" else fhir.coverage_information
        echo(fhir.encode(answer(result, read.context if read else None)))
        return
    echo(as_json(result) if format == "json" else printable(as_text(result, every=every)))


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


def guarded(run) -> None:
    """Run a command; an unexpected failure is one line and exit 3, never a traceback
    (SPEC §3), and a log that cannot be read is exit 2."""
    try:
        run()
    except OSError as error:
        if error.errno != errno.EPIPE:
            _unexpected(error)
        # the reader went away (`covkb check CASE | head -1`): exit 1 quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as error:
        _unexpected(error)


def _unexpected(error: Exception) -> None:
    from covkb.terminal import printable

    decide = sys.modules.get("covkb.decide")
    if decide is not None and isinstance(error, decide.EngineChoice):
        echo(f"covkb: {printable(str(error), lines=False)}", err=True)
        sys.exit(2)
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(error, sqlite3.DatabaseError):
        echo(f"covkb: the decision log cannot be read ({printable(str(error), lines=False)})", err=True)
        sys.exit(2)
    echo(f"covkb: could not finish ({type(error).__name__}: "
         f"{printable(str(error)[:300], lines=False)})", err=True)
    sys.exit(3)


def main() -> None:
    """The `covkb` program: a plain `check` here, everything else through covkb.cli."""
    arguments = plain_check(sys.argv[1:])
    if arguments is not None:
        guarded(lambda: check(**arguments))
        return
    from covkb.cli import main as full

    full()
