"""The decision log: recorded, replayable, tamper-evident."""

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cases import case

ROOT = Path(__file__).parents[1]
FACTS = ROOT / "facts"


def covkb(*args, env=None, check=False):
    return subprocess.run([sys.executable, "-m", "covkb", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, check=check)


def cases_file(path: Path, count: int, prefix: str = "C") -> Path:
    path.write_text("".join(json.dumps(case(case_id=f"{prefix}{i}", organ_function_adequate=i % 3 != 0)) + "\n"
                            for i in range(count)))
    return path


@pytest.fixture(scope="module")
def pristine_log(tmp_path_factory):
    """One log of 12 batch determinations, written once by a real `covkb batch --log`."""
    where = tmp_path_factory.mktemp("log")
    path = where / "log.db"
    covkb("batch", cases_file(where / "in.jsonl", 12), "--out", where / "out.jsonl",
          "--log", path, "--chunk", "5", check=True)
    return path


@pytest.fixture()
def log(pristine_log, tmp_path):
    """A copy of that log for each test to read, edit or break on its own."""
    path = tmp_path / "log.db"
    shutil.copyfile(pristine_log, path)
    return path


def test_every_determination_is_recorded_with_its_input_and_hashes(log, tmp_path):
    connection = sqlite3.connect(log)
    connection.row_factory = sqlite3.Row
    rows = [dict(r) for r in connection.execute("SELECT * FROM determinations ORDER BY id")]
    assert [r["case_id"] for r in rows] == [f"C{i}" for i in range(12)]
    assert [r["decision"] for r in rows] == ["not_covered" if i % 3 == 0 else "covered" for i in range(12)]
    first = rows[0]
    assert hashlib.sha256(first["input_json"].encode()).hexdigest() == first["input_sha256"]
    assert len(first["kb_sha256"]) == 64 and first["policy_version"] == "2025-11-01"
    assert {c["id"]: c["status"] for c in json.loads(first["criteria_json"])}["6"] == "not_met"


def test_check_logs_too_and_the_env_variable_names_the_log(tmp_path):
    path = tmp_path / "env.db"
    covkb("check", FACTS / "covered-2025.json", env={"COVKB_LOG": str(path)}, check=True)
    assert "PA-2025-0001" in covkb("audit", "list", "--log", path).stdout


def test_an_intact_log_verifies(log):
    result = covkb("audit", "verify", "--log", log)
    assert result.returncode == 0 and "intact: 12 rows" in result.stdout


def test_an_edited_decision_is_caught(log):
    with sqlite3.connect(log) as connection:
        connection.execute("UPDATE determinations SET decision = 'covered' WHERE id = 4")
    result = covkb("audit", "verify", "--log", log)
    assert result.returncode == 1 and "row 4 was edited" in result.stdout


def test_a_deleted_row_is_caught(log):
    with sqlite3.connect(log) as connection:
        connection.execute("DELETE FROM determinations WHERE id = 6")
    result = covkb("audit", "verify", "--log", log)
    assert result.returncode == 1 and "row(s) 6 to 6 were deleted before row 7" in result.stdout


def test_an_inserted_row_is_caught(log):
    with sqlite3.connect(log) as connection:
        connection.row_factory = sqlite3.Row
        row = dict(connection.execute("SELECT * FROM determinations WHERE id = 3").fetchone())
        connection.execute("UPDATE determinations SET id = id + 100 WHERE id > 3")
        connection.execute("UPDATE determinations SET id = id - 99 WHERE id > 100")
        row.update(id=4, case_id="FORGED", decision="covered")
        from covkb.surfaces.audit import row_hash
        row["prev_hash"] = row["row_hash"]
        row["row_hash"] = row_hash(row)   # a forger who knows the hash rule
        connection.execute(f"INSERT INTO determinations ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           list(row.values()))
    result = covkb("audit", "verify", "--log", log)
    assert result.returncode == 1 and "row 4 was inserted" in result.stdout


def test_replay_with_the_same_kb_finds_nothing(log):
    result = covkb("audit", "replay", "--log", log)
    assert result.returncode == 0 and "0 differ" in result.stderr


def test_replay_after_a_kb_change_reports_exactly_the_changed_determinations(log, tmp_path):
    copy = tmp_path / "kb"
    shutil.copytree(ROOT / "kb", copy)
    version = copy / "v2025-11-01.lp"
    # 6 read the other way round: adequate organ function now fails it.
    version.write_text(version.read_text().replace(
        'must_be("2025-11-01","6","organ_function_adequate",true).',
        'must_be("2025-11-01","6","organ_function_adequate",false).'))
    result = covkb("audit", "replay", "--log", log, env={"COVKB_KB": str(copy)})
    assert result.returncode == 1
    changed = [line.split()[1].rstrip(":") for line in result.stdout.splitlines()]
    assert changed == [f"C{i}" for i in range(12)]  # every case's criterion 6 flips
    assert all("the knowledge base changed since" in line for line in result.stdout.splitlines())
    only_one = covkb("audit", "replay", "2", "--log", log, env={"COVKB_KB": str(copy)})
    assert len(only_one.stdout.splitlines()) == 1


def test_two_batches_logging_at_once_lose_no_row(tmp_path):
    path = tmp_path / "shared.db"
    jobs = [subprocess.Popen([sys.executable, "-m", "covkb", "batch", str(cases_file(tmp_path / f"{p}.jsonl", 300, p)),
                              "--out", str(tmp_path / f"{p}.out"), "--log", str(path), "--chunk", "20",
                              "--workers", "1", "--quiet"], cwd=ROOT) for p in ("A", "B")]
    assert [job.wait() for job in jobs] == [0, 0]
    connection = sqlite3.connect(path)
    ids = [r[0] for r in connection.execute("SELECT case_id FROM determinations")]
    assert sorted(ids) == sorted([f"A{i}" for i in range(300)] + [f"B{i}" for i in range(300)])
    assert "intact: 600 rows" in covkb("audit", "verify", "--log", path).stdout


def test_a_batch_killed_midway_leaves_a_log_that_verifies(tmp_path):
    path = tmp_path / "killed.db"
    job = subprocess.Popen([sys.executable, "-m", "covkb", "batch", str(cases_file(tmp_path / "big.jsonl", 4000)),
                            "--out", str(tmp_path / "big.out"), "--log", str(path), "--chunk", "50",
                            "--workers", "1", "--quiet"], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            if sqlite3.connect(path).execute("SELECT count(*) FROM determinations").fetchone()[0] >= 100:
                break
        except sqlite3.Error:
            continue
    job.send_signal(signal.SIGKILL)
    job.wait()
    result = covkb("audit", "verify", "--log", path)
    assert result.returncode == 0, result.stdout
    rows = int(result.stdout.split()[1])
    assert 100 <= rows < 4000 and rows % 50 == 0


def test_show_renders_the_stored_explanation(log):
    out = covkb("audit", "show", "1", "--log", log).stdout
    assert "determination 1" in out and "not covered: " in out and "(criterion 6)" in out


def test_list_filters_and_export(log, tmp_path):
    listed = covkb("audit", "list", "--log", log, "--decision", "not_covered").stdout.splitlines()
    assert len(listed) == 4
    assert len(covkb("audit", "list", "--log", log, "--case-id", "C5").stdout.splitlines()) == 1
    csv_text = covkb("audit", "export", "--log", log, "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("id,logged_at,case_id")
    assert len(csv_text.splitlines()) == 13
    lines = covkb("audit", "export", "--log", log, "--format", "jsonl").stdout.splitlines()
    assert json.loads(lines[0])["input"]["case_id"] == "C0"


def test_a_file_that_is_no_log_is_refused(tmp_path):
    path = tmp_path / "not.db"
    path.write_text("hello, not sqlite " * 100)
    result = covkb("audit", "verify", "--log", path)
    assert result.returncode == 2 and "not a covkb decision log" in result.stderr


def test_processes_opening_one_new_log_at_once_all_find_it_a_log(tmp_path):
    # Two batches started together on a log that does not exist yet: neither may find the
    # other's half-made log and refuse it as "not a covkb decision log".
    import threading

    from covkb.surfaces import audit

    for attempt in range(20):
        path = tmp_path / f"new-{attempt}.db"
        start = threading.Barrier(8)
        failures: list = []

        def open_it():
            start.wait()
            try:
                audit.connect(path).close()
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(error))

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
    assert "intact: 0 rows" in covkb("audit", "verify", "--log", tmp_path / "new-0.db").stdout
