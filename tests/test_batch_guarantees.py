"""Batch guarantees (reading 3, §3): every line ends as a result or an error line, a run
that cannot finish exits 3 without leaving half-written output, and no result is
written for a determination the decision log did not record."""

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import case
from covkb.surfaces import batch
from covkb.surfaces.cli import app

ROOT = Path(__file__).parents[1]
runner = CliRunner()
DEEP = '{"case_id": "deep", "date_of_service": "2025-11-12", "member": ' + "[" * 1000 + "]" * 1000 + "}"


def covkb(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "covkb", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, **kwargs)


def good_lines(count: int, prefix: str = "G") -> list[str]:
    return [json.dumps(case(case_id=f"{prefix}{i}")) for i in range(count)]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_line_nested_1000_deep_costs_only_its_own_line(tmp_path, workers):
    lines = good_lines(10)
    lines.insert(4, DEEP)
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    done = covkb("batch", source, "--workers", workers, "--chunk", "3", "-q")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 11
    assert out[4]["line"] == 5 and out[4]["error"]
    assert [o["case_id"] for o in out if "decision" in o] == [f"G{i}" for i in range(10)]


def _decide_or_die(chunk, version, log):
    """As batch.decide_chunk, but the worker process dies on a line that says so."""
    first, blob = chunk
    if b'"die"' in blob:
        os._exit(9)
    return batch.decide_chunk(chunk, version, log)


def test_a_worker_that_dies_is_replaced_and_its_chunk_retried_line_by_line():
    lines = good_lines(12)
    lines[7] = json.dumps(case(case_id="die"))
    work = batch.chunks(io.BytesIO(("\n".join(lines) + "\n").encode()), 5)
    out = []
    for _, decided in batch._in_order(work, None, 2, 50, False, decide=_decide_or_die):
        out.extend(json.loads(line) for line in decided.text.splitlines())
    assert [o.get("case_id") for o in out] == [f"G{i}" for i in range(7)] + [None] + [f"G{i}" for i in range(8, 12)]
    assert out[7]["line"] == 8 and "worker process" in out[7]["error"]
    assert all(o.get("decision") == "covered" for i, o in enumerate(out) if i != 7)


def _first_chunk_last(chunk, version, log):
    """Every chunk answers at once but the first, which answers after the others."""
    first, blob = chunk
    if first == 1:  # line numbers count from 1
        time.sleep(1.5)
    return batch.Decided(f"{first}\n", 1, Counter(), 0, 0, [])


@pytest.mark.parametrize("chunks", [4, 5])
def test_a_batch_whose_first_chunk_answers_last_still_ends(chunks):
    # Two workers keep four chunks in hand; when the first answers after the other three,
    # all four are written at once and the next chunk must still be read (not waited for).
    import threading

    work = batch.chunks(io.BytesIO(b"{}\n" * chunks), 1)
    firsts: list = []

    def run():
        for _, decided in batch._in_order(work, None, 2, 50, False, decide=_first_chunk_last):
            firsts.append(int(decided.text))
        firsts.append("end")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert firsts == list(range(1, chunks + 1)) + ["end"], "the batch stopped, waiting on no worker"


def _pid_chunk(chunk, version, log):
    return batch.Decided(f"{os.getpid()}\n", 1, Counter(), 0, 0, [])


def test_one_worker_is_a_recycled_process_too():
    # clingo keeps every symbol for the life of a process: even one worker must be recycled.
    work = batch.chunks(io.BytesIO(b"{}\n" * 6), 1)
    pids = [int(decided.text) for _, decided in batch._in_order(work, None, 1, 2, False, decide=_pid_chunk)]
    assert len(pids) == 6 and os.getpid() not in pids
    assert len(set(pids)) == 3


class EndlessLine(io.RawIOBase):
    """A stream holding one line of `size` bytes, then a short line."""

    def __init__(self, size: int):
        self.left = size
        self.tail = b'\n{"case_id": "after"}\n'

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.left > 0:
            n = min(len(buffer), self.left)
            buffer[:n] = b"x" * n
            self.left -= n
            return n
        n = min(len(buffer), len(self.tail))
        buffer[:n], self.tail = self.tail[:n], self.tail[n:]
        return n


