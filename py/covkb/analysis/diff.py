"""covkb diff: the kinds of case two policy versions decide differently, found by clingo.

The case space is abstract: each field the criteria read is reduced to the classes the
knowledge base's own thresholds, windows, drug classes and product names make, plus
"not documented". clingo searches it with the knowledge base itself deciding, and
reports the subset-minimal sets of departures from an eligible case that change the
decision — so a criterion added to or changed in a version shows up here by itself.
"""

from __future__ import annotations

import calendar
import copy
import datetime
from dataclasses import dataclass, field as dataclass_field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import clingo
import msgspec

from covkb.input.case import NCCN_CATEGORIES, PURPOSES, from_object
from covkb.engine.kb import control as kb_control
from covkb.engine.facts import BOOLEAN_FIELDS, case_facts, day as yyyymmdd

ABSENT = object()
_FIXED = {"case", "case_id", "date_of_service"}
_OPTIONAL_FIRST = ("plan.", "compendium.")  # assertions: absent is the ordinary case
_AGE = {"member.age": "age"}  # threshold name in kb/ for a case field, where they differ


@dataclass
class Option:
    name: str
    value: Any  # JSON value, or ABSENT

    def describe(self, path: str) -> str:
        return f"{path} {self.name}" if self.name.startswith(("<", ">", "=", "between")) \
            else f"{path}: {self.name}"


@dataclass
class Field:
    path: str
    options: list[Option]


class Group(msgspec.Struct):
    classes: list[str]
    decisions: dict[str, str]
    failing: dict[str, list[str]]
    example: dict


class Diff(msgspec.Struct):
    versions: list[str]
    baseline: dict
    decisions_differ: list[Group]
    failures_differ: list[Group]
    seconds: float


# ---------------------------------------------------------------------------
# What the knowledge base says the classes are.
# ---------------------------------------------------------------------------
@dataclass
class KbFacts:
    thresholds: dict[str, list[int]] = dataclass_field(default_factory=dict)
    months_back: list[int] = dataclass_field(default_factory=list)
    class_agents: dict[str, str] = dataclass_field(default_factory=dict)
    products: dict[str, str] = dataclass_field(default_factory=dict)
    versions: dict[str, int] = dataclass_field(default_factory=dict)


def kb_facts(directory: Optional[Path]) -> KbFacts:
    """The classes the knowledge base's own atoms make (covkb.engine.reference.internals):
    the points a criterion's bounds compare against, less the plausibility points (kb/core.lp
    plausible/5), which mark doubtful values that decide nothing and differ in no version."""
    from covkb.engine.reference import internals, policy

    found = internals(directory)
    facts = KbFacts()
    names: dict[str, list[str]] = {}
    classes: dict[str, list[str]] = {}
    products: dict[str, list[str]] = {}
    for field, point in found["threshold"]:
        facts.thresholds.setdefault(field, []).append(point)
    doubted = {(field, point) for field, _, point, _, _ in found["plausible"]}
    facts.months_back = [months for months, in found["months_back"]]
    for agent, drug_class in found["drug_class"]:
        classes.setdefault(drug_class[0], []).append(agent[0])
    for spelling, agent in found["name"]:
        names.setdefault(agent[0], []).append(spelling)
    for spelling, product in found["product"]:
        products.setdefault(product[0], []).append(spelling)
    facts.versions = {name: start for name, (start, _) in policy(directory).versions.items()}
    for field, points in facts.thresholds.items():
        points[:] = [p for p in points if (field, p) not in doubted]
    for drug_class, agents in sorted(classes.items()):
        facts.class_agents[drug_class] = min(names[min(agents)])
    facts.products = {product: max(spellings, key=len) for product, spellings in sorted(products.items())}
    return facts


# ---------------------------------------------------------------------------
# The abstract case space.
# ---------------------------------------------------------------------------
def _number_options(thresholds: list[int], low: Decimal, high: Decimal, whole: bool) -> list[Option]:
    options = []
    points = sorted(set(thresholds))
    step = Decimal(1)
    if points and points[0] - step >= low:
        options.append(Option(f"< {points[0]}", points[0] - 1))
    for index, point in enumerate(points):
        options.append(Option(f"= {point}", point))
        if index + 1 < len(points):
            middle = point + 1 if whole else (Decimal(point) + points[index + 1]) / 2
            options.append(Option(f"between {point} and {points[index + 1]}", middle))
    if points and points[-1] + step <= high:
        options.append(Option(f"> {points[-1]}", points[-1] + 1))
    if not points:
        options.append(Option("documented", 1))
    return options


