"""`covkb serve` under load: requests/s and p50/p99 latency of POST /v1/check for 1 and 8
concurrent clients on 127.0.0.1, each client one kept-alive connection sending seeded
synthetic cases (bench/make_cases.py) one after another.

    python bench/serve.py [--clients 1 8] [--requests 2000] [--seconds 20] [--workers 0] [--log]

Starts its own server on a free port and stops it with SIGTERM; each run ends after
--requests requests or --seconds seconds, whichever comes first. Prints a table and the
load average, since a shared machine's neighbours move these figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_cases import synthetic  # noqa: E402


def start(workers: int, log: Path | None) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "covkb", "serve", "--port", "0", "--workers", str(workers)]
    if log is not None:
        command += ["--log", str(log)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    found = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not found:
        server.kill()
        raise SystemExit(f"the server did not start: {line.strip()}")
    return server, int(found.group(1))


def load(port: int, clients: int, bodies: list[bytes], requests: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    issued = [0]
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        index = number
        while time.perf_counter() < deadline:
            with lock:
                if issued[0] >= requests:
                    break
                issued[0] += 1
            body = bodies[index % len(bodies)]
            index += clients
            began = time.perf_counter()
            connection.request("POST", "/v1/check", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            if response.status != 200:
                with lock:
                    errors[0] += 1
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "seconds": elapsed,
            "rate": len(latencies) / elapsed, "errors": errors[0],
            "p50": 1000 * statistics.median(latencies),
            "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per run at most")
    parser.add_argument("--workers", type=int, default=0, help="the server's --workers")
    parser.add_argument("--log", action="store_true", help="serve with a decision log (in a temporary directory)")
    parser.add_argument("--seed", type=int, default=2024041)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    bodies = [json.dumps(synthetic(rng, index)).encode() for index in range(1000)]
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "audit.db" if options.log else None
        server, port = start(options.workers, log)
        try:
            load(port, 2, bodies, 40, 10.0)  # warm-up
            rows = [load(port, clients, bodies, options.requests, options.seconds) for clients in options.clients]
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=60)
    print(f"covkb serve --workers {options.workers}{' --log' if options.log else ''}; "
          f"{os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"server exit {code}")
    print(f"{'clients':>7} {'requests':>8} {'seconds':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for row in rows:
        print(f"{row['clients']:>7} {row['requests']:>8} {row['seconds']:>7.1f} {row['rate']:>7.0f} "
              f"{row['p50']:>7.1f} {row['p99']:>7.1f} {row['errors']:>6}")


if __name__ == "__main__":
    main()
