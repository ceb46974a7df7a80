"""`covkb serve` against hostile clients: request heads read strictly (RFC 9112), anything
a proxy might read another way refused with 400 at once; connections bounded per client and
in all, the head and the body timed separately, and /health answered while the ordinary
connections are taken."""

import json
import socket
import time
from contextlib import contextmanager

import pytest

from cases import case
from test_serve import Served, _read_all, _status

BODY = json.dumps(case()).encode()
HEAD = b"POST /v1/check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"


@pytest.fixture(scope="module")
def strict():
    # a head timeout far beyond the client's wait: a request the parser waited on instead of
    # refusing at once would time the client out, not be answered
    served = Served("--header-timeout", "120", "--timeout", "120")
    yield served
    assert served.stop() == 0


def _ask(served: Served, data: bytes) -> tuple[int, dict]:
    return _status(served.raw(data, wait=20))


def _chunked(*sizes: bytes) -> bytes:
    """BODY in len(sizes) chunks, the size line of each written as given (with {n} for its
    length in hexadecimal)."""
    cut = len(BODY) // len(sizes)
    pieces = [BODY[i * cut:(i + 1) * cut if i < len(sizes) - 1 else None] for i in range(len(sizes))]
    return b"".join(size.replace(b"{n}", b"%x" % len(piece)) + b"\r\n" + piece + b"\r\n"
                    for size, piece in zip(sizes, pieces)) + b"0\r\n\r\n"


SMUGGLING = {
    # RFC 9112 §7.1: chunk-size = 1*HEXDIG
    "chunk size 0x": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"0x{n}"), "chunk size"),
    "chunk size +": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"+{n}"), "chunk size"),
    "chunk size after a space": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b" {n}"), "chunk size"),
    "chunk size with an underscore": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"{n}", b"0_{n}"),
                                      "chunk size"),
    "chunk data longer than its size": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcdefg\r\n0\r\n\r\n",
                                        "chunk data"),
    # RFC 9112 §5.2: obs-fold is refused with 400
    "folded Content-Length": (HEAD + b"Content-Length:\r\n %d\r\n\r\n" % len(BODY) + BODY, "obs-fold"),
    "folded header": (HEAD + b"X-A: 1\r\n  2\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY, "obs-fold"),
    # RFC 9112 §5.1: white space between a field name and its colon is refused with 400
    "Transfer-Encoding space colon": (HEAD + b"Transfer-Encoding : chunked\r\nContent-Length: %d\r\n\r\n"
                                      % len(BODY) + BODY, "white space"),
    "Content-Length tab colon": (HEAD + b"Content-Length\t: %d\r\n\r\n" % len(BODY) + BODY, "white space"),
    # RFC 9112 §6.3: both framings given; a server may reject, and a proxy may read the other
    "Transfer-Encoding and Content-Length": (HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                                             + _chunked(b"{n}"), "Transfer-Encoding and Content-Length"),
    "Transfer-Encoding in HTTP/1.0": (b"POST /v1/check HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      + _chunked(b"{n}"), "HTTP/1.0"),
    # RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request
    "no Host": (b"POST /v1/check HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY, "Host"),
    "two Hosts": (HEAD + b"Host: y\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY, "Host"),
    # RFC 9112 §2.2, §3: a line ends in CRLF; a request line is three words one space apart
    "a header line ending in LF": (HEAD + b"Content-Length: %d\n\r\n" % len(BODY) + BODY, "CRLF"),
    "a request line ending in LF": (b"POST /v1/check HTTP/1.1\nHost: x\r\n\r\n", "CRLF"),
    "two spaces in the request line": (b"POST  /v1/check HTTP/1.1\r\nHost: x\r\n\r\n", "request line"),
    "a header without a colon": (HEAD + b"Content-Length %d\r\n\r\n" % len(BODY) + BODY, "name: value"),
    "a control character in a value": (HEAD + b"X-A: a\x00b\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
                                       "control character"),
    "a field name that is no token": (HEAD + b"X(A): 1\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY, "token"),
    "a folded trailer": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"{n}")[:-2]
                         + b"X-T: 1\r\n 2\r\n\r\n", "obs-fold"),
}


@pytest.mark.parametrize("name", SMUGGLING)
def test_a_head_a_proxy_might_read_another_way_is_400_at_once(strict, name):
    data, named = SMUGGLING[name]
    status, answer = _ask(strict, data)
    assert status == 400 and named in answer["error"], answer


def test_an_http_0_9_request_line_is_answered_at_once(strict):
    with socket.create_connection(("127.0.0.1", strict.port), timeout=20) as client:
        client.sendall(b"GET /health\r\n")  # and nothing after it: HTTP/0.9 has no headers
        status, answer = _status(_read_all(client))
    assert status == 400 and "HTTP/0.9" in answer["error"]


@pytest.mark.parametrize("data", [
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"{n};name=value", b"00{n}"),  # extension, leading 0
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"{n}")[:-2] + b"X-Trailer: 1\r\n\r\n",  # a trailer
    HEAD + b"Content-Length:   %d \t\r\n\r\n" % len(BODY) + BODY,  # white space around a value
    b"\r\n" + HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY,  # an empty line before it (RFC 9112 §2.2)
    b"POST /v1/check HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,  # HTTP/1.0 needs no Host
], ids=["chunk extension and leading zeros", "trailer", "optional white space", "empty line first", "HTTP/1.0"])
def test_what_rfc_9112_allows_is_still_read(strict, data):
    status, answer = _ask(strict, data)
    assert status == 200 and answer["decision"] == "covered", answer


