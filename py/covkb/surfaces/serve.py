"""covkb serve: the decisions of `check`, `explain` and `compare` over HTTP.

Handler threads read and validate requests; deciders take whatever requests are waiting
and ground them together in one clingo program, as a batch chunk is. With --workers 0
one decider thread decides in this process; with N > 0, N decider threads each hand
their requests to one of N worker processes (recycled, as batch recycles its workers,
because clingo keeps every symbol for the life of a process). With a decision log,
each decider appends its requests' determinations in one transaction before any of
them is answered, and a request's decision_id is its row's id.
"""

from __future__ import annotations

import ipaddress
import json
import queue
import re
import selectors
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from covkb import __version__
from covkb.input.case import MAX_CASE_BYTES, InvalidCase, from_object
from covkb.input.text import parse_json

# Requests one grounding decides at most: enough to drain any queue the clients can fill,
# few enough that the first of them is not kept waiting long.
MAX_BATCH = 256
# Connections over a limit wait at most this long, this many at once, for their request
# head: /health is answered, anything else refused with the limit it met.
GATE_SECONDS = 1.0
GATE_CONNECTIONS = 64
# With every connection taken, one idle this long (waiting for its next request) is closed
# to make room for a new one.
IDLE_GRACE = 0.5
# A request head: at most this many field lines, this many bytes in all.
MAX_FIELDS = 100
MAX_HEAD_BYTES = 65536
# What a 503 asks the client to wait before trying again.
RETRY_SECONDS = 1
# Batches a worker process decides before it is replaced.
BATCHES_PER_WORKER = 2000
DECIDE = {"/v1/check": "check", "/v1/explain": "explain", "/v1/compare": "compare"}
READ = ("/health", "/v1/versions", "/v1/criteria", "/v1/schema", "/v1/questionnaire", "/openapi.json")
QUERY = {"/v1/check": {"policy_version"}, "/v1/explain": {"policy_version"}, "/v1/compare": set(),
         "/v1/criteria": {"policy_version"}, "/v1/questionnaire": {"policy_version"}}
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Limits:
    """What one client, and all of them, may hold of the server (`covkb serve`'s options
    say the defaults)."""

    connections: int  # open connections in all
    per_client: int  # from one address (IPv6: one /64)
    header_seconds: float  # from idle to a whole request line and headers
    body_seconds: float  # from the headers to the whole body


