"""Where one process's time goes, per case, phase by phase.

    python bench/phases.py [--cases 2000] [--repeat 10] [--engine clingo|compiled]

Decides the same seeded synthetic cases (bench/make_cases.py) in one grounding (clingo)
or one bit-parallel evaluation (compiled), --repeat times, timing each phase of covkb's
batch path separately; prints the best time of each phase in microseconds per case (the
least disturbed by other load). Nothing here asserts a time.
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

from covkb.engine import capi
from covkb.engine import reference, vocabulary  # noqa: E402
from covkb.engine.kb import control as kb_control, kb_dir  # noqa: E402
from covkb.input.text import from_json  # noqa: E402
from covkb.engine.facts import case_rows  # noqa: E402
from covkb.results.render import as_json  # noqa: E402
from covkb.results.result import build  # noqa: E402
from covkb.engine.terms import parse_arguments  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--engine", choices=["clingo", "compiled"], default="clingo")
    options = parser.parse_args()
    if options.engine == "compiled":
        return compiled_phases(options)
    if not capi.enabled():
        raise SystemExit("this measures the C-API path; unset COVKB_PUBLIC_API")
    lines, count, best, took = _setup(options)
    gc.disable()  # as covkb batch decides a chunk
    for _ in range(options.repeat):
        started = time.perf_counter()
        cases = [from_json(line) for line in lines]
        started = took("decode JSON", started)
        control = kb_control(None)
        started = took("new Control, load kb/", started)
        with control.backend() as backend:
            fact = capi.writer(backend)
            for key, case in enumerate(cases):
                for name, arguments in case_rows(key, case, None, reference._C_SYMBOLS):
                    fact(name, arguments)
        started = took("facts through the backend", started)
        control.ground([("base", [])])
        started = took("ground", started)
        with control.solve(yield_=True) as handle:
            model = next(iter(handle))
            started = took("solve", started)
            shown = {key: vocabulary.Shown() for key in range(count)}
            policy = vocabulary.Policy()
            vocabulary.read(capi.atoms(model, parse_arguments), shown, policy)
            started = took("read the model", started)
        _finish(cases, shown, policy, took, started)
    _report(best, f"best of {options.repeat} runs of {count:,} cases in one grounding each")


def _setup(options):
    """The seeded cases' lines, their count, and a timer keeping each phase's best."""
    rng = random.Random(2024041)
    lines = [json.dumps(synthetic(rng, i)).encode() for i in range(options.cases)]
    count = len(lines)
    best: dict[str, float] = {}

    def took(phase: str, started: float) -> float:
        now = time.perf_counter()
        best[phase] = min(best.get(phase, float("inf")), (now - started) / count * 1e6)
        return now

    return lines, count, best, took


def _finish(cases, shown, policy, took, started) -> None:
    """The phases after the engine: result objects, then their JSON."""
    results = [build(case, shown[key], policy) for key, case in enumerate(cases)]
    started = took("build results", started)
    "\n".join(as_json(result) for result in results)
    took("encode JSON", started)
    gc.collect()


def _report(best: dict[str, float], how: str) -> None:
    width = max(map(len, best))
    for phase, micros in best.items():
        print(f"{phase:<{width}}  {micros:6.0f} us per case")
    print(f"{'all':<{width}}  {sum(best.values()):6.0f} us per case ({how})")


def compiled_phases(options) -> None:
    """The same phases through covkb.engine.compiled: cases → input atoms → evaluation → atoms read back."""
    from covkb.engine import compiled as engine

    lines, count, best, took = _setup(options)
    compiled = engine.compiled(kb_dir())
    if compiled is None:
        raise SystemExit(f"the compiled engine refuses kb/: {engine.refusal(kb_dir())}")
    policy = reference.policy()
    gc.disable()
    for _ in range(options.repeat):
        started = time.perf_counter()
        cases = [from_json(line) for line in lines]
        started = took("decode JSON", started)
        encoded = [(key, compiled.encode(case, None)) for key, case in enumerate(cases)]
        started = took("case → input atoms", started)
        v = [0] * compiled.size
        everyone = (1 << count) - 1
        for bit, (_, (atoms, _)) in enumerate(encoded):
            for atom in atoms:
                v[atom] |= 1 << bit
        compiled.run(v, everyone)
        started = took("evaluate", started)
        shown = {key: vocabulary.Shown() for key in range(count)}
        compiled._read_back(v, [shown[key] for key, _ in encoded], [stand for _, (_, stand) in encoded])
        started = took("read shown atoms back", started)
        _finish(cases, shown, policy, took, started)
    _report(best, f"best of {options.repeat} runs of {count:,} cases evaluated together")


if __name__ == "__main__":
    main()
