"""Deciding cases: validated cases in, SPEC result objects out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from covkb import decide
from covkb.case import Case
from covkb.result import Result, build


def versions(directory: Optional[Path] = None) -> dict[str, tuple[int, int]]:
    """The policy versions the knowledge base holds, with their effective dates."""
    return decide.policy(directory).versions


def determine(cases: Sequence[Case], version: Optional[str] = None,
              directory: Optional[Path] = None) -> list[Result]:
    """Decide many cases in one grounding; results in the order given."""
    policy, shown = decide.solve(
        ((key, case, version) for key, case in enumerate(cases)), directory)
    return [build(case, shown[key], policy) for key, case in enumerate(cases)]


def check(case: Case, version: Optional[str] = None,
          directory: Optional[Path] = None) -> Result:
    """Decide one case."""
    return determine([case], version, directory)[0]


def determine_explained(cases: Sequence[Case], version: Optional[str] = None,
                        directory: Optional[Path] = None) -> list:
    """Decide many cases in one grounding; each its result and its explanation."""
    from covkb.explain import explain_result

    policy, shown = decide.solve(
        ((key, case, version) for key, case in enumerate(cases)), directory)
    pairs = []
    for key, case in enumerate(cases):
        result = build(case, shown[key], policy)
        pairs.append((result, explain_result(case, shown[key], policy, result)))
    return pairs