class Refused(Exception):
    """A request answered with an HTTP error status and {"error": message}."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class NotAllowed(Refused):
    def __init__(self, message: str, allow: str, close: bool):
        super().__init__(405, message, close)
        self.allow = allow


# ---------------------------------------------------------------------------
# Deciding: runs on a decider thread, or in a worker process
# ---------------------------------------------------------------------------
def decide_requests(requests: list[tuple], log: bool, engine: Optional[str] = None) -> list[tuple[object, list[dict]]]:
    """Decide every (kind, case, version, sources, context, pas) in one grounding: for each,
    its JSON body (a PAS response Bundle dict when pas) and, with log, the decision-log rows to
    record (one per version decided). sources name the FHIR resource of each field."""
    from covkb.api import decide, versions
    from covkb.results.explain import comparison
    from covkb.results.render import as_json

    every = sorted(versions())
    asked, sources, own = [], [], []
    for kind, case, version, source, *_ in requests:
        wanted = every if kind == "compare" else [version]
        own.append(range(len(asked), len(asked) + len(wanted)))
        asked.extend((case, one) for one in wanted)
        sources.extend([source] * len(wanted))
    decided = decide(asked, explained=True, engine=engine, sources=sources)
    kb = None
    if log:
        from covkb.surfaces.audit import kb_hash, prepare

        kb = kb_hash()
    answers = []
    for (kind, case, version, _, context, pas), keys in zip(requests, own):
        mine = [decided[key] for key in keys]
        if kind == "check" and pas:
            from covkb.fhir.responses import pas_response

            body = pas_response(mine[0].result, context)
        elif kind == "check":
            body = as_json(mine[0].result)
        elif kind == "explain":
            body = as_json(mine[0].explanation)
        else:
            body = as_json(comparison(case.case_id, [one.explanation for one in mine]))
        rows = [prepare(case, one.version, one.result, one.explanation, kb) for one in mine] if log else []
        answers.append((body, rows))
    return answers


def _worker_start(engine: Optional[str]) -> None:
    # The server decides when to stop; the policy and the engine are loaded before the first request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from covkb.engine import choose, reference

    reference.policy()
    choose.prepare(MAX_BATCH, engine=engine)


def server_engine() -> Optional[str]:
    """A server lives long enough for the compiled engine to pay for itself: unless
    COVKB_ENGINE names another (None: the environment's then decides), kb/ is compiled
    once at start and decides every batch, however small."""
    from covkb.engine import choose

    return "compiled" if choose.engine_name() == "auto" else None


class Pending:
    """One request waiting for its decision."""

    __slots__ = ("kind", "case", "version", "sources", "context", "pas", "done", "status", "body",
                 "decision_id")

    def __init__(self, kind: str, case, version: Optional[str], sources: dict, context: Optional[dict],
                 pas: bool):
        self.kind, self.case, self.version = kind, case, version
        self.sources, self.context, self.pas = sources, context, pas
        self.done = threading.Event()
        self.status, self.body, self.decision_id = 500, "", None

    def answer(self, status: int, body: str, decision_id=None) -> None:
        self.status, self.body, self.decision_id = status, body, decision_id
        self.done.set()


_STOP = object()


class Decider:
    """Threads that take the waiting requests, decide them together, log, and answer."""

    def __init__(self, workers: int, log: Optional[Path], engine: Optional[str] = None):
        self.log = log
        self.engine = engine
        # requests in a row that could not be decided, and why the last one: /health
        self.failures, self.failure = 0, None
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.pool = None
        self.replacing = threading.Lock()
        self.workers = workers
        if workers > 0:
            self.pool = self._pool()
            self.pool.submit(decide_requests, [], False, engine).result()  # a worker up before the first request
        self.threads = [threading.Thread(target=self._run, name=f"covkb-decider-{n}")
                        for n in range(max(workers, 1))]
        for thread in self.threads:
            thread.start()

    def _pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # forkserver: workers fork from a process without this one's threads
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["covkb.surfaces.serve", "covkb.api", "covkb.results.explain", "covkb.surfaces.audit"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_start,
                                   initargs=(self.engine,), max_tasks_per_child=BATCHES_PER_WORKER)

    def submit(self, pending: Pending) -> None:
        self.queue.put(pending)

    def close(self) -> None:
        """Decide what was submitted, then stop."""
        self.queue.put(_STOP)
        for thread in self.threads:
            thread.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def _run(self) -> None:
        connection = None
        if self.log is not None:
            from covkb.surfaces import audit

            connection = audit.connect(self.log)
        try:
            stopping = False
            while not stopping:
                first = self.queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        more = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stopping = True
                        break
                    batch.append(more)
                try:
                    self._decide(batch, connection)
                except Exception as error:  # never leave a client waiting, never lose the decider
                    _log_line(f"could not answer: {type(error).__name__}: {error}")
                    self.failures, self.failure = self.failures + 1, f"{type(error).__name__}: {error}"[:300]
                    for pending in batch:
                        if not pending.done.is_set():
                            pending.answer(500, _error_body(f"could not decide: {type(error).__name__}"))
            self.queue.put(_STOP)  # for the next decider thread
        finally:
            if connection is not None:
                connection.close()

    def _answers(self, batch: list[Pending], log: bool) -> list[tuple[str, list[dict]]]:
        requests = [(p.kind, p.case, p.version, p.sources, p.context, p.pas) for p in batch]
        if self.pool is None:
            return decide_requests(requests, log, self.engine)
        from concurrent.futures.process import BrokenProcessPool

        pool = self.pool
        try:
            return pool.submit(decide_requests, requests, log, self.engine).result()
        except BrokenProcessPool:
            # a worker was lost: one new pool, and these requests decided again on it
            with self.replacing:
                if self.pool is pool:
                    self.pool = self._pool()
                    pool.shutdown(wait=False)
            return self.pool.submit(decide_requests, requests, log, self.engine).result()

    def _decide(self, batch: list[Pending], connection) -> None:
        try:
            answers = self._answers(batch, connection is not None)
        except Exception as error:
            if len(batch) > 1:  # one request must not fail the others: each alone
                for pending in batch:
                    self._decide([pending], connection)
                return
            _log_line(f"could not decide {batch[0].case.case_id!r}: {type(error).__name__}: {error}")
            self.failures, self.failure = self.failures + 1, f"{type(error).__name__}: {error}"[:300]
            batch[0].answer(500, _error_body(f"could not decide: {type(error).__name__}"))
            return
        self.failures = 0
        if connection is None:
            for pending, (body, _) in zip(batch, answers):
                pending.answer(200, body, uuid.uuid4().hex)
            return
        import sqlite3

        from covkb.surfaces import audit

        rows = [row for _, own in answers for row in own]
        try:
            audit.append(connection, rows)
            last = connection.execute("SELECT last_insert_rowid()").fetchone()[0]
        except (sqlite3.Error, OSError) as error:
            _log_line(f"decision log: {error}")
            for pending in batch:
                pending.answer(503, _error_body(f"the decision log could not record the decision ({error})"))
            return
        # one transaction: the rows of this batch are numbered consecutively, in order
        ident = last - len(rows) + 1
        for pending, (body, own) in zip(batch, answers):
            pending.answer(200, body, ident)
            ident += len(own)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------
def _error_body(message: str) -> str:
    return json.dumps({"error": message})


def _log_line(message: str) -> None:
    print(f"covkb serve: {message}", file=sys.stderr, flush=True)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            406: "Not Acceptable", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
            414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}

# RFC 9110 §5.6.2 token; a field value holds no control character but horizontal tab
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
# RFC 9112 §7.1: chunk-size is hexadecimal digits only (no 0x, no sign, no white space
# before them), then chunk extensions, then CRLF
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?\r\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"covkb/{__version__}"
    sys_version = ""
    server: "Server"

    def setup(self) -> None:
        # each read and write; the reaper bounds the head and the body in time, below this
        limits = self.server.limits
        self.timeout = max(limits.header_seconds, limits.body_seconds) + 1
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.expired = False
        self.linger = False
        self.phase = "head"

    def handle_one_request(self) -> None:
        server = self.server
        if not server.idle(self):
            self.close_connection = True
            return
        # from idle, the whole request head is due within header_seconds: a connection
        # that sends nothing is closed then, one that sends its head slowly is answered 408
        self.phase = "head"
        server.watch(self, server.limits.header_seconds)
        try:
            try:
                ready = self.rfile.peek(1)  # waits, idle, for the next request to begin
            except OSError:
                ready = b""
            finally:
                server.busy(self)
            if not ready:
                self.close_connection = True
                return
            super().handle_one_request()
        except OSError:  # the client went away, or took too long
            self.close_connection = True
        finally:
            server.unwatch(self)

    def log_message(self, format: str, *args) -> None:  # no access log
        pass

    # every error is JSON, whether stdlib's parser or a route raises it
    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        if self.expired:
            code, message = 408, self._late().message
        self._send(code, _error_body(message or _REASONS.get(code, "error")), close=True)

    def _late(self) -> Refused:
        limits = self.server.limits
        if self.phase == "head":
            return Refused(408, f"the request line and headers were not received within "
                                f"{limits.header_seconds:g} s", True)
        return Refused(408, f"the body was not received within {limits.body_seconds:g} s of the headers", True)

    # -- the request head, read strictly (RFC 9112): anything a proxy might read another
    # way is refused with 400, not guessed at
    def parse_request(self) -> bool:
        self.command, self.request_version, self.close_connection = None, "HTTP/1.1", True
        try:
            self._request_line(self.raw_requestline)
            self.headers = self._fields("header")
            self._framing()
        except Refused as refused:
            self.linger = True  # the client may still be sending: let it read the answer
            self.send_error(refused.status, refused.message)
            return False
        connection = self.headers.get("Connection", "").lower()
        self.close_connection = self.request_version == "HTTP/1.0"
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        expect = self.headers.get("Expect", "").lower()
        if expect == "100-continue" and self.request_version != "HTTP/1.0":
            return self.handle_expect_100()
        return True

    def _request_line(self, raw: bytes) -> None:
        if raw == b"\r\n":  # RFC 9112 §2.2: one empty line before a request is ignored
            raw = self.rfile.readline(65537)
        shown = raw[:80].decode("latin-1").rstrip("\r\n")
        if not raw.endswith(b"\r\n"):
            if self.expired or not raw.endswith(b"\n"):
                raise self._short(f"request line {shown!r}: it ended before its CRLF")
            raise Refused(400, f"request line {shown!r}: lines end in CRLF, not LF alone", True)
        words = raw[:-2].split(b" ")
        if len(words) == 2 and not words[1].startswith(b"HTTP/"):
            raise Refused(400, f"request line {shown!r}: HTTP/0.9 is not served; send "
                               "METHOD TARGET HTTP/1.1 and headers", True)
        if len(words) != 3 or not all(words):
            raise Refused(400, f"request line {shown!r}: expected METHOD TARGET HTTP/1.1, one space apart", True)
        method, target, version = words
        if not _TOKEN.fullmatch(method):
            raise Refused(400, f"request line {shown!r}: the method is no token", True)
        if any(byte <= 0x20 or byte >= 0x7f for byte in target):
            raise Refused(400, f"request line {shown!r}: the target holds white space or a control character", True)
        number = _VERSION.fullmatch(version)
        if not number:
            raise Refused(400, f"request line {shown!r}: expected HTTP/1.1 or HTTP/1.0 at its end", True)
        if number.group(1) != b"1":
            raise Refused(505, f"{version.decode()}: only HTTP/1.1 and HTTP/1.0 are served", True)
        self.command, self.path = method.decode("ascii"), target.decode("ascii")
        self.request_version = "HTTP/1.0" if number.group(2) == b"0" else "HTTP/1.1"

    def _fields(self, what: str) -> HTTPMessage:
        """Header (or trailer) field lines up to the empty line, each `name: value`."""
        fields, size = HTTPMessage(), 0
        while True:
            line = self.rfile.readline(MAX_HEAD_BYTES + 1)
            size += len(line)
            if size > MAX_HEAD_BYTES or len(fields) >= MAX_FIELDS and line != b"\r\n":
                raise Refused(431, f"the {what}s exceed {MAX_FIELDS} lines or {MAX_HEAD_BYTES} bytes", True)
            shown = line[:60].decode("latin-1").rstrip("\r\n")
            if not line.endswith(b"\r\n"):
                if self.expired or not line.endswith(b"\n"):
                    raise self._short(f"the {what}s ended before their empty line")
                raise Refused(400, f"{what} line {shown!r}: lines end in CRLF, not LF alone", True)
            if line == b"\r\n":
                return fields
            if line[:1] in (b" ", b"\t"):
                raise Refused(400, f"{what} line {shown!r}: a line folded onto the one before (obs-fold) "
                                   "is not accepted", True)
            name, colon, value = line[:-2].partition(b":")
            if not colon:
                raise Refused(400, f"{what} line {shown!r}: expected name: value", True)
            if name.rstrip(b" \t") != name:
                raise Refused(400, f"{what} {name.decode('latin-1').strip()!r}: white space between the name "
                                   "and its colon is not accepted", True)
            if not _TOKEN.fullmatch(name):
                raise Refused(400, f"{what} line {shown!r}: the field name is no token", True)
            value = value.strip(b" \t")
            if _CONTROL.search(value):
                raise Refused(400, f"{what} {name.decode()!r}: its value holds a control character", True)
            fields[name.decode("ascii")] = value.decode("latin-1")

    def _framing(self) -> None:
        """RFC 9112 §3.2 and §6.3: one Host; the body's length said one way only."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1 or (not hosts and self.request_version == "HTTP/1.1"):
            raise Refused(400, f"Host: an HTTP/1.1 request has exactly one (given {len(hosts)})", True)
        encoding = self.headers.get_all("Transfer-Encoding") or []
        if encoding and "Content-Length" in self.headers:
            raise Refused(400, "Transfer-Encoding and Content-Length together: the body's length is "
                               "ambiguous", True)
        if encoding and self.request_version == "HTTP/1.0":
            raise Refused(400, "Transfer-Encoding in an HTTP/1.0 request", True)

    def _send(self, status: int, body: str, close: bool = False, headers: tuple = (),
              kind: str = "application/json") -> None:
        data = body.encode()
        close = close or self.close_connection or self.server.closing
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                f"Server: {self.server_version}",
                f"Content-Type: {kind}",
                f"Content-Length: {len(data)}"]
        head.extend(f"{name}: {value}" for name, value in headers)
        if close:
            head.append("Connection: close")
            self.close_connection = True
        # headers and body in one write: one segment for a small answer
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)

    def _route(self, method: str) -> None:
        # the head is in: from here the body is due within body_seconds
        self.phase = "body"
        self.server.watch(self, self.server.limits.body_seconds)
        try:
            if self.expired:
                raise self._late()
            url = urlsplit(self.path)
            path = url.path
            if path in DECIDE:
                allowed = "POST"
            elif path in READ:
                allowed = "GET, HEAD"
            else:
                raise Refused(404, f"no such path {path!r}; see /openapi.json", self._unread())
            if method not in allowed.split(", "):
                raise NotAllowed(f"{method} {path}: use {allowed}", allowed, self._unread())
            query = self._query(path, url.query)
            kind = FHIR_JSON if path == "/v1/questionnaire" else "application/json"
            if method == "POST":
                status, body, headers, kind = self._decide(path, query)
            else:
                (status, body), headers = self.server.read_body(path, query), ()
            if method == "HEAD":
                self._send_head(status, body, kind)
            else:
                self._send(status, body, headers=headers, kind=kind)
        except Refused as refused:
            headers = (("Allow", refused.allow),) if isinstance(refused, NotAllowed) else ()
            self._send(refused.status, _error_body(refused.message), close=refused.close, headers=headers)
            self.linger = refused.close

    def finish(self) -> None:
        if self.linger:
            _drain(self.connection)
        super().finish()

    def _send_head(self, status: int, body: str, kind: str) -> None:
        self.wfile.write((f"HTTP/1.1 {status} {_REASONS[status]}\r\nServer: {self.server_version}\r\n"
                          f"Content-Type: {kind}\r\nContent-Length: {len(body.encode())}\r\n\r\n")
                         .encode("latin-1"))

    def _unread(self) -> bool:
        """Whether a body may remain unread on the connection: then it is closed after the answer."""
        return bool(self.headers.get("Content-Length", "0").strip() not in ("", "0")
                    or self.headers.get("Transfer-Encoding"))

    def _query(self, path: str, text: str) -> dict[str, str]:
        try:
            pairs = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=8)
        except ValueError:
            raise Refused(400, f"query {text[:80]!r}: expected name=value pairs", self._unread()) from None
        query = {}
        for name, values in pairs.items():
            if name not in QUERY.get(path, ()):
                known = ", ".join(sorted(QUERY.get(path, ()))) or "none"
                raise Refused(400, f"query parameter {name!r}: unknown here (known: {known})", self._unread())
            if len(values) > 1:
                raise Refused(400, f"query parameter {name!r}: given {len(values)} times", self._unread())
            query[name] = values[0]
        version = query.get("policy_version")
        if version is not None and version not in self.server.versions:
            raise Refused(400, f"policy_version = {version!r}: expected one of "
                               f"{', '.join(sorted(self.server.versions))}", self._unread())
        return query

    def _body(self) -> bytes:
        encoding = self.headers.get_all("Transfer-Encoding") or []
        if encoding:
            if [e.strip().lower() for e in encoding] != ["chunked"]:
                raise Refused(501, f"Transfer-Encoding = {', '.join(encoding)!r}: only chunked is understood", True)
            return self._chunked()
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise Refused(411, "Content-Length: required (or Transfer-Encoding: chunked)", True)
        if len(set(lengths)) > 1 or not lengths[0].strip().isdigit() or not lengths[0].strip().isascii():
            raise Refused(400, f"Content-Length = {', '.join(lengths)!r}: expected one non-negative integer", True)
        length = int(lengths[0])
        if length > MAX_CASE_BYTES:
            raise Refused(413, f"Content-Length = {length}: a case may hold at most {MAX_CASE_BYTES} bytes", True)
        data = self.rfile.read(length)
        if len(data) < length:
            raise self._short(f"the body ended after {len(data)} of {length} bytes")
        return data

    def _chunked(self) -> bytes:
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            size = _CHUNK_SIZE.fullmatch(line)
            if not size:
                if not line.endswith(b"\n") and (self.expired or len(line) < 1024):
                    raise self._short("the chunked body ended early")
                raise Refused(400, f"chunk size {line[:20]!r}: expected hexadecimal digits, then CRLF", True)
            size = int(size.group(1), 16)
            total += size
            if total > MAX_CASE_BYTES:
                raise Refused(413, f"the body exceeds {MAX_CASE_BYTES} bytes, the most a case may hold", True)
            if size == 0:
                self._fields("trailer")
                return b"".join(parts)
            data = self.rfile.read(size)
            if len(data) < size:
                raise self._short("the chunked body ended early")
            end = self.rfile.read(2)
            if end != b"\r\n":
                raise self._short("the chunked body ended early") if len(end) < 2 else \
                    Refused(400, f"chunk data: {size} bytes were announced, then {end!r} where CRLF ends them", True)
            parts.append(data)

    def _short(self, message: str) -> Refused:
        return self._late() if self.expired else Refused(400, message, True)

    def _decide(self, path: str, query: dict[str, str]) -> tuple[int, str, tuple, str]:
        kind = DECIDE[path]
        accept = self.headers.get("Accept", "")
        pas = kind == "check" and FHIR_JSON in accept
        if FHIR_JSON in accept and not pas and "json" not in accept.replace(FHIR_JSON, ""):
            raise Refused(406, f"Accept = {accept!r}: {path} answers application/json; "
                               f"{FHIR_JSON} (a PAS response Bundle) is answered by /v1/check", self._unread())
        try:
            raw = self._body()
        except TimeoutError:
            self.expired = True
            raise self._short("") from None
        self.server.unwatch(self)  # received whole: from here the server's time, not the client's
        if not raw.strip():
            raise Refused(400, "(case): empty body: expected a case as JSON")
        sources, context = {}, None
        try:
            raw = parse_json(raw)
            if isinstance(raw, dict) and "resourceType" in raw:
                from covkb.input import fhir as fhir_in

                read = fhir_in.case_from_fhir(raw)
                case, sources, context = read.case, read.named_sources(), read.context
            else:
                case = from_object(raw)
        except InvalidCase as error:
            raise Refused(400, error.message) from None
        except RecursionError:
            raise Refused(400, "(case): nested too deeply to be a case") from None
        pending = Pending(kind, case, query.get("policy_version"), sources, context, pas)
        self.server.decider.submit(pending)
        pending.done.wait()
        if pending.status != 200:
            retry = (("Retry-After", str(RETRY_SECONDS)),) if pending.status == 503 else ()
            return pending.status, pending.body, retry, "application/json"
        headers = (("Decision-Id", str(pending.decision_id)),)
        if pas:
            from covkb.fhir import codes as fhir_codes
            from covkb.input import fhir as fhir_in

            response = pending.body  # a PAS response Bundle, its ClaimResponse first
            response["entry"][0]["resource"]["identifier"].append(
                {"system": "urn:covkb:decision-id", "value": str(pending.decision_id)})
            return 200, fhir_codes.encode(response), headers, FHIR_JSON
        ident = json.dumps(pending.decision_id)
        return 200, pending.body[:-1] + f',"decision_id":{ident}}}', headers, "application/json"


