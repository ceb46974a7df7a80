"""`audit replay` and `audit report --replay-all` decide the log's stored inputs as batch
decides them (chunks on worker processes, the compiled engine for big logs) and say which
engine re-decided."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from covkb.surfaces import audit, batch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from make_cases import synthetic  # noqa: E402

ROWS = 240
CHANGED = (3, 77, 150, 239)  # ids whose logged decision is made to differ from what kb/ decides


def _covkb(*args: str, engine: str = "auto") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "covkb", *args], capture_output=True, text=True,
                          env={**os.environ, "COVKB_ENGINE": engine}, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("replay")
    cases = where / "cases.jsonl"
    rng = random.Random(31)
    cases.write_text("".join(json.dumps(synthetic(rng, i)) + "\n" for i in range(ROWS)))
    path = where / "log.db"
    done = _covkb("batch", str(cases), "--log", str(path), "-q", "-o", str(where / "out.jsonl"))
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(path) as connection:
        decisions = dict(connection.execute("SELECT id, decision FROM determinations"))
        for ident in CHANGED:  # a logged decision no kb/ would give this input: it differs now
            other = "pending" if decisions[ident] != "pending" else "covered"
            connection.execute("UPDATE determinations SET decision = ? WHERE id = ?", (other, ident))
    return path


@pytest.mark.parametrize("engine", [pytest.param("compiled", marks=pytest.mark.slow), "clingo"])
def test_replay_finds_exactly_the_rows_decided_differently_and_names_the_engine(log, engine):
    done = _covkb("audit", "replay", "--all", "--log", str(log), "--workers", "2", engine=engine)
    assert done.returncode == 1, done.stderr
    listed = [int(line.split()[0]) for line in done.stdout.splitlines()]
    assert listed == list(CHANGED)
    assert f"replayed {ROWS} determination(s)" in done.stderr
    assert f"by the {engine} engine: {len(CHANGED)} differ" in done.stderr


def test_replay_through_workers_gives_what_one_process_gives(log):
    reader = audit.open_read(log)
    try:
        one = [(row["id"], now.decision, kb) for row, now, _, kb in batch.replay(reader, workers=1, chunk=50)]
        two = [(row["id"], now.decision, kb) for row, now, _, kb in batch.replay(reader, workers=2, chunk=50)]
    finally:
        reader.close()
    assert one == two and [ident for ident, _, _ in one] == list(CHANGED)


def test_report_replay_all_says_the_engine(log, tmp_path):
    out = tmp_path / "report.html"
    done = _covkb("audit", "report", "--replay-all", "--log", str(log), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "replayed by the compiled engine" in done.stderr
    page = out.read_text()
    assert all(f"d{ident}" in page for ident in CHANGED)