def _months_back(day: datetime.date, months: int) -> datetime.date:
    total = day.year * 12 + day.month - 1 - months
    year, month = divmod(total, 12)
    return datetime.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def space(kb: KbFacts, service: datetime.date) -> list[Field]:
    fields = []
    for path in BOOLEAN_FIELDS:
        options = [Option("true", True), Option("false", False)]
        absent = Option("not documented", ABSENT)
        fields.append(Field(path, [absent, *options] if path.startswith(_OPTIONAL_FIRST) else [*options, absent]))
    fields.append(Field("compendium.nccn_category", [Option("not documented", ABSENT)]
                        + [Option(f'"{c}"', c) for c in NCCN_CATEGORIES]))
    limits = {"creatinine_clearance_ml_min": (Decimal(0), Decimal(10 ** 6), False),
              "lvef_percent": (Decimal(0), Decimal(100), False),
              "dose_million_car_t_cells": (Decimal("0.01"), Decimal(10 ** 6), False),
              "member.age": (Decimal(0), Decimal(130), True)}
    for path, (low, high, whole) in limits.items():
        options = _number_options(kb.thresholds.get(_AGE.get(path, path), []), low, high, whole)
        fields.append(Field(path, [*options, Option("not documented", ABSENT)]))
    agents = kb.class_agents
    every = list(agents.values())
    lines = [Option("every class over two lines", [every[:1], every[1:]]),
             Option("every class in one line", [every]),
             Option("none", [])]
    for drug_class, agent in agents.items():
        rest = [a for a in every if a != agent]
        lines.append(Option(f"no {drug_class} agent", [rest[:1], rest[1:] or ["dexamethasone"]]))
        lines.append(Option(f"no {drug_class} agent but an unrecognised name",
                            [rest[:1], (rest[1:] or ["dexamethasone"]) + ["unrecognised-agent"]]))
    fields.append(Field("prior_lines", [*lines, Option("not documented", ABSENT)]))
    products = [Option(f"[{name}]", [name]) for name in kb.products.values()]
    unknown = Option("[an unrecognised name]", ["unrecognised-therapy"])
    for path in ("prior_cell_therapies", "clinical_trials"):
        fields.append(Field(path, [Option("none", []), *products, unknown, Option("not documented", ABSENT)]))
    fields.append(Field("concurrent_therapies", [Option("none", [])] + [
        Option(f"one for {purpose}", [{"agent": "a therapy", "purpose": purpose}]) for purpose in PURPOSES
    ] + [Option("not documented", ABSENT)]))
    cardiac = [Option("none", [])]
    for months in sorted(set(kb.months_back)):
        start = _months_back(service, months)
        cardiac.append(Option(f"within the past {months} months", [start.isoformat()]))
        cardiac.append(Option(f"just before the past {months} months",
                              [(start - datetime.timedelta(days=1)).isoformat()]))
    fields.append(Field("significant_cardiac_disease_dates", [*cardiac, Option("not documented", ABSENT)]))
    return fields


