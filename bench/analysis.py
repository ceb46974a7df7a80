"""How long `covkb lint` and `covkb whatif` take, in wall-clock and CPU time.

    python bench/analysis.py [--repeat N]

Lints each policy version, and asks whatif of each example in facts/ (with --allow
clinical), in this process; prints the median of --repeat runs of each. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from covkb.api import versions
from covkb.surfaces.command import read_case
from covkb.analysis.lint import lint
from covkb.analysis.whatif import whatif

FACTS = Path(__file__).resolve().parents[1] / "facts"


def measure(run, repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    print(f"{'run':58} {'wall s':>8} {'cpu s':>8}")
    for version in sorted(versions()):
        wall, cpu = measure(lambda: lint(version), repeat)
        print(f"{'lint ' + version:58} {wall:8.2f} {cpu:8.2f}")
    for path in sorted(FACTS.glob("*.json")):
        case = read_case(path)[0]
        wall, cpu = measure(lambda: whatif(case, allow_clinical=True), repeat)
        print(f"{'whatif ' + path.name:58} {wall:8.2f} {cpu:8.2f}")


if __name__ == "__main__":
    main()
