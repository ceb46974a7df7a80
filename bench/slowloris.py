"""`covkb serve` against slow and idle clients: how long a new client, and GET /health,
wait for an answer while others hold connections open, on 127.0.0.1 with the default
limits (32 connections per client, 256 in all, 5 s for a request's head).

    python bench/slowloris.py [--idle 300] [--begun 256] [--patience 30]

Scenarios: `idle` connections from 127.0.0.1 that send nothing; `begun` connections from
8 addresses (127.0.0.2-9) that send a request line and stop; one client sending a request
a byte a second. For each, the status and seconds of a POST /v1/check from a fresh address
(retried until decided, at most --patience seconds) and of GET /health from 127.0.0.1.
Prints a table; nothing is asserted. Run with PYTHONPATH pointing at another checkout's
py/ to measure that one.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import sys
import time

BODY = json.dumps({"case_id": "BENCH", "date_of_service": "2025-11-12"}).encode()
POST = (b"POST /v1/check HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(BODY)
        + BODY)
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def start() -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen([sys.executable, "-m", "covkb", "serve", "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
    found = re.search(r":(\d+) ", server.stderr.readline())
    server.stderr.readline()
    return server, int(found.group(1))


def connect(source: str, port: int, timeout: float = 60) -> socket.socket:
    client = socket.socket()
    client.settimeout(timeout)
    client.bind((source, 0))
    client.connect(("127.0.0.1", port))
    return client


def ask(source: str, port: int, data: bytes, timeout: float = 60) -> int:
    """The status answered, 0 if the connection closed without one."""
    try:
        with connect(source, port, timeout) as client:
            client.sendall(data)
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
    except OSError:
        return 0
    return int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0


def timed(source: str, port: int, data: bytes, patience: float) -> tuple[int, float]:
    """Ask until answered 200 or patience runs out: the last status and the seconds taken."""
    started = time.monotonic()
    status = 0
    while time.monotonic() - started < patience:
        status = ask(source, port, data, timeout=patience)
        if status == 200:
            break
        time.sleep(0.1)
    return status, time.monotonic() - started


def scenario(name: str, hold, port: int, patience: float) -> None:
    held = hold()
    time.sleep(1.0)  # the held connections settled
    try:
        started = time.monotonic()  # /health first, while every held connection is still open
        health = (ask("127.0.0.1", port, HEALTH, timeout=patience), time.monotonic() - started)
        post = timed("127.0.0.50", port, POST, patience)
        print(f"{name:<44} {post[0]:>4} {post[1]:>8.2f} s   {health[0]:>4} {health[1]:>8.2f} s", flush=True)
    finally:
        for client in held:
            client.close()
    time.sleep(1.0)


def dribble(port: int, patience: float) -> None:
    started = time.monotonic()
    status = 0
    with connect("127.0.0.60", port) as client:
        client.settimeout(0.0)
        for byte in POST:
            if time.monotonic() - started > patience:
                break
            try:
                client.send(bytes([byte]))
                answer = client.recv(65536)
            except BlockingIOError:
                time.sleep(1.0)
                continue
            except OSError:
                break
            status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0
            break
    print(f"{'one byte a second: cut after':<44} {status:>4} {time.monotonic() - started:>8.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=300, help="idle connections from 127.0.0.1")
    parser.add_argument("--begun", type=int, default=256, help="begun requests from 127.0.0.2-9")
    parser.add_argument("--patience", type=float, default=30.0, help="seconds a measured client waits at most")
    options = parser.parse_args()
    server, port = start()
    try:
        print(f"{'scenario':<44} {'POST /v1/check':>15}   {'GET /health':>13}")
        scenario("none", lambda: [], port, options.patience)
        scenario(f"{options.idle} idle connections from one address",
                 lambda: [connect("127.0.0.1", port) for _ in range(options.idle)], port, options.patience)

        def begun() -> list[socket.socket]:
            held = [connect(f"127.0.0.{2 + n * 8 // options.begun}", port) for n in range(options.begun)]
            for client in held:
                try:
                    client.sendall(b"POST /v1/check HTTP/1.1\r\n")
                except OSError:
                    pass
            return held

        scenario(f"{options.begun} requests begun from 8 addresses", begun, port, options.patience)
        dribble(port, options.patience)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