def test_a_200_megabyte_line_is_read_with_the_limit_not_held():
    from covkb.input.case import MAX_CASE_BYTES

    stream = io.BufferedReader(EndlessLine(200_000_000))
    got = list(batch.chunks(stream, 500))
    held = max(len(blob) for _, blob in got)
    assert held < 2 * MAX_CASE_BYTES  # the first limit + 1 bytes of the long line, and the next line
    lines = b"".join(blob for _, blob in got).split(b"\n")
    assert lines[1] == b'{"case_id": "after"}'
    decided = batch.decide_chunk(got[0])
    assert "at most 1000000 bytes" in json.loads(decided.text.splitlines()[0])["error"]


def test_out_equal_to_input_is_refused_and_the_input_kept(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(3)) + "\n")
    before = source.read_bytes()
    done = covkb("batch", source, "--out", source)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--out" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert source.read_bytes() == before


def test_a_run_that_refuses_to_start_leaves_the_old_out_as_it_was(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(3)) + "\n")
    out = tmp_path / "results.jsonl"
    out.write_text("earlier results\n")
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("not a database, and long enough to be read as one\n" * 20)
    done = covkb("batch", source, "--out", out, "--log", not_a_log)
    assert done.returncode == 2, done.stderr
    assert out.read_text() == "earlier results\n"


def test_out_is_replaced_whole_and_no_temporary_file_is_left(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(4)) + "\n")
    out = tmp_path / "results.jsonl"
    out.write_text("earlier results\n")
    assert covkb("batch", source, "--out", out, "-q").returncode == 0
    assert [json.loads(line)["case_id"] for line in out.read_text().splitlines()] == [f"G{i}" for i in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "results.jsonl"]


@pytest.mark.parametrize("where, code", [
    ("missing/results.jsonl", 2),   # a directory that does not exist: usage
    (".", 2),                       # a directory
    ("/dev/full", 3),               # the disk is full: could not finish
])
def test_out_that_cannot_be_written_is_one_line_and_exit_2_or_3(tmp_path, where, code):
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(2)) + "\n")
    out = where if where.startswith("/") else tmp_path / where
    done = covkb("batch", source, "--out", out)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_full_disk_under_the_log_exits_3_and_no_result_is_written_unlogged(tmp_path, monkeypatch):
    from covkb.surfaces import audit

    real, calls = audit.append, []

    def append(connection, prepared):
        calls.append(1)
        if len(calls) > 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(connection, prepared)

    monkeypatch.setattr(audit, "append", append)
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(9)) + "\n")
    log = tmp_path / "log.db"
    done = runner.invoke(app, ["batch", str(source), "--log", str(log), "--chunk", "3", "--workers", "1", "-q"])
    assert done.exit_code == 3, done.output
    printed = [json.loads(line)["case_id"] for line in done.stdout.splitlines() if line.startswith("{")]
    logged = [row[0] for row in sqlite3.connect(log).execute("SELECT case_id FROM determinations ORDER BY id")]
    assert printed == logged == ["G0", "G1", "G2"]
    assert "disk is full" in done.output


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker processes from /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_batch_leaves_no_worker_behind_and_no_traceback(tmp_path, how):
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(4000)) + "\n")
    process = subprocess.Popen([sys.executable, "-m", "covkb", "batch", str(source), "--workers", "2",
                                "--chunk", "50", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.readline()  # deciding has begun
    workers = _children(process.pid)
    assert workers
    process.send_signal(how)
    process.stdout.close()  # a reader that goes away as well
    process.wait(timeout=60)
    # A bound, not a speed: the workers go as soon as they see their parent gone, which a
    # busy machine may take seconds to let them do.
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)
    stderr = process.stderr.read().decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
    if how == signal.SIGTERM:
        assert process.returncode == 3 and len(stderr.strip().splitlines()) == 1


def test_sigterm_leaves_no_half_written_out_and_the_old_one_in_place(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(20000)) + "\n")  # far more than 0.5 s of work
    out = tmp_path / "results.jsonl"
    out.write_text("earlier results\n")
    process = subprocess.Popen([sys.executable, "-m", "covkb", "batch", str(source), "--out", str(out),
                                "--workers", "2", "--chunk", "50", "-q"], stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".part") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # some results written to the temporary file
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 3
    assert out.read_text() == "earlier results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "results.jsonl"]
    assert "Traceback" not in process.stderr.read().decode()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("chattr"), reason="needs chattr as root")
def test_out_in_a_directory_that_cannot_be_written_is_exit_3(tmp_path):
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join(good_lines(2)) + "\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)]).returncode != 0:
        pytest.skip("chattr +i not supported here")
    try:
        done = covkb("batch", source, "--out", locked / "results.jsonl")
    finally:
        subprocess.run(["chattr", "-i", str(locked)])
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and list(locked.iterdir()) == []
