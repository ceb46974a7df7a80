"""`covkb check`'s work, and what every command shares: reading a case, failing with a
clear message, guarding a run.

A plain `covkb check` runs here without the command-line framework (covkb.surfaces.main
chooses); covkb.surfaces.cli runs the same functions for every other command line, so
both print the same bytes and exit with the same codes (tests/test_command.py compares
them).
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
    from covkb.surfaces.terminal import printable

    echo(f"covkb: {printable(message, lines=False)}", err=True)
    return SystemExit(2)


def stop(message: str) -> SystemExit:
    """Exit 3: the run could not finish (I/O failure, disk full, a signal)."""
    from covkb.surfaces.terminal import printable

    echo(f"covkb: {printable(message, lines=False)}", err=True)
    try:  # a reader that went away must not cost a second error at exit
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return SystemExit(3)


def open_log(path: Path):
    """An open decision log, or exit 2 naming the file."""
    import sqlite3

    from covkb.surfaces import audit

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
        from covkb.surfaces.batch import chunk_size
        from covkb.engine.choose import prepare

        echo(f"covkb: {prepare(chunk_size(count))}", err=True)


def read_case(case: Path):
    """The case, and what covkb.fhir.reading read with it when the file is a FHIR resource."""
    from covkb.input import case as cases
    from covkb.input import files
    from covkb.input import text as texts
    from covkb.results.result import SOURCES

    SOURCES.set({})  # one case per command: no earlier case's sources may name this one's facts
    try:
        if str(case) != "-" and case.suffix.lower() in (".yaml", ".yml", ".lp"):
            return files.load(case), None
        raw = texts.parse_json(files.read_limited(case))
        if isinstance(raw, dict) and "resourceType" in raw:
            from covkb.fhir import reading as fhir_in

            read = fhir_in.case_from_fhir(raw)
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
    from covkb.results.render import as_json, as_text
    from covkb.surfaces.terminal import printable

    version = known_version(version)
    one, read = read_case(case)
    say_engine(verbose, 1)
    if log is None:
        from covkb.api import check as decide_one

        result = decide_one(one, version)
    else:
        from covkb.surfaces import audit
        from covkb.api import determine_explained

        result, explanation = determine_explained([one], version)[0]
        connection = open_log(log)
        try:
            audit.append(connection, [audit.prepare(one, version, result, explanation, audit.kb_hash())])
        finally:
            connection.close()
    if format in ("pas", "crd"):
        from covkb.fhir import codes as fhir_codes
        from covkb.fhir import responses

        answer = responses.pas_response if format == "pas" else responses.coverage_information
        echo(fhir_codes.encode(answer(result, read.context if read else None)))
        return
    echo(as_json(result) if format == "json" else printable(as_text(result, every=every)))


def guarded(run) -> None:
    """Run a command; an unexpected failure is one line and exit 3, never a traceback
    (reading 3), and a log that cannot be read is exit 2."""
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
    from covkb.surfaces.terminal import printable

    choose = sys.modules.get("covkb.engine.choose")
    if choose is not None and isinstance(error, choose.EngineChoice):
        echo(f"covkb: {printable(str(error), lines=False)}", err=True)
        sys.exit(2)
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(error, sqlite3.DatabaseError):
        echo(f"covkb: the decision log cannot be read ({printable(str(error), lines=False)})", err=True)
        sys.exit(2)
    echo(f"covkb: could not finish ({type(error).__name__}: "
         f"{printable(str(error)[:300], lines=False)})", err=True)
    sys.exit(3)