def test_a_chunk_size_in_capitals_is_read(strict):
    data = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"{n}").upper().replace(BODY.upper(), BODY)
    status, answer = _ask(strict, data)
    assert status == 200


# ---------------------------------------------------------------------------
# Connection limits
# ---------------------------------------------------------------------------
def _from(source: str, port: int, timeout: float = 20) -> socket.socket:
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.bind((source, 0))
    except OSError:
        client.close()
        pytest.skip(f"cannot send from {source} here")
    client.connect(("127.0.0.1", port))
    return client


def _exchange(client: socket.socket, data: bytes) -> tuple[int, dict, bytes]:
    with client:
        client.sendall(data)
        response = _read_all(client)
    status, answer = _status(response) if b"\r\n\r\n" in response else (0, {})
    return status, answer, response.partition(b"\r\n\r\n")[0]


POST = HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@contextmanager
def _serving(*options: str):
    """A server, and a list for the connections the test holds open: closed, and the
    server stopped, at the end."""
    served, held = Served(*options), []
    try:
        yield served, held
    finally:
        for client in held:
            client.close()
        assert served.stop() == 0


def _until_answered(source: str, port: int, tries: int = 100) -> int:
    """POST from source until it is decided (closed connections take a moment to be
    counted out); the status last answered."""
    status = 0
    for _ in range(tries):
        status, _, _ = _exchange(_from(source, port), POST)
        if status == 200:
            break
        time.sleep(0.05)
    return status


PART = b"GET /health HTTP/1.1\r\n"  # a request begun and never finished: the connection is busy


def _busy(source: str, port: int) -> socket.socket:
    client = _from(source, port)
    client.sendall(PART)
    return client


def test_a_client_over_its_limit_is_answered_429_and_health_still_answers():
    with _serving("--max-per-client", "2", "--max-connections", "3", "--header-timeout", "120") as (served, held):
        held += [_busy("127.0.0.1", served.port) for _ in range(2)]  # this client's limit
        status, answer, head = _exchange(_from("127.0.0.1", served.port), POST)
        assert status == 429 and "at most 2" in answer["error"] and b"Retry-After:" in head
        status, answer, _ = _exchange(_from("127.0.0.1", served.port), HEALTH)
        assert status == 200 and answer["status"] == "ok"
        # another client is not held up by this one
        status, answer, _ = _exchange(_from("127.0.0.2", served.port), POST)
        assert status == 200 and answer["decision"] == "covered"
        held.append(_busy("127.0.0.2", served.port))  # three open: the limit in all
        status, answer, head = _exchange(_from("127.0.0.3", served.port), POST)
        assert status == 503 and "at most 3" in answer["error"] and b"Retry-After:" in head
        status, answer, _ = _exchange(_from("127.0.0.3", served.port), HEALTH)
        assert status == 200 and answer["status"] == "ok"
        for client in held:
            client.close()
        held.clear()
        assert _until_answered("127.0.0.1", served.port) == 200  # room again


def test_with_every_connection_taken_one_left_idle_makes_room_for_a_new_client():
    with _serving("--max-per-client", "8", "--max-connections", "2", "--header-timeout", "120") as (served, held):
        held += [_from("127.0.0.1", served.port) for _ in range(2)]  # idle: no request begun
        assert _until_answered("127.0.0.2", served.port) == 200
        assert _read_all(held[0]) == b""  # the one idle longest was closed for it


