"""Validated case → clingo symbols (the case vocabulary of kb/core.lp).

Every string of a case becomes a clingo String symbol handed to the backend:
case data is never formatted into program text.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Iterator, Optional

from clingo import Function, Number, String, Symbol

from covkb.case import Case

TRUE = Function("true")
FALSE = Function("false")

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


# Field paths and names recur across cases: build each string symbol once.
text = lru_cache(maxsize=1 << 16)(String)
_PURPOSE = {}


def _purpose(name: str) -> Symbol:
    if name not in _PURPOSE:
        _PURPOSE[name] = Function(name)
    return _PURPOSE[name]


def field(case: Case, path: str):
    """The value at a dotted path, or None when not documented."""
    node = case
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def fold(name: str) -> str:
    """A name as the knowledge base matches it: case-folded, white space collapsed."""
    return " ".join(name.casefold().split())


def day(value: datetime.date) -> Symbol:
    return Number(value.year * 10000 + value.month * 100 + value.day)


def exact(value: Decimal) -> tuple[Symbol, Symbol, Symbol]:
    """value as integer part, numerator and denominator of the fraction part."""
    numerator, denominator = Decimal(value).as_integer_ratio()
    whole, rest = divmod(numerator, denominator)
    return Number(whole), Number(rest), Number(denominator)


def case_facts(key: int, case: Case, version: Optional[str] = None) -> Iterator[Symbol]:
    """The facts of one case, keyed by `key`."""
    k = Number(key)
    yield Function("case", [k])
    yield Function("case_id", [k, String(case.case_id)])
    yield Function("date_of_service", [k, day(case.date_of_service)])
    if version is not None:
        yield Function("version_requested", [k, String(version)])
    for path in BOOLEAN_FIELDS:
        value = field(case, path)
        if value is not None:
            yield Function("bool", [k, text(path), TRUE if value else FALSE])
    for path in NUMBER_FIELDS:
        value = field(case, path)
        if value is not None:
            yield Function("number", [k, text(path), *exact(value)])
    if case.member is not None and case.member.birth_date is not None:
        yield Function("date", [k, text("member.birth_date"), day(case.member.birth_date)])
    for path in LIST_FIELDS:
        if getattr(case, path) is not None:
            yield Function("listed", [k, text(path)])
    for index, line in enumerate(case.prior_lines or (), start=1):
        yield Function("prior_line", [k, Number(index)])
        for agent in line:
            yield Function("agent", [k, Number(index), text(fold(agent))])
    for product in case.prior_cell_therapies or ():
        yield Function("cell_therapy", [k, text(fold(product))])
    for therapy in case.clinical_trials or ():
        yield Function("trial", [k, text(fold(therapy))])
    for therapy in case.concurrent_therapies or ():
        yield Function("concurrent", [k, text(fold(therapy.agent)), _purpose(therapy.purpose)])
    for when in case.significant_cardiac_disease_dates or ():
        yield Function("cardiac", [k, day(when)])
    if case.compendium is not None and case.compendium.nccn_category is not None:
        yield Function("nccn", [k, text(case.compendium.nccn_category)])
