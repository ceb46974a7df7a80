"""Validated case → clingo symbols (the case vocabulary of kb/core.lp).

Every string of a case becomes a clingo String symbol handed to the backend:
case data is never formatted into program text.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from functools import lru_cache
from typing import Iterator, Optional

from clingo import Function, Number, String, Symbol

from covkb.case import Case

# Boolean fields by their dotted path, read off the nested case objects.
BOOLEAN_FIELDS = (
    "plan.primary_coverage_criteria",
    "plan.group_specific_policy",
    "plan.walmart_associates_plan",
    "prescriber.specialist",
    "prescriber.approved_car_t_center",
    "diagnosis.multiple_myeloma",
    "diagnosis.relapsed",
    "diagnosis.refractory",
    "diagnosis.cns_involvement",
    "prior_allogeneic_transplant",
    "infections.hepatitis_b",
    "infections.hepatitis_c",
    "infections.hiv",
    "infections.uncontrolled",
    "organ_function_adequate",
    "compendium.fda_approved_indication",
)
NUMBER_FIELDS = (
    "member.age",
    "creatinine_clearance_ml_min",
    "lvef_percent",
    "dose_million_car_t_cells",
)
LIST_FIELDS = (
    "prior_lines",
    "prior_cell_therapies",
    "clinical_trials",
    "concurrent_therapies",
    "significant_cardiac_disease_dates",
)


class Symbols:
    """Builds the symbols of a fact's arguments: clingo.Symbol objects through the
    Python API, or clingo's symbol handles through covkb.capi."""

    def __init__(self, number, string, constant):
        self.number = number
        # field paths and names recur across cases: build each string symbol once
        self.text = lru_cache(maxsize=1 << 16)(string)
        self.string = string
        self.constant = lru_cache(maxsize=256)(constant)
        # a name as written → the folded name's symbol
        self.name = lru_cache(maxsize=1 << 16)(lambda name: self.text(fold(name)))


def _by_part(paths: tuple[str, ...]) -> tuple[tuple[Optional[str], tuple[tuple[str, str], ...]], ...]:
    """Dotted paths grouped by the case part holding them (None: the case itself)."""
    groups: dict[Optional[str], list[tuple[str, str]]] = {}
    for path in paths:
        part, _, leaf = path.rpartition(".")
        groups.setdefault(part or None, []).append((leaf, path))
    return tuple((part, tuple(leaves)) for part, leaves in groups.items())


def _documented(case: Case, groups) -> Iterator[tuple[str, object]]:
    """(path, value) of each field in groups that the case documents."""
    for part, leaves in groups:
        node = case if part is None else getattr(case, part)
        if node is not None:
            for leaf, path in leaves:
                value = getattr(node, leaf)
                if value is not None:
                    yield path, value


_BOOLEANS = _by_part(BOOLEAN_FIELDS)
_NUMBERS = _by_part(NUMBER_FIELDS)


PUBLIC = Symbols(Number, String, Function)


def field(case: Case, path: str):
    """The value at a dotted path, or None when not documented."""
    node = case
    for part in _parts(path):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


@lru_cache(maxsize=1024)
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


_MARKS = str.maketrans("", "", "\u00ae\u2122")  # ® and ™
_PARTS = re.compile(r"^(?P<x>[^()]*[^\s()])\s*\((?P<y>[^()]+)\)$")


def fold(name: str) -> str:
    """A name as the knowledge base matches it: case-folded, ® and ™ dropped, white space collapsed."""
    return " ".join(name.translate(_MARKS).casefold().split())


def compacted(folded: str) -> str:
    """A folded name without hyphens, spaces and `/`: the form regimen abbreviations match in."""
    return folded.replace("-", "").replace(" ", "").replace("/", "")


@lru_cache(maxsize=1 << 16)
def spellings(folded: str) -> tuple[tuple[str, str, str], ...]:
    """The forms of a folded name the knowledge base may match: (predicate, of, form) for
    its compacted form where it differs and, written `X (Y)`, each part and the part's."""
    names = [folded]
    forms = []
    written = _PARTS.match(folded)
    if written:
        names += [written["x"], written["y"].strip()]
        forms += [("part", folded, part) for part in names[1:]]
    forms += [("compact", name, compacted(name)) for name in names if compacted(name) != name]
    return tuple(forms)


def day(value: datetime.date) -> int:
    """A date as the integer YYYYMMDD."""
    return value.year * 10000 + value.month * 100 + value.day


def exact(value: Decimal) -> tuple[int, str]:
    """value as its integer part (floor) and "whole" or "fraction": exact against
    integer points, with no big integers whatever its number of decimal places."""
    value = Decimal(value)
    part = int(value)  # truncates exactly, whatever the context precision
    if part > value:
        part -= 1
    return part, "whole" if part == value else "fraction"


def case_facts(key: int, case: Case, version: Optional[str] = None) -> Iterator[Symbol]:
    """The facts of one case, keyed by `key`, as clingo symbols."""
    for name, arguments in case_rows(key, case, version, PUBLIC):
        yield Function(name, arguments)


def case_rows(key: int, case: Case, version: Optional[str], make: Symbols) -> Iterator[tuple[str, list]]:
    """The facts of one case, keyed by `key`: (predicate, argument symbols) built by `make`."""
    number, text, name = make.number, make.text, make.name
    k = number(key)
    true, false = make.constant("true"), make.constant("false")
    yield "case", [k]
    yield "case_id", [k, make.string(case.case_id)]
    yield "date_of_service", [k, number(day(case.date_of_service))]
    if version is not None:
        yield "version_requested", [k, text(version)]
    for path, value in _documented(case, _BOOLEANS):
        yield "bool", [k, text(path), true if value else false]
    for path, value in _documented(case, _NUMBERS):
        part, rest = exact(value)
        yield "number", [k, text(path), number(part), make.constant(rest)]
    if case.member is not None and case.member.birth_date is not None:
        yield "date", [k, text("member.birth_date"), number(day(case.member.birth_date))]
    for path in LIST_FIELDS:
        if getattr(case, path) is not None:
            yield "listed", [k, text(path)]
    names = set()
    for index, line in enumerate(case.prior_lines or (), start=1):
        i = number(index)
        yield "prior_line", [k, i]
        for agent in line:
            names.add(agent)
            yield "agent", [k, i, name(agent)]
    for product in case.prior_cell_therapies or ():
        names.add(product)
        yield "cell_therapy", [k, name(product)]
    for therapy in case.clinical_trials or ():
        names.add(therapy)
        yield "trial", [k, name(therapy)]
    for therapy in case.concurrent_therapies or ():
        names.add(therapy.agent)
        yield "concurrent", [k, name(therapy.agent), make.constant(therapy.purpose)]
    for predicate, of, form in {f for written in names for f in spellings(fold(written))}:
        yield predicate, [k, text(of), text(form)]
    for when in case.significant_cardiac_disease_dates or ():
        yield "cardiac", [k, number(day(when))]
    if case.compendium is not None and case.compendium.nccn_category is not None:
        yield "nccn", [k, text(case.compendium.nccn_category)]