for _method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
    setattr(Handler, f"do_{_method}", lambda self, method=_method: self._route(method))


def client_of(address: tuple) -> str:
    """The client a connection counts against: its IPv4 address, or its IPv6 /64 (one
    host's share of addresses)."""
    try:
        ip = ipaddress.ip_address(address[0].split("%")[0])
    except ValueError:
        return str(address[0])
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class Server(ThreadingMixIn, HTTPServer):
    """One thread per connection, within the connection limits; a reaper bounds the time a
    client takes to send a request's head and then its body; connections over a limit go
    to the gate."""

    daemon_threads = False  # server_close waits for the requests in flight
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], decider: Decider, limits: Limits, documents: "Documents"):
        self.decider = decider
        self.limits = limits
        self.documents = documents
        self.versions = documents.versions
        self.closing = False
        self._lock = threading.Lock()
        self._idle: dict[Handler, float] = {}  # waiting for a request to begin, since when
        self._counted: dict[socket.socket, str] = {}  # connections counted against the limits → client
        self._deadlines: dict[Handler, float] = {}
        self._open = 0
        self._clients: dict[str, int] = {}
        self.gate = Gate(self)  # before binding: a failed bind closes it
        super().__init__(address, Handler)
        threading.Thread(target=self._reap, name="covkb-reaper", daemon=True).start()

    def server_bind(self) -> None:
        # HTTPServer's would look the host's name up in DNS
        super(HTTPServer, self).server_bind()
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        client = client_of(client_address)
        with self._lock:
            if self._clients.get(client, 0) >= self.limits.per_client:
                refusal = (429, f"too many connections from {client} (at most {self.limits.per_client} "
                                "from one client): close one, or try again")
            elif self._open >= self.limits.connections and not self._evict():
                refusal = (503, f"too many open connections (at most {self.limits.connections}): try again")
            else:
                refusal = None
                self._count(request, client, 1)
        if refusal:
            self.gate.admit(request, *refusal)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._uncount(request)

    def shutdown_request(self, request) -> None:
        # counted out before the socket closes: a client that has seen the close finds its
        # connection no longer counted against the limits
        self._uncount(request)
        super().shutdown_request(request)

    def _uncount(self, request: socket.socket) -> None:
        with self._lock:
            client = self._counted.get(request)
            if client is not None:
                self._count(request, client, -1)

    def _count(self, request: socket.socket, client: str, change: int) -> None:
        if change > 0:
            self._counted[request] = client
        else:
            self._counted.pop(request, None)
        self._open += change
        self._clients[client] = self._clients.get(client, 0) + change
        if not self._clients[client]:
            del self._clients[client]

    def _evict(self) -> bool:
        """Make room by closing the connection idle longest, if one has been idle a while: an
        idle connection holds nothing a new one should wait for."""
        now = time.monotonic()
        idle = [(since, handler) for handler, since in self._idle.items() if now - since >= IDLE_GRACE]
        if not idle:
            return False
        _, handler = min(idle, key=lambda pair: pair[0])
        del self._idle[handler]
        self._count(handler.request, client_of(handler.client_address), -1)
        _cut(handler.connection)
        return True

    def server_close(self) -> None:
        super().server_close()
        self.gate.close()

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client gone is no news
            _log_line(f"{client_address[0]}: {type(error).__name__}: {error}")

    def read_body(self, path: str, query: dict[str, str]) -> tuple[int, str]:
        if path == "/health":
            return self.documents.health(self.decider)
        return 200, self.documents.body(path, query)

    # -- a connection is idle (cut on SIGTERM) or reading a request (bounded in time)
    def idle(self, handler: Handler) -> bool:
        with self._lock:
            if self.closing:
                return False
            self._idle[handler] = time.monotonic()
            return True

    def busy(self, handler: Handler) -> None:
        with self._lock:
            self._idle.pop(handler, None)

    def watch(self, handler: Handler, seconds: float) -> None:
        with self._lock:
            self._deadlines[handler] = time.monotonic() + seconds

    def unwatch(self, handler: Handler) -> None:
        with self._lock:
            self._deadlines.pop(handler, None)

    def _reap(self) -> None:
        while True:
            time.sleep(min(0.25, self.limits.header_seconds / 4, self.limits.body_seconds / 4))
            now = time.monotonic()
            with self._lock:
                late = [handler for handler, deadline in self._deadlines.items() if deadline < now]
                for handler in late:
                    del self._deadlines[handler]
                    handler.expired = True
                    _cut(handler.connection)

    def stop(self) -> None:
        """Stop accepting, close idle connections; requests in flight are still answered."""
        with self._lock:
            self.closing = True
            for handler in self._idle:
                _cut(handler.connection)
        self.shutdown()


