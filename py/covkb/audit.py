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
from decimal import Decimal
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Optional

import msgspec

from covkb import __version__
from covkb.case import Case
from covkb.decide import kb_dir, kb_files

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
def _plain_decimal(value):
    if isinstance(value, Decimal):  # covkb's exact-number subclasses
        return Decimal(value)
    raise NotImplementedError(type(value))


_canonical = msgspec.json.Encoder(decimal_format="number", order="sorted", enc_hook=_plain_decimal)


def canonical(value) -> str:
    return _canonical.encode(value).decode()


def kb_hash(directory: Optional[Path] = None) -> str:
    """SHA-256 over every kb/ file, name and content."""
    return _kb_hash(directory or kb_dir())


@lru_cache(maxsize=8)
def _kb_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in kb_files(directory):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def row_hash(row: dict) -> str:
    """The hash of a row's content and the hash of the row before it."""
    content = {k: row[k] for k in COLUMNS if k not in ("id", "row_hash")}
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(_SCHEMA)
    return connection


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
        connection.execute("ROLLBACK")
        raise
    return len(prepared)


def rows(connection: sqlite3.Connection, case_id: Optional[str] = None, since: Optional[str] = None,
         until: Optional[str] = None, decision: Optional[str] = None,
         ident: Optional[int] = None, columns: str = "*") -> Iterator[sqlite3.Row]:
    clauses, values = [], []
    for column, op, value in (("case_id", "=", case_id), ("logged_at", ">=", since),
                              ("logged_at", "<", until), ("decision", "=", decision), ("id", "=", ident)):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            values.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    yield from connection.execute(f"SELECT {columns} FROM determinations{where} ORDER BY id", values)


@dataclass
class Verdict:
    ok: bool
    rows: int
    head: str
    problem: Optional[str] = None


def verify(connection: sqlite3.Connection) -> Verdict:
    """Recompute the chain; name the first row edited, inserted or deleted.

    A row cut from the end leaves a shorter valid chain: compare `head` and `rows`
    with a copy kept elsewhere to notice that.
    """
    table = [dict(row) for row in connection.execute("SELECT * FROM determinations ORDER BY id")]
    before, previous, previous_id = None, GENESIS, 0
    for index, row in enumerate(table):
        if row_hash(row) != row["row_hash"]:
            return Verdict(False, len(table), previous,
                           f"row {row['id']} was edited: its content no longer matches its hash")
        if row["prev_hash"] != previous:
            following = table[index + 1] if index + 1 < len(table) else None
            if before is not None and row["prev_hash"] == before:
                problem = f"row {previous_id} was inserted: row {row['id']} follows the row before it"
            elif following is not None and following["prev_hash"] == previous:
                problem = f"row {row['id']} was inserted: row {following['id']} follows the row before it"
            elif row["id"] != previous_id + 1:
                problem = f"row(s) {previous_id + 1} to {row['id'] - 1} were deleted before row {row['id']}"
            else:
                problem = f"row {row['id']} does not follow row {previous_id}: a row between them was deleted or replaced"
            return Verdict(False, len(table), previous, problem)
        before, previous, previous_id = previous, row["row_hash"], row["id"]
    return Verdict(True, len(table), previous)


def replay(connection: sqlite3.Connection, ident: Optional[int] = None, chunk: int = 500):
    """Re-decide stored inputs with the current knowledge base: (row, now) for each that differs."""
    current = kb_hash()
    total = 0

    def stored():
        nonlocal total
        for row in rows(connection, ident=ident):
            total += 1
            yield dict(row)

    differ = [(row, now, kb_changed) for row, now, _, kb_changed in redecide(stored(), current, chunk)]
    return total, differ, current


def redecide(stored: Iterable[dict], current: str, chunk: int = 500):
    """Stream stored rows through the current knowledge base a chunk at a time; yield
    (row, result, explanation, kb_changed) for each decided differently now, in id order."""
    from itertools import islice

    from covkb.api import determine_explained
    from covkb.case import from_json

    stored = iter(stored)
    while part := list(islice(stored, chunk)):
        by_version: dict = {}
        for row in part:
            by_version.setdefault(row["version_requested"], []).append(row)
        differ = []
        for version, group in by_version.items():
            results = determine_explained([from_json(row["input_json"]) for row in group], version)
            for row, (result, explanation) in zip(group, results):
                now = (result.version, result.decision, result.label, canonical(result.criteria))
                before = (row["policy_version"], row["decision"], row["label"], row["criteria_json"])
                if now != before:
                    differ.append((row, result, explanation, row["kb_sha256"] != current))
        differ.sort(key=lambda item: item[0]["id"])
        yield from differ


def export(connection: sqlite3.Connection, format: str, sink) -> int:
    import csv
    import json

    count = 0
    if format == "csv":
        writer = csv.writer(sink)
        writer.writerow([c for c in COLUMNS if c not in ("criteria_json", "explanation_json")] + ["statuses"])
        for row in rows(connection):
            statuses = "; ".join(f"{c['id']}={c['status']}" for c in json.loads(row["criteria_json"]))
            writer.writerow([row[c] for c in COLUMNS if c not in ("criteria_json", "explanation_json")] + [statuses])
            count += 1
    else:
        for row in rows(connection):
            record = dict(row)
            record["criteria"] = json.loads(record.pop("criteria_json"))
            record["explanation"] = json.loads(record.pop("explanation_json"))
            record["input"] = json.loads(record.pop("input_json"))
            sink.write(json.dumps(record) + "\n")
            count += 1
    return count
