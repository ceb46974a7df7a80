"""The one decider: validated cases in, results and explanations out.

Every front end decides through `decide()`: `covkb check`, batch and replay, serve, the
decision log, explain and compare, whatif and lint. It asks the engine what the knowledge
base shows for each case (covkb.engine.choose: clingo, or the compiled engine for big
batches) and builds from that the result and, when asked, the explanation. The engine is
a parameter: None takes COVKB_ENGINE's, else auto.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from covkb.engine import choose, reference
from covkb.input.case import Case
from covkb.results.result import SOURCES, Result, build


@dataclass(frozen=True)
class Decision:
    """One case decided: the version asked for (None: the one in force on the date of
    service), its result and, when asked for, its explanation."""

    case: Case
    version: Optional[str]
    result: Result
    explanation: Optional[object] = None  # a covkb.results.explain.Explanation
    in_force: Optional[str] = None  # the version in force on the date of service (kb in_force/2)


def decide(asked: Iterable[tuple[Case, Optional[str]]], explained: Union[bool, Sequence[bool]] = False,
           engine: Optional[str] = None, directory: Optional[Path] = None,
           sources: Optional[Sequence[Optional[dict]]] = None) -> list[Decision]:
    """Decide every (case, version asked for) together, in the order given. `explained`:
    whether to explain every case, or for each case whether to explain it. `sources`, one
    per case, name the FHIR resource each field was read from (None: none)."""
    asked = list(asked)
    wanted = [explained] * len(asked) if isinstance(explained, bool) else list(explained)
    policy, shown = choose.solve(((key, case, version) for key, (case, version) in enumerate(asked)),
                                 directory, engine)
    if any(wanted):
        from covkb.results.explain import explain_result
    decisions = []
    for key, (case, version) in enumerate(asked):
        token = SOURCES.set(sources[key]) if sources is not None else None
        try:
            result = build(case, shown[key], policy)
            explanation = explain_result(case, shown[key], policy, result) if wanted[key] else None
        finally:
            if token is not None:
                SOURCES.reset(token)
        decisions.append(Decision(case, version, result, explanation, shown[key].in_force))
    return decisions


def versions(directory: Optional[Path] = None) -> dict[str, tuple[int, int]]:
    """The policy versions the knowledge base holds, with their effective dates."""
    return reference.policy(directory).versions


def determine(cases: Sequence[Case], version: Optional[str] = None, directory: Optional[Path] = None,
              engine: Optional[str] = None) -> list[Result]:
    """Decide many cases under one version asked for; results in the order given."""
    return [one.result for one in decide(((case, version) for case in cases), False, engine, directory)]


def check(case: Case, version: Optional[str] = None, directory: Optional[Path] = None) -> Result:
    """Decide one case."""
    return determine([case], version, directory)[0]


def determine_explained(cases: Sequence[Case], version: Optional[str] = None,
                        directory: Optional[Path] = None, engine: Optional[str] = None) -> list:
    """Decide many cases under one version asked for; each its (result, explanation)."""
    return [(one.result, one.explanation)
            for one in decide(((case, version) for case in cases), True, engine, directory)]


def explain(case: Case, version: Optional[str] = None):
    """The explanation of one case's decision."""
    return decide([(case, version)], True)[0].explanation


def compare(case: Case) -> list:
    """The case decided under every policy version, oldest first: their explanations."""
    return compare_by_date(case)[0]


def compare_by_date(case: Case) -> tuple[list, object, Optional[str]]:
    """The case under every policy version, oldest first, and under the version its date
    of service selects (which may be none of them): their explanations, in one grounding,
    and the version in force on the date."""
    every = sorted(versions())
    decided = decide([(case, version) for version in every] + [(case, None)], True)
    return [one.explanation for one in decided[:-1]], decided[-1].explanation, decided[-1].in_force