def test_a_connection_idle_past_the_head_timeout_is_closed_and_a_slow_head_is_408():
    with _serving("--header-timeout", "0.5", "--timeout", "120") as (served, _):
        # idle past the head timeout: closed without a word
        with _from("127.0.0.1", served.port) as idle:
            assert _read_all(idle) == b""
        # part of a head, then nothing: 408 naming the head
        with _from("127.0.0.1", served.port) as slow:
            slow.sendall(HEAD)
            status, answer = _status(_read_all(slow))
        assert status == 408 and "headers" in answer["error"] and "0.5 s" in answer["error"]


@pytest.mark.slow
def test_a_body_may_take_longer_than_the_head_timeout_within_its_own():
    with _serving("--header-timeout", "0.5", "--timeout", "120") as (served, _):
        with _from("127.0.0.1", served.port) as client:
            client.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY[:10])
            time.sleep(1.5)
            client.sendall(BODY[10:])
            status, answer = _status(_read_all(client))
        assert status == 200 and answer["decision"] == "covered"


def test_a_slow_body_is_408_naming_the_body():
    with _serving("--header-timeout", "120", "--timeout", "0.5") as (served, _):
        with _from("127.0.0.1", served.port) as slow:
            slow.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY[:10])
            status, answer = _status(_read_all(slow))
        assert status == 408 and "body" in answer["error"] and "0.5 s" in answer["error"]


# ---------------------------------------------------------------------------
# Under load (slow profile)
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_slowloris_from_one_address_holds_up_no_other_client():
    # the default limits: 32 per client, 256 in all
    with _serving("--header-timeout", "30") as (served, held):
        held += [_from("127.0.0.1", served.port) for _ in range(300)]
        for client in held[-5:]:  # the connections over the limit are answered, not left waiting
            client.sendall(b"GET /v1/versions HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _ = _status(_read_all(client))
            assert status == 429
        status, answer, _ = _exchange(_from("127.0.0.1", served.port), HEALTH)
        assert status == 200
        for source in ("127.0.0.2", "127.0.0.3"):
            status, answer, _ = _exchange(_from(source, served.port), POST)
            assert status == 200 and answer["decision"] == "covered"


@pytest.mark.slow
def test_heads_begun_from_many_addresses_fill_the_server_only_until_the_head_timeout():
    with _serving("--header-timeout", "2", "--max-per-client", "32") as (served, held):
        held += [_busy(f"127.0.0.{2 + n // 32}", served.port) for n in range(256)]  # 8 clients, 256 in all
        status, answer, _ = _exchange(_from("127.0.0.20", served.port), POST)
        assert status == 503
        status, answer, _ = _exchange(_from("127.0.0.20", served.port), HEALTH)
        assert status == 200
        for client in held:  # each is answered 408 once its head timeout passes
            assert _status(_read_all(client))[0] == 408
        assert _until_answered("127.0.0.20", served.port) == 200


@pytest.mark.slow
def test_idle_connections_from_many_addresses_make_room_for_new_clients():
    with _serving("--header-timeout", "120", "--max-per-client", "32") as (served, held):
        held += [_from(f"127.0.0.{2 + n // 32}", served.port) for n in range(256)]  # 8 clients, 256 in all
        for source in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):
            assert _until_answered(source, served.port) == 200


@pytest.mark.slow
def test_one_byte_a_second_is_cut_at_the_head_timeout():
    with _serving("--header-timeout", "2") as (served, _):
        with _from("127.0.0.1", served.port) as dribble:
            answered = b""
            for byte in POST[:40]:  # 40 s of bytes if nothing cut it
                try:
                    dribble.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.25)
                dribble.setblocking(False)
                try:
                    answered = dribble.recv(65536)
                except BlockingIOError:
                    pass
                finally:
                    dribble.settimeout(20)
                if answered:
                    break
            answered += _read_all(dribble)
        status, answer = _status(answered)
        assert status == 408 and "headers" in answer["error"]


def test_a_client_whose_answer_fails_costs_the_gate_nothing():
    # The gate answers every connection over a limit from one thread: an error while
    # answering one client closes that client and is logged, and the next is still answered.
    from covkb.surfaces import serve

    class Server:
        calls = 0

        def read_body(self, path, query):
            Server.calls += 1
            if Server.calls == 1:
                raise RuntimeError("the first /health fails")
            return 200, '{"status": "ok"}'

    gate = serve.Gate(Server())
    try:
        answers = []
        for _ in range(2):
            ours, theirs = socket.socketpair()
            theirs.setblocking(False)
            gate.admit(theirs, 429, "too many connections")
            ours.settimeout(30)
            ours.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answers.append(_read_all(ours))
            ours.close()
        assert answers[0] == b""  # closed, not left waiting
        assert answers[1].startswith(b"HTTP/1.1 200") and b'"ok"' in answers[1]
    finally:
        gate.close()
