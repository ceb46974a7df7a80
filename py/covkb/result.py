"""The knowledge base's atoms for one case → the result object of SPEC §2.

The reasons are the knowledge base's: each `because` and `advisory` term names
the field and carries the policy's words; this module only writes them out with
the case's own values.
"""

from __future__ import annotations

import datetime
from contextvars import ContextVar
from typing import Mapping, Optional

import msgspec

from covkb.case import Case
from covkb.decide import Policy, Shown
from covkb.facts import field, fold


class Criterion(msgspec.Struct):
    id: str
    status: str
    text: str
    because: list[str]


class Result(msgspec.Struct):
    case_id: str
    policy: str
    version: Optional[str]
    decision: str
    label: str
    criteria: list[Criterion]
    advisories: list[str]
    missing: list[str]


class Failure(msgspec.Struct):
    """A batch line that could not be decided."""

    case_id: Optional[str]
    line: int
    error: str


def build(case: Case, shown: Shown, policy: Policy) -> Result:
    words = Words(case)
    criteria = []
    if shown.version is not None:
        for ident, text in policy.criteria[shown.version]:
            reasons = sorted(shown.because.get(ident, ()))
            criteria.append(Criterion(ident, shown.status[ident], text,
                                      [words.because(ident, term) for _, term in reasons]))
    return Result(
        case_id=case.case_id,
        policy=policy.id,
        version=shown.version,
        decision=shown.decision,
        label=shown.label,
        criteria=criteria,
        advisories=[words.advisory(term) for _, term in sorted(shown.advisories)],
        missing=sorted(shown.missing),
    )


# Where each field of a case read from FHIR came from, while covkb.fhir.sourced() holds
# it: a fact is then written "lvef_percent = 58, from Observation/lvef-1".
SOURCES: ContextVar[Mapping[str, str]] = ContextVar("SOURCES", default={})


def _iso(number: int) -> str:
    return datetime.date(number // 10000, number // 100 % 100, number % 100).isoformat()


class Words:
    """Writes the knowledge base's reason terms with the values of one case.

    A term is a tuple (name, *arguments) as covkb.terms reads it.
    """

    def __init__(self, case: Case):
        self.case = case
        self.spelling: Optional[dict[str, str]] = None
        self.values: dict[str, str] = {}

    def value(self, path: str) -> str:
        text = self.values.get(path)
        if text is None:
            origin = SOURCES.get().get(path)
            text = self.values[path] = self._value(path) + (f", from {origin}" if origin else "")
        return text

    def _value(self, path: str) -> str:
        value = field(self.case, path)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime.date):
            return value.isoformat()
        if path == "prior_lines":
            lines = "; ".join(", ".join(line) for line in value)
            return f"{len(value)} ({lines})" if value else "0 (none)"
        if path == "concurrent_therapies":
            return ", ".join(f"{t.agent} ({t.purpose})" for t in value) or "none"
        if isinstance(value, list):
            return ", ".join(d.isoformat() if isinstance(d, datetime.date) else str(d)
                             for d in value) or "none"
        return str(value)

    @staticmethod
    def place(where) -> str:
        if isinstance(where, tuple) and where[0] == "line":
            return f"prior_lines line {where[1]}"
        return str(where)

    def name(self, folded: str) -> str:
        """The name as the case spells it (its first spelling, when it has several)."""
        if self.spelling is None:
            case, self.spelling = self.case, {}
            names = [a for line in case.prior_lines or () for a in line]
            names += list(case.prior_cell_therapies or ()) + list(case.clinical_trials or ())
            names += [t.agent for t in case.concurrent_therapies or ()]
            for name in names:
                self.spelling.setdefault(fold(name), name)
        return self.spelling.get(folded, folded)

    def because(self, ident: str, term: tuple) -> str:
        kind, args = term[0], term[1:]
        if kind == "is":
            return f"{args[0]} = {self.value(args[0])}"
        if kind == "absent":
            return f"{args[0]} not documented"
        if kind == "requires":
            return f"{args[0]} = {self.value(args[0])}, and {ident} requires {args[1]}"
        if kind == "derived":
            return f"{args[0]} = {args[1]}, and {ident} requires {args[2]}"
        if kind == "named":
            return f"{self.place(args[0])}: {self.name(args[1])!r} {args[2]}"
        if kind == "none_of_class":
            return f"{args[0]}: no agent of this class in any prior line"
        if kind == "within":
            return (f"{args[0]} has {_iso(args[1])}, on or after "
                    f"{_iso(args[2])}, the start of the window {ident} looks back over")
        return repr(term)

    def advisory(self, term: tuple) -> str:
        kind, args = term[0], term[1:]
        if kind == "guideline":
            return f"{args[0]} = {self.value(args[0])}: {args[1]}"
        if kind == "note":
            return f"{args[0]}: {args[1]}"
        if kind == "guideline_date":
            return f"{args[0]} has {_iso(args[1])}: {args[2]}"
        if kind == "unrecognised":
            return f"{self.place(args[0])}: {self.name(args[1])!r} is not a recognised name; please clarify it"
        return repr(term)