class _Turned:
    """A connection at the gate: what it sent, the refusal it gets unless it asks for
    /health, and until when it is kept."""

    __slots__ = ("status", "message", "received", "deadline", "answered")

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        self.received = b""
        self.deadline = time.monotonic() + GATE_SECONDS
        self.answered = False


class Gate:
    """Connections over a limit, held by one thread: each has GATE_SECONDS to send its
    request head, then is answered (GET or HEAD /health as ever, anything else its
    refusal, 429 or 503 with Retry-After) and closed. At most GATE_CONNECTIONS wait at once:
    one more answers the longest waiting at once. So a client over its limit learns so
    as soon as it asks, and /health answers while the ordinary connections are taken."""

    def __init__(self, server: Server):
        self.server = server
        self.selector = selectors.DefaultSelector()
        self.arrived: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting: dict[socket.socket, _Turned] = {}
        self.wake, self._woken = socket.socketpair()
        self.wake.setblocking(False)  # the accepting thread never waits on the gate
        self._woken.setblocking(False)
        self.selector.register(self._woken, selectors.EVENT_READ)
        self.closed = False
        threading.Thread(target=self._run, name="covkb-gate", daemon=True).start()

    def admit(self, connection: socket.socket, status: int, message: str) -> None:
        self.arrived.put((connection, _Turned(status, message)))
        try:
            self.wake.send(b"\0")
        except OSError:  # woken already, many times over
            pass

    def close(self) -> None:
        self.closed = True
        self.admit(None, 0, "")

    def _run(self) -> None:
        while not self.closed:
            now = time.monotonic()
            soonest = min((turned.deadline for turned in self.waiting.values()), default=now + 60)
            for key, _ in self.selector.select(max(0.0, soonest - now)):
                if key.fileobj is self._woken:
                    self._take()
                elif key.fileobj in self.waiting:  # not answered and dropped since
                    self._guarded(self._read, key.fileobj)
            now = time.monotonic()
            for connection, turned in list(self.waiting.items()):
                if turned.deadline <= now:
                    self._guarded(self._answer if not turned.answered else self._drop, connection)
        for connection in list(self.waiting):
            self._drop(connection)

    def _guarded(self, step, connection: socket.socket) -> None:
        """One connection's step; whatever it raises costs that connection only (logged,
        closed), never the gate: every later client over a limit still gets its answer."""
        try:
            step(connection)
        except Exception as error:  # noqa: BLE001 - the gate thread must outlive any one client
            _log_line(f"gate: {type(error).__name__}: {error}")
            self._drop(connection)

    def _take(self) -> None:
        try:
            while self._woken.recv(4096):
                pass
        except OSError:
            pass
        while not self.arrived.empty():
            connection, turned = self.arrived.get()
            if connection is None:
                continue
            if len(self.waiting) >= GATE_CONNECTIONS:
                oldest = min(self.waiting, key=lambda one: self.waiting[one].deadline)
                self._answer(oldest) if not self.waiting[oldest].answered else self._drop(oldest)
            connection.setblocking(False)
            self.waiting[connection] = turned
            self.selector.register(connection, selectors.EVENT_READ)

    def _read(self, connection: socket.socket) -> None:
        turned = self.waiting[connection]
        try:
            data = connection.recv(8192)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client is gone, or has read its answer and closed
            self._drop(connection)
        elif not turned.answered:
            turned.received += data
            if b"\r\n\r\n" in turned.received or len(turned.received) >= 8192:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        turned = self.waiting[connection]
        line = turned.received.split(b"\r\n", 1)[0].split(b" ")
        status, headers, body = turned.status, f"Retry-After: {RETRY_SECONDS}\r\n", _error_body(turned.message)
        if len(line) == 3 and line[0] in (b"GET", b"HEAD") and urlsplit(line[1].decode("latin-1")).path == "/health":
            (status, body), headers = self.server.read_body("/health", {}), ""
        data = body.encode()
        head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nServer: covkb/{__version__}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{headers}"
                "Connection: close\r\n\r\n").encode("latin-1")
        try:  # a few hundred bytes: the socket's buffer takes them at once
            connection.send(head + (b"" if line[0] == b"HEAD" else data))
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(connection)
            return
        # what the client still sends is read and dropped a while, so that closing does not
        # reset the connection before the client has read its answer
        turned.answered = True
        turned.deadline = time.monotonic() + GATE_SECONDS

    def _drop(self, connection: socket.socket) -> None:
        self.waiting.pop(connection, None)
        try:
            self.selector.unregister(connection)
        except (KeyError, ValueError):
            pass
        connection.close()


