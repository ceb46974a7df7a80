"""Time `covkb audit report` over a large decision log, and its peak memory.

python bench/report.py [--count 100000] [--dir DIR] [--repeat N] [--replay-all]

Writes COUNT seeded synthetic cases (bench/make_cases.py), logs their determinations with
`covkb batch --log` (reused when DIR already holds a log of that size), then runs
`covkb audit report` over the log and prints its wall time and peak resident memory
(of the report process and its worker processes together).
The goal: under 30 s and under 500 MB for 100,000 determinations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_cases import synthetic  # noqa: E402

COVKB = [sys.executable, "-m", "covkb"]


def logged(directory: Path, count: int) -> Path:
    log = directory / f"log-{count}.db"
    if log.exists():
        with sqlite3.connect(log) as connection:
            if connection.execute("SELECT count(*) FROM determinations").fetchone()[0] == count:
                return log
        log.unlink()
    cases = directory / f"cases-{count}.jsonl"
    rng = random.Random(2024041)
    with cases.open("w") as sink:
        for index in range(count):
            sink.write(json.dumps(synthetic(rng, index)) + "\n")
    started = time.perf_counter()
    subprocess.run(COVKB + ["batch", str(cases), "--out", os.devnull, "--log", str(log), "--quiet"], check=True)
    print(f"logged {count} determinations with covkb batch --log in {time.perf_counter() - started:.1f} s "
          f"({log.stat().st_size / 2**20:.0f} MiB)")
    return log


def tree_rss(root: int) -> int:
    """Resident memory (KiB) of a process and all its descendants, from /proc: each one's
    proportional set size, so pages forked workers share with their parent count once."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        parents[int(entry)] = int(fields["PPid"])
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0])
    family, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return sum(_pss(pid, rss.get(pid, 0)) for pid in family)


def _pss(pid: int, fallback: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return fallback


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds, and the peak RSS (MiB) of the process and its workers together,
    sampled every 50 ms (a worker's own peak alone would hide the others)."""
    import threading

    started = time.perf_counter()
    process = subprocess.Popen(command)
    peak, done = [0], threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_rss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return seconds, max(peak[0], usage.ru_maxrss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="Keep the cases, the log and the report here.")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--replay-all", action="store_true",
                        help="Report with --replay-all: every determination decided again.")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="covkb-bench-report-"))
    directory.mkdir(parents=True, exist_ok=True)
    log = logged(directory, args.count)
    out = directory / "report.html"
    command = COVKB + ["audit", "report", "--log", str(log), "--out", str(out)]
    if args.replay_all:
        command.append("--replay-all")
    runs = [measure(command) for _ in range(args.repeat)]
    seconds = [s for s, _ in runs]
    peak = max(rss for _, rss in runs)
    spread = f" (runs {min(seconds):.1f}-{max(seconds):.1f})" if len(runs) > 1 else ""
    print(f"covkb audit report{' --replay-all' if args.replay_all else ''} over {args.count} determinations: "
          f"{statistics.median(seconds):.1f} s{spread}, peak RSS {peak:.0f} MiB, "
          f"report {out.stat().st_size / 2**10:.0f} KiB")


if __name__ == "__main__":
    main()
