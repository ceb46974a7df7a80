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
from covkb.surfaces.deciders import MAX_BATCH, Decider, Pending, error_body, log_line, server_engine
from covkb.surfaces.documents import FHIR_JSON, Documents

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
DECIDE = {"/v1/check": "check", "/v1/explain": "explain", "/v1/compare": "compare"}
READ = ("/health", "/v1/versions", "/v1/criteria", "/v1/schema", "/v1/questionnaire", "/openapi.json")
QUERY = {"/v1/check": {"policy_version"}, "/v1/explain": {"policy_version"}, "/v1/compare": set(),
         "/v1/criteria": {"policy_version"}, "/v1/questionnaire": {"policy_version"}}


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
# HTTP
# ---------------------------------------------------------------------------
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
        self._send(code, error_body(message or _REASONS.get(code, "error")), close=True)

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
            self._send(refused.status, error_body(refused.message), close=refused.close, headers=headers)
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
                from covkb.fhir import reading as fhir_in

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
            from covkb.fhir import reading as fhir_in

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
            log_line(f"{client_address[0]}: {type(error).__name__}: {error}")

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
            log_line(f"gate: {type(error).__name__}: {error}")
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
        status, headers, body = turned.status, f"Retry-After: {RETRY_SECONDS}\r\n", error_body(turned.message)
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
    log_line(f"listening on http://{host}:{server.server_port} ({deciders}"
              f"{', logging to ' + str(log) if log else ''})")
    log_line(choice.why)
    try:
        server.serve_forever(poll_interval=0.1)  # how soon a SIGTERM stops accepting
    finally:
        server.server_close()  # no more connections; waits for each handler to answer
        decider.close()  # decides what was submitted, closes the log
        for number, handler in previous.items():
            signal.signal(number, handler)
    log_line("stopped")
