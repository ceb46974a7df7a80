"""The decision log under `covkb serve`: a full disk answers 503 and records nothing
half-written, and the server logs again as soon as space returns; a log written by
`serve` and `batch --log` at once keeps every row of both on one chain."""

import http.client
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cases import case
from covkb.surfaces import audit
from covkb.surfaces import deciders, documents, serve
from test_serve import Served

ROOT = Path(__file__).parents[1]


class InProcess:
    """`covkb serve --log LOG` in this process, its log connection held so that a test can
    fill the disk under it (SQLite's max_page_count) and give the space back."""

    def __init__(self, log: Path, monkeypatch):
        real, self.held = audit.connect, []

        def connect(path: Path) -> sqlite3.Connection:
            real(path).close()  # a new log gets its schema, an old one is checked
            connection = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            self.held.append(connection)
            return connection

        monkeypatch.setattr(audit, "connect", connect)
        self.decider = deciders.Decider(0, log)
        limits = serve.Limits(connections=8, per_client=8, header_seconds=5, body_seconds=5)
        self.server = serve.Server(("127.0.0.1", 0), self.decider, limits, documents.Documents(0))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def post(self, path: str, data: dict):
        connection = http.client.HTTPConnection("127.0.0.1", self.server.server_port, timeout=30)
        try:
            connection.request("POST", path, json.dumps(data))
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read())
        finally:
            connection.close()

    def disk(self, pages: int) -> None:
        """Room for at most this many pages; the decider is idle between requests."""
        (connection,) = self.held
        connection.execute(f"PRAGMA max_page_count = {int(pages)}")

    def pages(self) -> int:
        (connection,) = self.held
        return connection.execute("PRAGMA page_count").fetchone()[0]

    def close(self) -> None:
        self.server.stop()
        self.thread.join(timeout=30)
        self.server.server_close()
        self.decider.close()


def _logged(log: Path) -> list[str]:
    reader = audit.open_read(log)
    try:
        assert audit.verify(reader).ok
        return [row["case_id"] for row in audit.rows(reader)]
    finally:
        reader.close()


def test_a_full_disk_answers_503_naming_it_logs_nothing_and_recovers_when_space_returns(tmp_path, monkeypatch):
    log = tmp_path / "audit.db"
    served = InProcess(log, monkeypatch)
    try:
        status, _, answer = served.post("/v1/check", case(case_id="BEFORE"))
        assert status == 200 and answer["decision_id"] == 1
        served.disk(served.pages())  # not one page more
        for path in ("/v1/check", "/v1/compare"):  # compare would record one row per version
            status, headers, answer = served.post(path, case(case_id="FULL"))
            assert status == 503 and list(answer) == ["error"], answer
            assert "decision log" in answer["error"] and "full" in answer["error"]
            assert "Retry-After" in headers
        assert _logged(log) == ["BEFORE"]  # nothing of the refused requests, and the chain intact
        served.disk(1_000_000)  # space returns
        status, _, answer = served.post("/v1/compare", case(case_id="AFTER"))
        assert status == 200 and answer["decision_id"] == 2
        status, _, answer = served.post("/v1/check", case(case_id="AFTER"))
        assert status == 200 and answer["decision_id"] == 4
    finally:
        served.close()
    assert _logged(log) == ["BEFORE", "AFTER", "AFTER", "AFTER"]


@pytest.mark.parametrize("batched, served_count, workers", [
    (12, 6, "1"),
    pytest.param(1000, 100, "2", marks=pytest.mark.slow),
])
def test_a_log_shared_by_serve_and_batch_keeps_every_row_of_both_on_one_chain(tmp_path, batched, served_count,
                                                                               workers):
    log = tmp_path / "audit.db"
    source = tmp_path / "cases.jsonl"
    source.write_text("".join(json.dumps(case(case_id=f"B{i}")) + "\n" for i in range(batched)))
    served = Served("--log", str(log))
    try:
        batch = subprocess.Popen([sys.executable, "-m", "covkb", "batch", str(source), "--log", str(log),
                                  "--chunk", "4", "--workers", workers, "-q"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        answered = []
        for i in range(served_count):
            status, _, answer = served.request("POST", "/v1/check", json.dumps(case(case_id=f"S{i}")))
            assert status == 200, answer
            answered.append(answer["decision_id"])
        assert batch.wait(timeout=600) == 0, batch.stderr.read()
        batch.stderr.close()
    finally:
        assert served.stop() == 0
    logged = _logged(log)
    assert sorted(logged) == sorted([f"B{i}" for i in range(batched)] + [f"S{i}" for i in range(served_count)])
    assert [logged[ident - 1] for ident in answered] == [f"S{i}" for i in range(served_count)]
    # batch appends a chunk in one transaction: its rows stay in order, whole chunks at a time
    assert [name for name in logged if name.startswith("B")] == [f"B{i}" for i in range(batched)]


def _refused_while_full(served: Served, log: Path, fill, free, named: str) -> None:
    """Decided and logged; fill() the disk: the next compare is 503 naming the log (and
    `named`) and records nothing; free() it: decided and logged again."""
    try:
        assert served.request("POST", "/v1/check", json.dumps(case(case_id="BEFORE")))[0] == 200
        fill()
        statuses = []
        for i in range(40):  # the log grows a page or more a request: it meets the limit soon
            status, _, answer = served.request("POST", "/v1/compare", json.dumps(case(case_id=f"F{i}")))
            statuses.append(status)
            if status == 503:
                assert "decision log" in answer["error"] and named in answer["error"], answer
                break
        assert statuses[-1] == 503 and set(statuses[:-1]) <= {200}
        free()
        assert served.request("POST", "/v1/check", json.dumps(case(case_id="AFTER")))[0] == 200
    finally:
        assert served.stop() == 0
    logged = _logged(log)
    assert logged[0] == "BEFORE" and logged[-1] == "AFTER"
    assert len(logged) == 2 + 2 * (len(statuses) - 1)  # each decided compare logged whole, the refused one not


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="prlimit is Linux's")
def test_a_file_size_limit_under_a_running_server_is_503_until_lifted(tmp_path):
    """A real write failure: the server's files may not grow (RLIMIT_FSIZE, set from outside
    with prlimit as a full disk would stop them), then may again."""
    import resource

    log = tmp_path / "audit.db"
    served = Served("--log", str(log))

    def limit(size: int) -> None:
        resource.prlimit(served.process.pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    _refused_while_full(served, log, lambda: limit(max(p.stat().st_size for p in tmp_path.glob("audit.db*"))),
                        lambda: limit(resource.RLIM_INFINITY), "")


@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MB tmpfs of its own (root and mount needed; skipped otherwise)."""
    import shutil

    place = tmp_path / "disk"
    place.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small filesystem needs root and mount")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(place)],
                      capture_output=True).returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        yield place
    finally:
        subprocess.run(["umount", "-l", str(place)], capture_output=True)


@pytest.mark.slow
def test_a_real_full_disk_under_a_running_server_is_503_until_space_returns(small_disk):
    log = small_disk / "audit.db"
    filler = small_disk / "filler"

    def fill() -> None:
        handle = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:  # every free block taken
            for _ in range(64):
                os.write(handle, b"\0" * 65536)
        except OSError:
            pass
        finally:
            os.close(handle)

    _refused_while_full(Served("--log", str(log)), log, fill, filler.unlink, "full")
