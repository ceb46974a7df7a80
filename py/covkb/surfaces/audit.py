"""The decision log: every determination recorded, replayable and tamper-evident.

One SQLite row per determination: when, the case id, the canonical input and its
SHA-256, the knowledge base's hash, covkb's version, the policy version applied, the
decision, label, every criterion's status and reasons, the stored explanation — and a
hash chaining the row to the one before, so that an edited, inserted or deleted row
shows. Writers append in one transaction per chunk (WAL mode, BEGIN IMMEDIATE), so
concurrent batches interleave whole chunks and the chain stays linear.
"""

from __future__ import annotations

import datetime
import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import msgspec

from covkb import __version__
from covkb.input.case import Case
from covkb.engine.kb import kb_sha256
from covkb.results.render import canonical

GENESIS = "0" * 64
COLUMNS = ("id", "logged_at", "case_id", "input_json", "input_sha256", "kb_sha256", "covkb_version",
           "version_requested", "policy_version", "decision", "label", "criteria_json",
           "explanation_json", "prev_hash", "row_hash")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS determinations (
    id INTEGER PRIMARY KEY,
    logged_at TEXT NOT NULL,
    case_id TEXT NOT NULL,
    input_json TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    kb_sha256 TEXT NOT NULL,
    covkb_version TEXT NOT NULL,
    version_requested TEXT,
    policy_version TEXT,
    decision TEXT NOT NULL,
    label TEXT NOT NULL,
    criteria_json TEXT NOT NULL,
    explanation_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS determinations_case ON determinations (case_id);
"""
# A what-if is a determination decided under a version asked for (`--policy-version`, or
# one side of a comparison) rather than the one the date of service selects: the log
# records the version asked for in every row, inside the hash chain, and each read gives
# the mark as a column of its own. Statistics leave what-ifs out unless asked to count them.
WHAT_IF = "(version_requested IS NOT NULL) AS what_if"
# Marks a SQLite file as a covkb decision log ('covk'); logs made before it are known by
# their table.
APPLICATION_ID = 0x636F766B


class NotALog(Exception):
    """A file that is not a covkb decision log, or one whose table is gone (damaged); left
    untouched."""

    def __init__(self, message: str, damaged: bool = False):
        super().__init__(message)
        self.damaged = damaged

def kb_hash(directory: Optional[Path] = None) -> str:
    """SHA-256 over every kb/ file, name and content."""
    return kb_sha256(directory)


def row_hash(row: dict) -> str:
    """The hash of a row's content and the hash of the row before it."""
    content = {k: row[k] for k in COLUMNS if k not in ("id", "row_hash")}
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def connect(path: Path) -> sqlite3.Connection:
    """The log open for appending; a new or empty file becomes one. Any other file is refused
    (NotALog) before anything is written to it. Processes that open the same new log at
    once create it one at a time: the schema is written in one immediate transaction, so
    no process ever sees a half-made log."""
    if path.exists() and path.stat().st_size > 0:
        open_read(path).close()  # is it a covkb log? asked without writing
    connection = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("BEGIN IMMEDIATE")
    try:
        made = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'determinations'").fetchone()[0]
        if not made:
            connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # SQLite may have rolled back already (a full disk)
            connection.execute("ROLLBACK")
        connection.close()
        raise
    _write_ahead(connection)
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _write_ahead(connection: sqlite3.Connection, seconds: float = 60) -> None:
    """Put the log in WAL mode (once: the mode is kept in the file). Switching needs the
    file to itself and SQLite does not wait for that as it waits for a write lock, so a
    process that finds the log in use while it is first switched tries again, for as long
    as it would wait for a write."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_read(path: Path) -> sqlite3.Connection:
    """The log open read-only (mode=ro): auditing never writes, and works on a read-only
    copy, in a folder the caller may not write, owned by someone else. A file that is not a
    covkb log is refused (NotALog) untouched."""
    try:
        return _opened(_uri(path, "mode=ro"))
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            raise
    # A WAL log whose -shm SQLite may not create here. With no write-ahead content beside
    # it the file alone is the log, read as a file nobody changes; else log and WAL are
    # read from a private copy, so that no committed row is missed.
    wal = Path(f"{path}-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        return _opened(_uri(path, "mode=ro&immutable=1"))
    return _private_copy(path, wal)


def _uri(path: Path, parameters: str) -> str:
    from urllib.parse import quote

    return f"file:{quote(str(path.absolute()))}?{parameters}"


def _opened(uri: str, factory=sqlite3.Connection) -> sqlite3.Connection:
    connection = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, factory=factory)
    try:
        _check_log(connection)
    except sqlite3.Error:
        connection.close()
        raise
    connection.row_factory = sqlite3.Row
    return connection


class _CopiedLog(sqlite3.Connection):
    """A connection to a private copy of a log, removed when the connection closes."""

    folder: Optional[str] = None

    def close(self) -> None:
        import shutil

        super().close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _private_copy(path: Path, wal: Path) -> sqlite3.Connection:
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="covkb-log-")
    try:
        copy = Path(folder) / "log.db"
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, f"{copy}-wal")
        connection = _opened(_uri(copy, "mode=ro"), _CopiedLog)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    connection.folder = folder
    return connection


def _check_log(connection: sqlite3.Connection) -> None:
    try:
        marked = connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        columns = tuple(row[1] for row in connection.execute("PRAGMA table_info(determinations)"))
    except sqlite3.DatabaseError as error:
        if isinstance(error, sqlite3.OperationalError) and \
                error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            raise  # a log this caller may not open so: open_read tries another way
        connection.close()
        raise NotALog(f"not a covkb decision log ({error})") from None
    if columns == COLUMNS:
        return
    connection.close()
    if marked and not columns:
        raise NotALog("a covkb decision log whose determinations table is gone: it was dropped or the file damaged",
                      damaged=True)
    raise NotALog("not a covkb decision log: it has no determinations table of covkb's")


def prepare(case: Case, version_requested: Optional[str], result, explanation,
            kb_sha256: str) -> dict:
    """A row's content, before it is timed and chained."""
    input_json = canonical(case)
    return {
        "case_id": case.case_id,
        "input_json": input_json,
        "input_sha256": hashlib.sha256(input_json.encode()).hexdigest(),
        "kb_sha256": kb_sha256,
        "covkb_version": __version__,
        "version_requested": version_requested,
        "policy_version": result.version,
        "decision": result.decision,
        "label": result.label,
        "criteria_json": canonical(result.criteria),
        "explanation_json": canonical(explanation),
    }


def append(connection: sqlite3.Connection, prepared: Iterable[dict]) -> int:
    """Record prepared rows in one transaction, chained after the last row; how many."""
    prepared = list(prepared)
    if not prepared:
        return 0
    connection.execute("BEGIN IMMEDIATE")
    try:
        last = connection.execute("SELECT row_hash FROM determinations ORDER BY id DESC LIMIT 1").fetchone()
        previous = last[0] if last else GENESIS
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        for content in prepared:
            row = {"logged_at": now, **content, "prev_hash": previous}
            row["row_hash"] = previous = row_hash(row)
            names = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            connection.execute(f"INSERT INTO determinations ({names}) VALUES ({marks})", list(row.values()))
        connection.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk does): the error to report is the
        # one that stopped the transaction, not the ROLLBACK's "no transaction is active"
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return len(prepared)