def set_path(data: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    if value is ABSENT:
        data.pop(leaf, None)
    else:
        data[leaf] = copy.deepcopy(value)


def option_facts(path: str, option: Option, service: datetime.date) -> list[clingo.Symbol]:
    data: dict = {"case_id": "class", "date_of_service": service.isoformat()}
    set_path(data, path, option.value)
    case = from_object(data)
    return [clingo.Function(s.name, s.arguments[1:]) for s in case_facts(0, case) if s.name not in _FIXED]


def jsonable(value: Any) -> Any:
    return _decoder.decode(_encoder.encode(value))


_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(float_hook=Decimal)


# ---------------------------------------------------------------------------
# Solving.
# ---------------------------------------------------------------------------
def _control(directory: Optional[Path], extra: list[str]) -> clingo.Control:
    control = kb_control(directory, ("--warn=none", *extra))
    control.add("base", [], resources.files("covkb.analysis").joinpath("diff.lp").read_text())
    return control


def load_space(backend, fields: list[Field], service: datetime.date, sides: list[str]):
    F = clingo.Function
    S, N = clingo.String, clingo.Number

    def fact(symbol):
        backend.add_rule([backend.add_atom(symbol)])

    fact(F("service", [N(yyyymmdd(service))]))
    for index, version in enumerate(sides, start=1):
        fact(F("side", [N(index), S(version)]))
    for field in fields:
        fact(F("field", [S(field.path)]))
        for position, option in enumerate(field.options):
            key = [S(field.path), N(position)]
            fact(F("option", key))
            fact(F("pos", [*key, N(position)]))
            for term in option_facts(field.path, option, service):
                fact(F("gives", [*key, term]))


def diff(versions: Optional[list[str]] = None, directory: Optional[Path] = None) -> Diff:
    import time

    started = time.perf_counter()
    kb = kb_facts(directory)
    sides = versions or sorted(kb.versions)
    latest = max(kb.versions[v] for v in sides)
    service = datetime.date(latest // 10000, latest // 100 % 100, latest % 100)
    fields = space(kb, service)

    # An eligible case under every side: the baseline the departures are measured from.
    control = _control(directory, [])
    with control.backend() as backend:
        load_space(backend, fields, service, sides)
    control.ground([("base", []), ("baseline", [])])
    base: dict[str, int] = {}
    with control.solve(yield_=True) as handle:
        last = None
        for model in handle:
            last = [(s.arguments[0].string, s.arguments[1].number) for s in model.symbols(shown=True)
                    if s.name == "pick"]
        if last is None:
            raise RuntimeError("no case meets every criterion of every version: nothing to measure from")
        base = dict(last)
    baseline: dict = {"case_id": "baseline", "date_of_service": service.isoformat()}
    for field in fields:
        set_path(baseline, field.path, field.options[base[field.path]].value)

    def groups(part: str, known: list[list[tuple[str, int]]]) -> list[Group]:
        control = _control(directory, ["--heuristic=Domain", "--enum-mode=domRec", "0"])
        with control.backend() as backend:
            load_space(backend, fields, service, sides)
            for path, position in base.items():
                backend.add_rule([backend.add_atom(clingo.Function("base", [clingo.String(path), clingo.Number(position)]))])
            for index, group in enumerate(known):
                backend.add_rule([backend.add_atom(clingo.Function("known_group", [clingo.Number(index)]))])
                for path, position in group:
                    backend.add_rule([backend.add_atom(clingo.Function(
                        "in_group", [clingo.Number(index), clingo.String(path), clingo.Number(position)]))])
        control.ground([("base", []), ("deviations", []), (part, [])])
        found = []
        with control.solve(yield_=True) as handle:
            for model in handle:
                deviations, decisions, failing = [], {}, {v: [] for v in sides}
                for symbol in model.symbols(shown=True):
                    args = symbol.arguments
                    if symbol.name == "deviate":
                        deviations.append((args[0].string, args[1].number))
                    elif symbol.name == "decides":
                        decisions[args[0].string] = args[1].name
                    elif symbol.name == "fails":
                        failing[args[0].string].append(args[1].string)
                found.append((sorted(deviations), decisions, failing))
        return found

    def as_group(deviations, decisions, failing) -> Group:
        example = copy.deepcopy(baseline)
        example["case_id"] = "diff: " + "; ".join(
            fields_by[p].options[i].describe(p) for p, i in deviations)
        for path, position in deviations:
            set_path(example, path, fields_by[path].options[position].value)
        return Group([fields_by[p].options[i].describe(p) for p, i in deviations],
                     {v: decisions[v] for v in sides},
                     {v: sorted(failing[v], key=_policy_order) for v in sides},
                     jsonable(example))

    fields_by = {f.path: f for f in fields}
    first = groups("decisions_differ", [])
    second = groups("failures_differ", [d for d, _, _ in first])
    result = Diff(sides, jsonable(baseline),
                  sorted((as_group(*g) for g in first), key=lambda g: g.classes),
                  sorted((as_group(*g) for g in second), key=lambda g: g.classes),
                  round(time.perf_counter() - started, 2))
    return result


def _policy_order(ident: str) -> tuple:
    digits = "".join(c for c in ident if c.isdigit())
    return (0, ident) if not digits else (1, int(digits), ident)


def as_text(result: Diff) -> str:
    a, b = result.versions[0], result.versions[-1]
    lines = [f"covkb diff {a} -> {b}: {len(result.decisions_differ)} kinds of case decided "
             f"differently, {len(result.failures_differ)} decided alike on different criteria "
             f"({result.seconds} s)", "",
             "Decided differently (each a smallest set of departures from an eligible case):"]
    for group in result.decisions_differ:
        lines.append(f"  - {'; '.join(group.classes)}")
        lines.append(f"      {a}: {group.decisions[a]}   {b}: {group.decisions[b]}")
    lines += ["", "Decided alike, on different failing criteria:"]
    for group in result.failures_differ:
        lines.append(f"  - {'; '.join(group.classes)}")
        lines.append(f"      {group.decisions[a]}; {a} fails {', '.join(group.failing[a]) or 'none'}, "
                     f"{b} fails {', '.join(group.failing[b]) or 'none'}")
    lines += ["", "Each kind's example case is in --format json (`covkb compare` reproduces it)."]
    return "\n".join(lines)
