"""Where one process's time goes, per case, phase by phase.

    python bench/phases.py [--cases 2000] [--repeat 10]

Decides the same seeded synthetic cases (bench/make_cases.py) in one grounding,
--repeat times, timing each phase of covkb's batch path separately; prints the best
time of each phase in microseconds per case (the least disturbed by other load).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "py"))

from make_cases import synthetic  # noqa: E402

from covkb import capi, decide  # noqa: E402
from covkb.case import from_json  # noqa: E402
from covkb.facts import case_rows  # noqa: E402
from covkb.render import as_json  # noqa: E402
from covkb.result import build  # noqa: E402
from covkb.terms import parse_arguments  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=10)
    options = parser.parse_args()
    if not capi.enabled():
        raise SystemExit("this measures the C-API path; unset COVKB_PUBLIC_API")
    rng = random.Random(2024041)
    lines = [json.dumps(synthetic(rng, i)).encode() for i in range(options.cases)]
    count = len(lines)
    best: dict[str, float] = {}

    def took(phase: str, started: float) -> float:
        now = time.perf_counter()
        best[phase] = min(best.get(phase, float("inf")), (now - started) / count * 1e6)
        return now

    gc.disable()  # as covkb batch decides a chunk
    for _ in range(options.repeat):
        started = time.perf_counter()
        cases = [from_json(line) for line in lines]
        started = took("decode JSON", started)
        control = decide._control(None)
        started = took("new Control, load kb/", started)
        with control.backend() as backend:
            fact = capi.writer(backend)
            for key, case in enumerate(cases):
                for name, arguments in case_rows(key, case, None, decide._C_SYMBOLS):
                    fact(name, arguments)
        started = took("facts through the backend", started)
        control.ground([("base", [])])
        started = took("ground", started)
        with control.solve(yield_=True) as handle:
            model = next(iter(handle))
            started = took("solve", started)
            shown = {key: decide.Shown() for key in range(count)}
            policy = decide.Policy()
            decide._read(capi.atoms(model, parse_arguments), shown, policy)
            started = took("read the model", started)
        results = [build(case, shown[key], policy) for key, case in enumerate(cases)]
        started = took("build results", started)
        "\n".join(as_json(result) for result in results)
        took("encode JSON", started)
        gc.collect()
    width = max(map(len, best))
    for phase, micros in best.items():
        print(f"{phase:<{width}}  {micros:6.0f} us per case")
    print(f"{'all':<{width}}  {sum(best.values()):6.0f} us per case "
          f"(best of {options.repeat} runs of {count:,} cases in one grounding each)")


if __name__ == "__main__":
    main()