def rows(connection: sqlite3.Connection, case_id: Optional[str] = None, since: Optional[str] = None,
         until: Optional[str] = None, decision: Optional[str] = None,
         ident: Optional[int] = None, columns: str = "*",
         what_if: Optional[bool] = None) -> Iterator[sqlite3.Row]:
    """Rows in id order, each with its what_if mark; what_if False leaves what-ifs out,
    True keeps only them."""
    clauses, values = [], []
    if what_if is not None:
        clauses.append(f"version_requested IS {'NOT ' if what_if else ''}NULL")
    for column, op, value in (("case_id", "=", case_id), ("logged_at", ">=", since),
                              ("logged_at", "<", until), ("decision", "=", decision), ("id", "=", ident)):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            values.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    yield from connection.execute(f"SELECT {columns}, {WHAT_IF} FROM determinations{where} ORDER BY id", values)


def count(connection: sqlite3.Connection, ident: Optional[int] = None) -> int:
    where = "" if ident is None else " WHERE id = ?"
    return connection.execute(f"SELECT count(*) FROM determinations{where}",
                              () if ident is None else (ident,)).fetchone()[0]


@dataclass
class Verdict:
    ok: bool
    rows: int
    head: str
    problem: Optional[str] = None


def verify(connection: sqlite3.Connection, expect_head: Optional[str] = None,
           expect_rows: Optional[int] = None) -> Verdict:
    """Recompute the chain row by row; name the first row edited, inserted or deleted.

    A chain proves only that each row follows the one before it: rows cut from the end,
    an emptied table or a chain recomputed after an edit still verify. An anchor kept
    elsewhere (`head`: the row count and head hash) catches those: with expect_head and
    expect_rows, row number expect_rows must still carry hash expect_head.
    """
    cursor = connection.execute("SELECT * FROM determinations ORDER BY id")
    upcoming = (dict(row) for row in cursor)
    row = next(upcoming, None)
    count, before, previous, previous_id, anchored = 0, None, GENESIS, 0, None
    while row is not None:
        following = next(upcoming, None)
        count += 1
        if row_hash(row) != row["row_hash"]:
            return Verdict(False, count, previous,
                           f"row {row['id']} was edited: its content no longer matches its hash")
        if row["prev_hash"] != previous:
            if before is not None and row["prev_hash"] == before:
                problem = f"row {previous_id} was inserted: row {row['id']} follows the row before it"
            elif following is not None and following["prev_hash"] == previous:
                problem = f"row {row['id']} was inserted: row {following['id']} follows the row before it"
            elif row["id"] != previous_id + 1:
                problem = f"row(s) {previous_id + 1} to {row['id'] - 1} were deleted before row {row['id']}"
            else:
                problem = f"row {row['id']} does not follow row {previous_id}: a row between them was deleted or replaced"
            return Verdict(False, count, previous, problem)
        before, previous, previous_id = previous, row["row_hash"], row["id"]
        if count == expect_rows:
            anchored = previous
        row = following
    if expect_rows is not None:
        if count < expect_rows:
            return Verdict(False, count, previous, f"{expect_rows} rows were anchored but only {count} remain: "
                                                   "rows were cut from the end or the table emptied")
        if anchored != expect_head:
            return Verdict(False, count, previous, f"row {expect_rows} does not carry the anchored head "
                                                   f"{expect_head}: the chain was rewritten since")
    return Verdict(True, count, previous)