def _drain(connection: socket.socket, seconds: float = 1.0) -> None:
    # Closing with unread input would reset the connection, and the client, still sending,
    # would lose the answer already written: end our side, then read what comes for a while.
    try:
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv(65536):
                break
    except OSError:
        pass


def _cut(connection: socket.socket) -> None:
    # reading ends (the handler sees the end of its input); an answer can still be written
    try:
        connection.shutdown(socket.SHUT_RD)
    except OSError:
        pass


# ---------------------------------------------------------------------------
# What GET answers: read from the knowledge base and the case schema once, at start
# ---------------------------------------------------------------------------
class Documents:
    def __init__(self, workers: int, choice=None):
        from covkb.engine import reference
        from covkb.surfaces.audit import kb_hash
        from covkb.results.result import iso_day

        policy = reference.policy()
        self.policy = policy
        self.versions = dict(policy.versions)
        self.questionnaires: dict[str, str] = {}
        self.static = {
            "/v1/versions": json.dumps({"policy": policy.id, "versions": [
                {"version": name, "from": iso_day(start), "to": None if end >= 99991231 else iso_day(end)}
                for name, (start, end) in sorted(policy.versions.items())]}),
            "/v1/schema": json.dumps(_case_schema()),
            "/openapi.json": json.dumps(openapi()),
        }

        self.health_fields = {
            "covkb": __version__, "policy": policy.id, "kb_sha256": kb_hash(),
            "deciders": f"{workers} process{'es' if workers > 1 else ''}" if workers else "1 thread",
            "engine": choice.engine if choice else None, "engine_reason": choice.why if choice else None,
            "kb_refused_by_compiler": choice.refused if choice else None}

    def health(self, decider: "Decider") -> tuple[int, str]:
        """200 and "ok" while requests are decided; 503 and "failing" (with the last
        error) once the last request could not be decided, so a supervisor restarts it."""
        failing = decider.failures > 0
        return (503 if failing else 200), json.dumps({
            "status": "failing" if failing else "ok", **self.health_fields,
            "failures_in_a_row": decider.failures, "last_failure": decider.failure if failing else None})

    def body(self, path: str, query: dict[str, str]) -> str:
        if path == "/v1/questionnaire":
            version = query.get("policy_version") or max(self.versions)
            if version not in self.questionnaires:
                from covkb.fhir import codes as fhir_codes
                from covkb.fhir import questionnaire as fhir_form

                self.questionnaires[version] = fhir_codes.encode(fhir_form.questionnaire(version))
            return self.questionnaires[version]
        if path == "/v1/criteria":
            only = query.get("policy_version")
            return json.dumps({"policy": self.policy.id, "criteria": {
                version: [{"id": ident, "text": text} for ident, text in rows]
                for version, rows in sorted(self.policy.criteria.items()) if only in (None, version)}})
        return self.static[path]


