"""`covkb serve`: the answers of check, explain and compare over HTTP, hostile clients
refused one line at a time, every decision logged before it is answered, and SIGTERM."""

import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import IN_2025, case
from covkb.surfaces import audit
from covkb.input.case import MAX_CASE_BYTES, case_schema
from covkb.surfaces.cli import app

FACTS = Path(__file__).parents[1] / "facts"
EXAMPLES = sorted(FACTS.glob("*.json"))
TIMEOUT = 1.0  # --timeout of the servers started here: a client's time to send one request
runner = CliRunner()


class Served:
    """A `covkb serve` subprocess on a free port of 127.0.0.1."""

    def __init__(self, *options: str, engine: str = "clingo"):
        # clingo starts at once; the compiled engine spends seconds compiling kb/ first
        self.process = subprocess.Popen(
            [sys.executable, "-m", "covkb", "serve", "--port", "0", "--timeout", str(TIMEOUT),
             "--header-timeout", str(TIMEOUT), *options],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "COVKB_ENGINE": engine})
        line = self.process.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, line
        self.port = int(found.group(1))
        self.engine = self.process.stderr.readline()  # which engine decides

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body=None, headers=None):
        connection = self.connect()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
        finally:
            connection.close()

    def raw(self, data: bytes, wait: float = 10.0) -> bytes:
        """Send bytes as they are; what comes back before the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait) as sock:
            sock.sendall(data)
            return _read_all(sock)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.stderr.close()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _status(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "audit.db"
    served = Served("--log", str(log), engine="auto")  # as deployed: the compiled engine decides
    served.log = log
    yield served
    assert served.stop() == 0


def _cli(*args) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _without_id(answer: dict) -> dict:
    return {key: value for key, value in answer.items() if key != "decision_id"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_bundled_example_is_answered_as_check_explain_and_compare_answer_it(logged, example):
    body = example.read_bytes()
    for path, command in (("/v1/check", "check"), ("/v1/explain", "explain"), ("/v1/compare", "compare")):
        status, _, answer = logged.request("POST", path, body)
        assert status == 200, answer
        assert _without_id(answer) == _cli(command, example, "-f", "json"), path


FHIR_EXAMPLES = sorted((FACTS / "fhir").glob("*.json"))


@pytest.mark.parametrize("example", FHIR_EXAMPLES, ids=lambda p: p.name)
def test_a_fhir_body_is_read_as_check_and_explain_read_the_file(logged, example):
    body = example.read_bytes()
    for path, command in (("/v1/check", "check"), ("/v1/explain", "explain")):
        status, _, answer = logged.request("POST", path, body)
        assert status == 200, answer
        assert _without_id(answer) == _cli(command, example, "-f", "json"), path


@pytest.mark.parametrize("example", FHIR_EXAMPLES[:2] + EXAMPLES[:1], ids=lambda p: p.name)
def test_accept_fhir_json_answers_the_claim_response_of_format_pas(logged, example):
    status, headers, answer = logged.request("POST", "/v1/check", example.read_bytes(),
                                             {"Accept": "application/fhir+json"})
    assert status == 200 and headers["Content-Type"] == "application/fhir+json"
    expected = _cli("check", example, "--format", "pas")  # a PAS response Bundle, its ClaimResponse first
    first, wanted = answer["entry"][0]["resource"], expected["entry"][0]["resource"]
    ident = {"system": "urn:covkb:decision-id", "value": headers["Decision-Id"]}
    assert first.pop("identifier") == wanted.pop("identifier") + [ident]
    for one in (answer, expected):  # the time of answering
        one.pop("timestamp"), one["entry"][0]["resource"].pop("created")
    assert answer == expected
    with sqlite3.connect(logged.log) as connection:
        row = connection.execute("SELECT case_id FROM determinations WHERE id = ?",
                                 (int(headers["Decision-Id"]),)).fetchone()
    assert row == (_cli("check", example, "-f", "json")["case_id"],)


@pytest.mark.parametrize("query, option", [("", []), ("?policy_version=2024-08-21", ["--policy-version", "2024-08-21"])])
def test_questionnaire_is_the_one_the_command_prints(logged, query, option):
    status, headers, answer = logged.request("GET", "/v1/questionnaire" + query)
    assert status == 200 and headers["Content-Type"] == "application/fhir+json"
    assert answer == _cli("questionnaire", *option)


def test_bad_fhir_is_400_naming_the_resource_element(logged):
    status, _, answer = logged.request("POST", "/v1/check", json.dumps({"resourceType": "Patient"}))
    assert status == 400 and "resourceType" in answer["error"]


def test_only_check_answers_fhir_json(logged):
    status, _, answer = logged.request("POST", "/v1/explain", json.dumps(case()),
                                       {"Accept": "application/fhir+json"})
    assert status == 406 and "/v1/check" in answer["error"]


def test_policy_version_applies_that_version_as_the_forcing_option_does(logged):
    from covkb.api import check
    from covkb.input.case import from_object
    from covkb.results.render import as_json

    data = case(prior_allogeneic_transplant=True, date_of_service=IN_2025)
    status, _, answer = logged.request("POST", "/v1/check?policy_version=2024-08-21", json.dumps(data))
    assert status == 200
    assert _without_id(answer) == json.loads(as_json(check(from_object(data), "2024-08-21")))
    # reading 16: a prior allogeneic transplant fails 5b under 2024-08-21 only
    assert (answer["version"], answer["decision"]) == ("2024-08-21", "not_covered")
    status, _, plain = logged.request("POST", "/v1/check", json.dumps(data))
    assert (plain["version"], plain["decision"]) == ("2025-11-01", "covered")


@pytest.mark.parametrize("query, named", [
    ("policy_version=2023-01-01", "policy_version"),
    ("policy_version=2024-08-21&policy_version=2025-11-01", "policy_version"),
    ("version=2024-08-21", "version"),
])
def test_a_bad_query_parameter_is_refused_naming_it(logged, query, named):
    status, _, answer = logged.request("POST", f"/v1/check?{query}", json.dumps(case()))
    assert status == 400 and named in answer["error"]


def test_compare_takes_no_policy_version_it_decides_under_every_version(logged):
    status, _, answer = logged.request("POST", "/v1/compare?policy_version=2024-08-21", json.dumps(case()))
    assert status == 400 and "policy_version" in answer["error"]


def test_decision_id_is_the_log_row_written_before_the_answer(logged):
    data = case(case_id="LOGGED-1", lvef_percent=40)
    status, headers, answer = logged.request("POST", "/v1/check", json.dumps(data))
    assert status == 200 and headers["Decision-Id"] == str(answer["decision_id"])
    with sqlite3.connect(logged.log) as connection:
        row = connection.execute("SELECT case_id, decision, label, policy_version FROM determinations "
                                 "WHERE id = ?", (answer["decision_id"],)).fetchone()
    assert row == ("LOGGED-1", answer["decision"], answer["label"], answer["version"])


def test_compare_logs_one_row_per_version_numbered_from_its_decision_id(logged):
    status, _, answer = logged.request("POST", "/v1/compare", json.dumps(case(case_id="COMPARED-1")))
    assert status == 200
    with sqlite3.connect(logged.log) as connection:
        rows = connection.execute("SELECT case_id, policy_version, decision FROM determinations "
                                  "WHERE id >= ? ORDER BY id LIMIT 2", (answer["decision_id"],)).fetchall()
    assert rows == [("COMPARED-1", side["version"], side["decision"]) for side in answer["versions"]]


def test_no_decision_is_answered_that_the_log_could_not_record(tmp_path):
    log = tmp_path / "audit.db"
    served = Served("--log", str(log))
    try:
        assert served.request("POST", "/v1/check", json.dumps(case()))[0] == 200
        with sqlite3.connect(log) as connection:
            connection.execute("DROP TABLE determinations")
        status, _, answer = served.request("POST", "/v1/check", json.dumps(case()))
        assert status == 503 and "decision log" in answer["error"] and "decision" not in answer
    finally:
        assert served.stop() == 0


def test_concurrent_clients_each_get_their_own_case_decided(logged):
    examples = [json.loads(p.read_bytes()) for p in EXAMPLES]
    expected = {p.name: _cli("check", p, "-f", "json") for p in EXAMPLES}
    failures: list = []

    def client(number: int) -> None:
        connection = logged.connect()  # one connection, kept alive across requests
        for index, (path, data) in enumerate(zip(EXAMPLES, examples)):
            data = {**data, "case_id": f"C{number}-{index}"}
            connection.request("POST", "/v1/check", body=json.dumps(data))
            response = connection.getresponse()
            answer = json.loads(response.read())
            want = {**expected[path.name], "case_id": data["case_id"]}
            if _without_id(answer) != want:
                failures.append((number, path.name))
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize("body, named", [
    (b"{", "not valid JSON"),
    (b"", "empty body"),
    (b"[]", "expected an object"),
    (b"\xff\xfe", "not valid JSON"),
    (json.dumps(case(lvef_percent="high")).encode(), "lvef_percent"),
    (json.dumps(case(prescriber={"specialist": "yes"})).encode(), "prescriber.specialist"),
    (json.dumps(case(lvf=58)).encode(), "lvf"),
    (json.dumps({k: v for k, v in case().items() if k != "case_id"}).encode(), "case_id"),
    (json.dumps(case(date_of_service="2025-02-30")).encode(), "date_of_service"),
    (b'{"case_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "case"),
])
def test_a_body_that_is_no_valid_case_is_400_naming_the_field(logged, body, named):
    for path in ("/v1/check", "/v1/explain", "/v1/compare"):
        status, _, answer = logged.request("POST", path, body)
        assert status == 400 and list(answer) == ["error"] and named in answer["error"], (path, answer)
        assert "Traceback" not in answer["error"]


def test_a_body_over_the_case_limit_is_413_and_the_client_still_reads_it(logged):
    body = b'{"case_id": "' + b"x" * MAX_CASE_BYTES + b'"}'
    head = b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    status, answer = _status(logged.raw(head + body))
    assert status == 413 and str(MAX_CASE_BYTES) in answer["error"]


@pytest.mark.parametrize("length", ["1000000000000000", str(MAX_CASE_BYTES + 1)])
def test_a_content_length_over_the_limit_is_413_before_any_body_is_read(logged, length):
    status, answer = _status(logged.raw(f"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
                                        .encode()))
    # Answered without the body: had the server waited for it, the answer would be a 408.
    assert status == 413 and "Content-Length" in answer["error"]


def test_a_chunked_body_over_the_limit_is_413(logged):
    chunk = b"x" * 65536
    head = b"POST /v1/check HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_CASE_BYTES // len(chunk) + 2))
    status, answer = _status(logged.raw(head + body + b"0\r\n\r\n"))
    assert status == 413


def test_a_chunked_body_is_read_as_a_case(logged):
    data = json.dumps(case()).encode()
    # an iterable body without a length: http.client sends it chunked
    status, _, answer = logged.request("POST", "/v1/check", iter([data[:10], data[10:]]))
    assert status == 200 and answer["decision"] == "covered"


@pytest.mark.parametrize("headers, status, named", [
    ("Content-Length: -5\r\n", 400, "Content-Length"),
    ("Content-Length: five\r\n", 400, "Content-Length"),
    ("Content-Length: 2\r\nContent-Length: 3\r\n", 400, "Content-Length"),
    ("", 411, "Content-Length"),
    ("Transfer-Encoding: gzip\r\n", 501, "Transfer-Encoding"),
])
def test_a_missing_or_malformed_length_is_refused(logged, headers, status, named):
    got, answer = _status(logged.raw(f"POST /v1/check HTTP/1.1\r\nHost: x\r\n{headers}\r\n{{}}".encode()))
    assert got == status and named in answer["error"]


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v1/check", 405), ("PUT", "/v1/explain", 405), ("DELETE", "/v1/compare", 405),
    ("POST", "/health", 405), ("POST", "/v1/versions", 405),
    ("GET", "/v1/nothing", 404), ("GET", "/", 404), ("GET", "/v1/check/", 404),
])
def test_a_wrong_method_or_path_is_refused_as_json(logged, method, path, status):
    got, headers, answer = logged.request(method, path)
    assert got == status and "error" in answer
    if status == 405:
        assert headers["Allow"] in ("POST", "GET, HEAD")


def test_an_unknown_method_is_501_as_json(logged):
    status, answer = _status(logged.raw(b"BREW /v1/check HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 501 and "error" in answer


@pytest.mark.slow
def test_a_slow_client_gets_408_and_holds_up_no_one_else():
    # A server of its own with a 5 s timeout: long enough that another client's request is
    # answered before the slow one's 408 however busy the machine, so the order shows that
    # the slow client held no one up.
    served = Served("--timeout", "5", "--header-timeout", "5")
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=60) as slow:
            slow.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n{\"case_id\"")
            started = time.monotonic()
            status, _, answer = served.request("POST", "/v1/check", json.dumps(case()))
            answered = time.monotonic()
            got, error = _status(_read_all(slow))
            cut = time.monotonic()
    finally:
        served.stop()
    assert status == 200 and got == 408 and "error" in error
    assert answered < cut and cut - started >= 5 * 0.5  # the server waited for the body, then cut it


def test_a_client_that_never_finishes_its_headers_is_cut_off(logged):
    # Headers that keep trickling in do not reset the header timeout (TIMEOUT): the server
    # cuts the client off long before it has sent all 40 pieces (20 s of trickle).
    pieces = [b"POST /v1/check HTTP/1.1\r\n", b"Host: x\r\n"] + [b"X-%d: 1\r\n" % i for i in range(38)]
    sent = 0
    with socket.create_connection(("127.0.0.1", logged.port), timeout=30) as slow:
        for piece in pieces:
            try:
                slow.sendall(piece)
            except OSError:
                break
            sent += 1
            slow.settimeout(TIMEOUT / 2)
            try:
                if slow.recv(65536, socket.MSG_PEEK):
                    break  # answered (408) or closed
            except socket.timeout:
                continue
            except OSError:
                break
            break  # the server closed the connection
    assert sent < len(pieces)


def test_versions_are_the_ones_spec_names_with_their_dates(logged):
    status, _, answer = logged.request("GET", "/v1/versions")
    assert status == 200
    # reading 5: 2024-08-21 in force to 2025-10-31, 2025-11-01 from then on
    assert answer["versions"] == [{"version": "2024-08-21", "from": "2024-08-21", "to": "2025-10-31"},
                                  {"version": "2025-11-01", "from": "2025-11-01", "to": None}]


def test_criteria_are_spec_ids_in_policy_order(logged):
    status, _, answer = logged.request("GET", "/v1/criteria")
    ids = {version: [c["id"] for c in rows] for version, rows in answer["criteria"].items()}
    # reading 8
    assert ids == {"2024-08-21": "specialist center 1 2 3 3a 3b 3c 4 5a 5b 5c 5d 5e 5f 5g 6 7 8 9".split(),
                   "2025-11-01": "specialist center 1 2 3 3a 3b 3c 4 5a 5b 6 7 8 dose".split()}
    status, _, only = logged.request("GET", "/v1/criteria?policy_version=2025-11-01")
    assert list(only["criteria"]) == ["2025-11-01"]


def test_schema_and_openapi_are_the_case_schema(logged):
    status, _, schema = logged.request("GET", "/v1/schema")
    assert status == 200 and schema == json.loads(json.dumps(case_schema()))
    status, _, document = logged.request("GET", "/openapi.json")
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/v1/check", "/v1/explain", "/v1/compare", "/v1/versions",
                                      "/v1/criteria", "/v1/schema", "/v1/questionnaire", "/health",
                                      "/openapi.json"}
    components = document["components"]["schemas"]
    written = json.dumps(components["Case"]).replace("#/components/schemas/", "#/$defs/")
    assert json.loads(written) == schema["$defs"]["Case"]
    assert set(components["Result"]["required"]) >= {"case_id", "policy", "version", "decision", "label",
                                                     "criteria", "advisories", "missing"}


def test_the_compiled_engine_decides_unless_covkb_engine_says_otherwise(logged):
    assert "compiled engine decides" in logged.engine
    served = Served()
    try:
        assert "clingo decides" in served.engine and "COVKB_ENGINE=clingo" in served.engine
    finally:
        assert served.stop() == 0


def test_health_names_the_knowledge_base(logged):
    status, _, answer = logged.request("GET", "/health")
    assert status == 200 and answer["status"] == "ok" and answer["kb_sha256"] == audit.kb_hash()


def _refused_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_answers_the_request_in_flight_then_exits_0_with_the_log_intact(tmp_path):
    log = tmp_path / "audit.db"
    served = Served("--log", str(log))
    try:
        body = json.dumps(case(case_id="IN-FLIGHT")).encode()
        idle = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        busy = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        busy.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:20])
        time.sleep(0.2)
        served.process.send_signal(signal.SIGTERM)
        assert _refused_within(served.port, 10)  # no longer accepting
        assert _read_all(idle) == b""  # an idle connection is closed, not waited for
        busy.sendall(body[20:])
        status, answer = _status(_read_all(busy))
        assert status == 200 and answer["case_id"] == "IN-FLIGHT"
        assert served.process.wait(timeout=10) == 0
    finally:
        served.stop()
    connection = audit.connect(log)
    try:
        assert audit.verify(connection).ok
        assert [dict(r)["case_id"] for r in audit.rows(connection, ident=answer["decision_id"])] == ["IN-FLIGHT"]
    finally:
        connection.close()


def test_worker_processes_answer_as_check_does_and_stop_on_sigterm():
    served = Served("--workers", "2")
    try:
        for example in EXAMPLES[:4]:
            status, _, answer = served.request("POST", "/v1/check", example.read_bytes())
            assert status == 200 and _without_id(answer) == _cli("check", example, "-f", "json")
            assert isinstance(answer["decision_id"], str)  # no log: a unique id, not a row
    finally:
        assert served.stop() == 0


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.isdigit():
            parents[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


def test_a_lost_worker_process_is_replaced_and_the_request_still_decided():
    served = Served("--workers", "1")
    try:
        status, _, _ = served.request("POST", "/v1/check", json.dumps(case()))
        assert status == 200
        for pid in _descendants(served.process.pid):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        status, _, answer = served.request("POST", "/v1/check", json.dumps(case(case_id="AFTER")))
        assert status == 200 and answer["case_id"] == "AFTER" and answer["decision"] == "covered"
    finally:
        assert served.stop() == 0


def test_a_port_in_use_is_one_line_exit_3(logged):
    result = subprocess.run([sys.executable, "-m", "covkb", "serve", "--port", str(logged.port)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert f"127.0.0.1:{logged.port}" in result.stderr