class _SafeCells:
    """A CSV writer whose text cells never start a spreadsheet formula: a cell beginning
    with = + - @ (or tab, carriage return) is written after a ' as spreadsheets expect."""

    def __init__(self, writer):
        self.writer = writer

    def writerow(self, cells) -> None:
        self.writer.writerow(["'" + cell if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r")
                              else cell for cell in cells])


class _Stored(msgspec.Struct):
    sentence: str = ""


class _Input(msgspec.Struct):
    date_of_service: Optional[str] = None


_sentence = msgspec.json.Decoder(_Stored)
_input = msgspec.json.Decoder(_Input)
# Added to each exported row beside the log's columns: the mark, the date that selected
# the version, and the decision in one sentence.
EXTRA = ("what_if", "date_of_service", "reason")


def safe_cells(writer) -> _SafeCells:
    return _SafeCells(writer)


def _extra(row) -> list:
    try:
        service = _input.decode(row["input_json"]).date_of_service
    except msgspec.DecodeError:  # a row an older covkb logged: shown as it is
        service = None
    try:
        reason = _sentence.decode(row["explanation_json"]).sentence
    except msgspec.DecodeError:
        reason = ""
    return [bool(row["what_if"]), service, reason]


def export(connection: sqlite3.Connection, format: str, sink) -> int:
    import csv
    import json

    count = 0
    plain = [c for c in COLUMNS if c not in ("criteria_json", "explanation_json")]
    if format == "csv":
        writer = _SafeCells(csv.writer(sink))
        writer.writerow(plain + ["statuses", *EXTRA])
        for row in rows(connection):
            statuses = "; ".join(f"{c['id']}={c['status']}" for c in json.loads(row["criteria_json"]))
            writer.writerow([row[c] for c in plain] + [statuses] + _extra(row))
            count += 1
    else:
        for row in rows(connection):
            record = {key: row[key] for key in COLUMNS}
            record.update(zip(EXTRA, _extra(row)))
            record["criteria"] = json.loads(record.pop("criteria_json"))
            record["explanation"] = json.loads(record.pop("explanation_json"))
            record["input"] = json.loads(record.pop("input_json"))
            sink.write(json.dumps(record) + "\n")
            count += 1
    return count