def _case_schema() -> dict:
    from covkb.input.case import case_schema

    return case_schema()


def openapi() -> dict:
    """The OpenAPI 3.1 document, its schemas written by msgspec from the structs covkb encodes."""
    import msgspec

    from covkb.input.case import Case, schema_hook
    from covkb.results.explain import Comparison, Explanation
    from covkb.results.result import Result

    (case, result, explanation, comparison), components = msgspec.json.schema_components(
        [Case, Result, Explanation, Comparison], schema_hook=schema_hook,
        ref_template="#/components/schemas/{name}")
    identified = {"decision_id": {
        "description": "The decision log's row id when the server keeps a log (compare: the first "
                       "of its rows, one per version, numbered consecutively); else a unique string.",
        "oneOf": [{"type": "integer"}, {"type": "string"}]}}
    components["Error"] = {"type": "object", "required": ["error"],
                           "properties": {"error": {"type": "string",
                                                    "description": "The field and value at fault, or what went wrong."}}}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    version = {"name": "policy_version", "in": "query", "required": False, "schema": {"type": "string"},
               "description": "Apply this policy version instead of the one in force on the date of service."}

    fhir_in = {"schema": {"type": "object", "required": ["resourceType"],
                          "description": "A FHIR R4 Bundle (PAS Claim bundle or collection) or a DTR "
                                         "QuestionnaireResponse; see docs/fhir.md."}}
    claim_response = {"schema": {"type": "object", "description": (
        "With Accept: application/fhir+json, a Da Vinci PAS response Bundle (as `check --format pas`): "
        "the ClaimResponse first, whose identifier urn:covkb:decision-id holds the decision_id, then "
        "the request's resources it references.")}}

    def decided(summary: str, schema: dict, forced: bool, pas: bool = False) -> dict:
        answers = {"application/json": {"schema": {"allOf": [schema, {"type": "object", "properties": identified}]}}}
        if pas:
            answers[FHIR_JSON] = claim_response
        return {"post": {
            "summary": summary,
            "parameters": [version] if forced else [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": case},
                                                          FHIR_JSON: fhir_in}},
            "responses": {
                "200": {"description": "Decided.", "headers": {"Decision-Id": {"schema": {"type": "string"}}},
                        "content": answers},
                "400": {"description": "Not a valid case, a bad query parameter, or a request head not "
                                       "read strictly as RFC 9112 says (obs-fold, white space before a colon, "
                                       "a chunk size that is not hexadecimal digits, Transfer-Encoding with "
                                       "Content-Length, no Host, HTTP/0.9).", **error},
                "411": {"description": "No Content-Length.", **error},
                "413": {"description": "The body is larger than a case may be.", **error},
                "406": {"description": "Accept names only FHIR JSON, which only /v1/check answers.", **error},
                "408": {"description": "The request line and headers, or then the body, were not received "
                                       "within their timeouts.", **error},
                "429": {"description": "Too many open connections from this client; Retry-After.", **error},
                "503": {"description": "The decision log could not record the decision, or too many open "
                                       "connections in all; Retry-After.", **error}}}}

    def read(summary: str, schema: dict, parameters: tuple = ()) -> dict:
        return {"get": {"summary": summary, "parameters": list(parameters),
                        "responses": {"200": {"description": "OK",
                                              "content": {"application/json": {"schema": schema}}}}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "covkb", "version": __version__,
                 "description": "Prior-authorization decisions for idecabtagene vicleucel (Abecma) "
                                "under coverage policy 2024041."},
        "paths": {
            "/v1/check": decided("Decide one case (as `covkb check --format json`, or `--format pas`).",
                                 result, True, pas=True),
            "/v1/explain": decided("Explain one decision (as `covkb explain --format json`).", explanation, True),
            "/v1/compare": decided("Decide one case under every version (as `covkb compare --format json`).",
                                   comparison, False),
            "/v1/versions": read("The policy versions and the dates they are in force.", {"type": "object"}),
            "/v1/criteria": read("Every criterion's id and the policy's words, per version.",
                                 {"type": "object"}, (version,)),
            "/v1/schema": read("The JSON Schema of a case.", {"type": "object"}),
            "/v1/questionnaire": {"get": {
                "summary": "The FHIR R4 Questionnaire (DTR) asking for every case field (as `covkb questionnaire`).",
                "parameters": [{**version, "description": "The policy version to ask for (default: the newest)."}],
                "responses": {"200": {"description": "OK", "content": {FHIR_JSON: {"schema": {"type": "object"}}}}}}},
            "/health": read("Whether the server decides (200 ok; 503 failing once the last request could not be "
                            "decided), its covkb version, knowledge base hash, and the engine deciding.",
                            {"type": "object"}),
            "/openapi.json": read("This document.", {"type": "object"}),
        },
        "components": {"schemas": components},
    }


# ---------------------------------------------------------------------------
def run(host: str, port: int, log: Optional[Path], workers: int, limits: Limits) -> None:
    """Serve until SIGTERM or SIGINT; then answer what is in flight, close the log, return."""
    from covkb.engine import choose

    engine = server_engine()
    choice = choose.choose(MAX_BATCH, engine=engine)
    documents = Documents(workers, choice)  # loads the policy here, before any decider runs
    decider = Decider(workers, log, engine)
    try:
        server = Server((host, port), decider, limits, documents)
    except BaseException:
        decider.close()
        raise

    def on_signal(signum, frame) -> None:
        threading.Thread(target=server.stop, name="covkb-stop").start()

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    deciders = f"{workers} decider process{'es' if workers > 1 else ''}" if workers else "one decider thread"
    _log_line(f"listening on http://{host}:{server.server_port} ({deciders}"
              f"{', logging to ' + str(log) if log else ''})")
    _log_line(choice.why)
    try:
        server.serve_forever(poll_interval=0.1)  # how soon a SIGTERM stops accepting
    finally:
        server.server_close()  # no more connections; waits for each handler to answer
        decider.close()  # decides what was submitted, closes the log
        for number, handler in previous.items():
            signal.signal(number, handler)
    _log_line("stopped")
