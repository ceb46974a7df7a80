"""covkb's benchmark: batch throughput, peak memory, `check` latency, and the baseline of
one clingo Control per case — all on seeded synthetic cases (bench/make_cases.py).

    python bench/bench.py [--sizes 10000 100000] [--engines clingo compiled] [--workers N]
                          [--chunk N] [--repeat N] [--baseline 2000]

Each batch size runs under each engine in turn (COVKB_ENGINE=clingo: clingo's own solving;
compiled: the default, kb/ ground once) and checks that their outputs are byte-identical.

Prints a table; nothing here asserts a time. Batch rows give the median of --repeat runs
with their range, and the CPU time of all processes per case: on a shared machine the
rate moves with the neighbours, the CPU per case much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from make_cases import synthetic  # noqa: E402


# bench's engine names → COVKB_ENGINE: compiled is covkb's default (auto) for batches.
ENGINES = {"clingo": "clingo", "compiled": "auto"}


def write_cases(path: Path, count: int, seed: int = 2024041) -> None:
    import json
    import random

    rng = random.Random(seed)
    with path.open("w") as sink:
        for index in range(count):
            sink.write(json.dumps(synthetic(rng, index)) + "\n")


def _tree_rss(root: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def timed_with_memory(command: list[str], env: Optional[dict] = None) -> tuple[float, int, float]:
    """Wall seconds, peak resident memory of the process tree, CPU seconds of the tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=None if env is None else {**os.environ, **env})
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, status, usage = os.wait4(process.pid, 0)  # usage covers the workers it waited for
    seconds = time.perf_counter() - started
    process.returncode = code = os.waitstatus_to_exitcode(status)
    stop.set()
    thread.join()
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}")
    return seconds, peak, usage.ru_utime + usage.ru_stime


def baseline(path: Path, count: int) -> float:
    """Cases per second deciding each case with its own clingo Control (the slow path)."""
    sys.path.insert(0, str(ROOT / "py"))
    from covkb.api import check
    from covkb.input.text import from_json

    lines = path.read_bytes().splitlines()[:count]
    cases = [from_json(line) for line in lines]
    started = time.perf_counter()
    for case in cases:
        check(case)
    return len(cases) / (time.perf_counter() - started)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=None, help="covkb batch --chunk (default: covkb's)")
    parser.add_argument("--repeat", type=int, default=1, help="batch runs per size; the median is reported")
    parser.add_argument("--baseline", type=int, default=2000, help="cases for the one-Control-per-case baseline")
    parser.add_argument("--checks", type=int, default=11, help="runs of `covkb check` for the median")
    options = parser.parse_args()
    covkb = str(Path(sys.executable).with_name("covkb"))
    print(f"machine: {_cpu()}, {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    import clingo

    chunk = ["--chunk", str(options.chunk)] if options.chunk else []
    print(f"clingo {clingo.__version__}; workers {options.workers}" + (f", chunk {options.chunk}" if chunk else ""))
    rows = []
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        # first, on a quiet machine: after a batch the system is still writing its output
        one = Path(tmp) / "one.json"
        write_cases(one, 1)
        times = []
        for _ in range(options.checks):
            started = time.perf_counter()
            subprocess.run([covkb, "check", str(one), "--format", "json"], stdout=subprocess.DEVNULL, check=False)
            times.append(time.perf_counter() - started)
        rows.append(("check, one case", f"{1000 * statistics.median(times):.0f} ms median",
                     f"of {options.checks} runs, process start included"))
        print(*rows[-1], sep="  |  ", flush=True)
        for size in options.sizes:
            cases = Path(tmp) / f"cases-{size}.jsonl"
            write_cases(cases, size)
            outputs = {}
            for engine in options.engines:
                out = outputs[engine] = Path(tmp) / f"out-{engine}.jsonl"
                runs = [timed_with_memory([covkb, "batch", str(cases), "--out", str(out),
                                           "--workers", str(options.workers), "--quiet", *chunk],
                                          {"COVKB_ENGINE": ENGINES[engine]})
                        for _ in range(options.repeat)]
                seconds = statistics.median(run[0] for run in runs)
                peak = max(run[1] for run in runs)
                cpu = statistics.median(run[2] for run in runs)
                spread = (f" (runs {size / max(r[0] for r in runs):,.0f}-{size / min(r[0] for r in runs):,.0f})"
                          if len(runs) > 1 else "")
                rates.append(size / seconds)
                rows.append((f"batch {size:,} cases, {engine}", f"{size / seconds:,.0f} cases/s{spread}",
                             f"{seconds:.1f} s, CPU {1e6 * cpu / size:.0f} us per case, "
                             f"peak RSS {peak / 2**20:.0f} MiB (all processes)"))
                print(*rows[-1], sep="  |  ", flush=True)
            texts = {out.read_bytes() for out in outputs.values()}
            if len(outputs) > 1:
                print(f"batch {size:,} cases: output of {' and '.join(outputs)} "
                      + ("byte-identical" if len(texts) == 1 else "DIFFERS"), flush=True)
        sample = Path(tmp) / f"cases-{options.sizes[0]}.jsonl"
        rate = baseline(sample, options.baseline)
        batch_rate = rates[0]
        rows.append((f"one Control per case, {options.baseline:,} cases", f"{rate:,.0f} cases/s",
                     f"batch is {batch_rate / rate:.1f}x this"))
        print(*rows[-1], sep="  |  ", flush=True)


if __name__ == "__main__":
    main()
