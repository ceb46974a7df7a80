"""covkb whatif: the smallest changes to a request that make it covered, found by clingo.

The request is option 0 of every field of `covkb diff`'s abstract case space; the other
options are the classes the knowledge base's thresholds, windows, drug classes and
product names make. clingo chooses one option per field with kb/ deciding and whatif.lp
allowing only what a request can change (remedy kind `request`, `clinical` with
--allow clinical) and documentation of what is undocumented or left unknown; `history`
never changes. It minimizes the number of fields changed, then how far a number moves:
a number moves to the nearest value of the class, an exact threshold where the class is
one (a dose of 600 becomes 510). Every alternative of the smallest size is re-decided by
the normal path (`covkb check`), so a whatif never claims what check would not.
A criterion not met with another remedy kind (met from a date, after a treatment) is
reported with its remedy, and an alternative is re-decided on that date where it has one.
"""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import clingo
import msgspec

from covkb.input.case import Case, from_object
from covkb.engine.kb import control as kb_control
from covkb.analysis.diff import ABSENT, Field, Option, jsonable, option_facts, kb_facts, set_path, space
from covkb.engine.facts import case_facts, day as yyyymmdd

LIMIT = 10
CHANGE_KINDS = ("request", "clinical", "history")  # the kinds whatif.lp reasons about
_FIXED = {"case", "case_id", "date_of_service"}


class Change(msgspec.Struct, omit_defaults=True):
    field: str
    how: str  # request, clinical, document (undocumented) or clarify (documented, left unknown)
    was: Any = None  # the request's value (absent when undocumented)
    to: Any = None  # the new value, exact
    words: str = ""  # the new value in words: "510", "above 45", "true"


class Waived(msgspec.Struct, omit_defaults=True):
    criterion: str
    remedy: str
    date: Optional[str] = None


class Alternative(msgspec.Struct):
    changes: list[Change]
    decision: str
    label: str
    case: dict
    sentence: str


class Outcome(msgspec.Struct):
    field: str
    value: str
    status: str


class Settles(msgspec.Struct):
    criterion: str
    met_when: list[Outcome]
    not_met_when: list[Outcome]


class WhatIf(msgspec.Struct, omit_defaults=True):
    case_id: str
    version: Optional[str]
    decision: str
    allowed: list[str]
    size: Optional[int]
    alternatives: list[Alternative]
    waived: list[Waived]
    blocking: list[str]
    pending: list[Settles]
    limited: bool = False
    message: str = ""


# ---------------------------------------------------------------------------
# The request as option 0 of every field.
# ---------------------------------------------------------------------------
def _value(data: dict, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return ABSENT
        data = data[part]
    return data


def _interval(option: Option) -> Optional[tuple]:
    """(low, high, exact) of a number class, from the names covkb.analysis.diff gives them."""
    name = option.name
    if name.startswith("= "):
        point = Decimal(name[2:])
        return point, point, True
    if name.startswith("< "):
        return None, Decimal(name[2:]), False
    if name.startswith("> "):
        return Decimal(name[2:]), None, False
    if name.startswith("between "):
        low, _, high = name[len("between "):].partition(" and ")
        return Decimal(low), Decimal(high), False
    return None


def _distance(value: Decimal, option: Option) -> Optional[int]:
    """How far a class lies from a number, in hundredths, one more where it has no nearest
    value (an open end): the order of preference, never a value compared to a threshold."""
    interval = _interval(option)
    if interval is None:
        return None
    low, high, exact = interval
    if (low is None or value > low or (exact and value == low)) and (high is None or value < high or (exact and value == high)):
        return 0
    gap = (low - value) if low is not None and value <= low else (value - high)
    return math.ceil(gap * 100) + (0 if exact else 1)


def _words(option: Option) -> str:
    interval = _interval(option)
    if interval is None:
        return option.name
    low, high, exact = interval
    if exact:
        return str(low)
    if low is None:
        return f"below {high}"
    if high is None:
        return f"above {low}"
    return f"between {low} and {high}"


def _to(option: Option) -> Any:
    interval = _interval(option)
    if interval is not None and interval[2]:
        return interval[0]
    return None if option.value is ABSENT else option.value


_WITHOUT = "without "
_MOST_ENTRIES = 6  # a list with more entries is changed only as a whole class


def _entry(value: Any) -> str:
    if isinstance(value, dict):
        first, *rest = (str(v) for v in value.values())
        return first + (f" ({', '.join(rest)})" if rest else "")
    if isinstance(value, list):
        return " + ".join(_entry(v) for v in value)
    return str(value)


def _without(value: Any) -> list[Option]:
    """The request's own list with some of its entries left out, fewest first."""
    if not isinstance(value, list) or not value or len(value) > _MOST_ENTRIES:
        return []
    from itertools import combinations

    options = []
    for count in range(1, len(value)):
        for dropped in combinations(range(len(value)), count):
            kept = [v for i, v in enumerate(value) if i not in dropped]
            options.append(Option(_WITHOUT + ", ".join(_entry(value[i]) for i in dropped), kept))
    return options


class _Space:
    def __init__(self, case: Case, version: str, directory: Optional[Path], met: list[str]):
        self.met = met
        self.raw = _plain(case)
        self.service = case.date_of_service
        kb = kb_facts(directory)
        self.fields: list[Field] = []
        for field in space(kb, self.service):
            value = _value(self.raw, field.path)
            self.fields.append(Field(field.path, [Option("as is", value), *field.options, *_without(value)]))
        self.by_path = {f.path: f for f in self.fields}
        self.version = version
        self.directory = directory

    def load(self, backend, unknown: list[str], allow: list[str], waived: list[str]) -> None:
        """The request and its space as facts for whatif.lp (see its head)."""
        F, S, N = clingo.Function, clingo.String, clingo.Number

        def fact(symbol):
            backend.add_rule([backend.add_atom(symbol)])

        fact(F("service", [N(yyyymmdd(self.service))]))
        fact(F("side", [N(1), S(self.version)]))
        covered: set = set()
        for field in self.fields:
            fact(F("field", [S(field.path)]))
            if field.options[0].value is not ABSENT:
                fact(F("now", [S(field.path)]))
            mine = None
            value = field.options[0].value
            number = Decimal(value) if isinstance(value, (int, Decimal)) and not isinstance(value, bool) else None
            for position, option in enumerate(field.options):
                key = [S(field.path), N(position)]
                fact(F("option", key))
                gives = option_facts(field.path, option, self.service)
                if position == 0:
                    mine = set(gives)
                    covered |= mine
                elif set(gives) == mine:
                    fact(F("same", key))
                if option.value is ABSENT and position:
                    fact(F("absent", key))
                if number is not None and position:
                    distance = _distance(number, option)
                    if distance:
                        fact(F("cost", [*key, N(distance)]))
                if position and isinstance(option.value, list) and isinstance(field.options[0].value, list):
                    # leaving out fewer of the request's entries is nearer
                    kept = option.value if option.name.startswith(_WITHOUT) else []
                    fact(F("cost", [*key, N(100 * (len(field.options[0].value) - len(kept)) + 1)]))
                for term in gives:
                    fact(F("gives", [*key, term]))
        # What the request says beyond the space (a date of birth, a compendium indication): as is.
        case = from_object(self.raw)
        rest = [s for s in (F(t.name, t.arguments[1:]) for t in case_facts(0, case) if t.name not in _FIXED)
                if s not in covered]
        fact(F("field", [S("(rest)")]))
        fact(F("option", [S("(rest)"), N(0)]))
        fact(F("now", [S("(rest)")]))
        for term in rest:
            fact(F("gives", [S("(rest)"), N(0), term]))
        for ident in unknown:
            fact(F("unknown_now", [S(ident)]))
        for ident in self.met:
            fact(F("met_now", [S(ident)]))
        for kind in allow:
            fact(F("allow", [F(kind)]))
        for ident in waived:
            fact(F("waived", [S(ident)]))

    def control(self, extra: list[str] = ()) -> clingo.Control:
        control = kb_control(self.directory, ("--warn=none", *extra))
        package = resources.files("covkb.analysis")
        control.add("base", [], package.joinpath("diff.lp").read_text())
        control.add("base", [], package.joinpath("whatif.lp").read_text())
        return control


def _models(control: clingo.Control, programs, **config) -> list[list[clingo.Symbol]]:
    control.ground(programs)
    for key, value in config.items():
        setattr(control.configuration.solve, key, value)
    found = []
    with control.solve(yield_=True) as handle:
        for model in handle:
            found.append((model.optimality_proven, model.symbols(shown=True)))
    return found


# ---------------------------------------------------------------------------
# The analysis.
# ---------------------------------------------------------------------------
def whatif(case: Case, allow_clinical: bool = False, version: Optional[str] = None,
           limit: int = LIMIT, directory: Optional[Path] = None) -> WhatIf:
    from covkb.api import check

    result = check(case, version, directory)
    allow = ["request", "clinical"] if allow_clinical else ["request"]
    not_met = {c.id: c for c in result.criteria if c.status == "not_met"}
    waived = [Waived(i, c.remedy.kind, c.remedy.date) for i, c in not_met.items()
              if c.remedy is not None and c.remedy.kind not in CHANGE_KINDS]
    blocking = [i for i, c in not_met.items()
                if c.remedy is None or (c.remedy.kind in CHANGE_KINDS and c.remedy.kind not in allow)]
    unknown = [c.id for c in result.criteria if c.status == "unknown"]
    answer = WhatIf(case.case_id, result.version, result.decision, allow, None, [], waived, blocking, [])
    if result.decision == "covered":
        answer.message = "covered as it is: nothing to change"
        return answer
    if result.version is None:
        answer.message = f"{result.label}: this policy does not decide the request, so no change to it can make it covered"
        return answer

    where = _Space(case, result.version, directory, [c.id for c in result.criteria if c.status == "met"])
    words = _field_words(directory)
    if unknown:
        answer.pending = _pending(where, unknown, allow, [w.criterion for w in waived], words)

    # The smallest sets of fields changed: every optimal set, projected on the fields.
    control = where.control(["--opt-mode=optN", "--project=project"])
    with control.backend() as backend:
        where.load(backend, unknown, allow, [w.criterion for w in waived])
    control.add("sets", [], "#project changed/1. #show changed/1.")
    sets = [sorted(s.arguments[0].string for s in symbols if s.name == "changed")
            for proven, symbols in _models(control, [("base", []), ("whatif", []), ("covered", []),
                                                     ("smallest", []), ("sets", [])], models=0)
            if proven]
    unique = sorted({tuple(s) for s in sets}, key=lambda s: (len(s), s))
    if not unique:
        answer.message = _no_route(blocking, not_met, allow_clinical)
        return answer
    answer.size = len(unique[0])
    answer.limited = len(unique) > limit
    for fields in unique[:limit]:
        answer.alternatives.append(_alternative(where, fields, unknown, allow, waived, words, version, directory))
    return answer


def _alternative(where: _Space, fields, unknown, allow, waived, words, version, directory) -> Alternative:
    from covkb.api import check

    control = where.control()
    with control.backend() as backend:
        where.load(backend, unknown, allow, [w.criterion for w in waived])
        for field in where.fields:
            atom = backend.add_atom(clingo.Function("changed", [clingo.String(field.path)]))
            # exactly these fields change
            backend.add_rule([], [-atom] if field.path in fields else [atom])
    models = _models(control, [("base", []), ("whatif", []), ("covered", []), ("nearest", [])])
    symbols = models[-1][1]
    picks = {s.arguments[0].string: s.arguments[1].number for s in symbols if s.name == "pick"}
    hows = {s.arguments[0].string: s.arguments[1].name for s in symbols if s.name == "how"}
    data = copy.deepcopy(where.raw)
    changes = []
    for path in fields:
        field = where.by_path[path]
        option = field.options[picks[path]]
        was = field.options[0].value
        set_path(data, path, option.value if _to(option) is None else _to(option))
        said = _words(option)
        if hows[path] == "document" and _interval(option) is not None:
            said = _range(field, _every(where, fields, picks, path, unknown, allow, waived))
        changes.append(Change(path, hows[path], None if was is ABSENT else was, _to(option), said))
    dates = [w.date for w in waived if w.date]
    if dates and len(dates) == len(waived):
        data["date_of_service"] = max(dates)
    data = jsonable(data)
    decided = check(from_object(data), version, directory)
    return Alternative(changes, decided.decision, decided.label, data,
                       _sentence(changes, waived, words, decided.decision))


def _every(where: _Space, fields, picks, path, unknown, allow, waived) -> list[int]:
    """Every class of a field being documented that is covered with the other changes as chosen."""
    control = where.control()
    with control.backend() as backend:
        where.load(backend, unknown, allow, [w.criterion for w in waived])
        for field in where.fields:
            if field.path == path:
                continue
            atom = backend.add_atom(clingo.Function("pick", [clingo.String(field.path),
                                                             clingo.Number(picks.get(field.path, 0))]))
            backend.add_rule([], [-atom])
    models = _models(control, [("base", []), ("whatif", []), ("covered", [])], enum_mode="brave", models=0)
    return sorted(s.arguments[1].number for s in models[-1][1]
                  if s.name == "pick" and s.arguments[0].string == path and s.arguments[1].number) if models else []


def _range(field: Field, positions: list[int]) -> str:
    """Classes of a number, in order, said as the ranges they make: "300 to 510", "above 45"."""
    runs: list[list[tuple]] = []
    previous = None
    for position in positions:
        interval = _interval(field.options[position])
        if interval is None:
            continue
        if previous is not None and position == previous + 1:
            runs[-1].append(interval)
        else:
            runs.append([interval])
        previous = position
    said = []
    for run in runs:
        low, _, low_exact = run[0]
        _, high, high_exact = run[-1]
        if low == high and low_exact:
            said.append(f"{low}")
        elif low is None:
            said.append(f"{high} or less" if high_exact else f"below {high}")
        elif high is None:
            said.append(f"{low} or more" if low_exact else f"above {low}")
        elif low_exact and high_exact:
            said.append(f"{low} to {high}")
        else:
            said.append(f"{'from' if low_exact else 'above'} {low} and {'up to' if high_exact else 'below'} {high}")
    return " or ".join(said)


def _pending(where: _Space, unknown, allow, waived, words) -> list[Settles]:
    control = where.control()
    with control.backend() as backend:
        where.load(backend, unknown, allow, waived)
    models = _models(control, [("base", []), ("whatif", []), ("one_at_a_time", [])], enum_mode="brave", models=0)
    outcomes = [s for s in models[-1][1] if s.name == "outcome"] if models else []
    found: dict[tuple, list[int]] = {}
    for symbol in outcomes:
        path, position, criterion, status = (symbol.arguments[0].string, symbol.arguments[1].number,
                                             symbol.arguments[2].string, symbol.arguments[3].name)
        found.setdefault((criterion, status, path), []).append(position)
    settles = []
    for ident in unknown:
        said = {"met": [], "not_met": []}
        for (criterion, status, path), positions in sorted(found.items()):
            if criterion != ident or status == "unknown":
                continue
            field = where.by_path[path]
            positions = sorted(set(positions))
            value = (_range(field, positions) if _interval(field.options[positions[0]]) is not None
                     else " or ".join(_words(field.options[p]) for p in positions))
            said[status].append(Outcome(path, value, status))
        settles.append(Settles(ident, said["met"], said["not_met"]))
    return settles


def _no_route(blocking, not_met, allow_clinical) -> str:
    reasons = []
    for ident in blocking:
        criterion = not_met[ident]
        kind = criterion.remedy.kind if criterion.remedy else "history"
        reasons.append(f"{ident} ({kind})")
    clinical = any(not_met[i].remedy is not None and not_met[i].remedy.kind == "clinical" for i in blocking)
    extra = "; --allow clinical also considers clinical statuses" if clinical and not allow_clinical else ""
    return ("no change the request can make covers it: " + (", ".join(reasons) or "no allowed change meets the criteria")
            + extra)


def _field_words(directory: Optional[Path]) -> tuple[dict, dict, dict]:
    from covkb.engine.reference import policy

    facts = policy(directory).facts
    return ({f: w for f, w in facts.get("field_words", ())}, {f: u for f, u in facts.get("field_unit", ())},
            {k[0] if isinstance(k, tuple) else k: w for k, w in facts.get("remedy_words", ())})


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------
def _phrase(change: Change, words: tuple[dict, dict, dict]) -> str:
    """A change in words: what the request does, or (documentation, a clinical status) what
    the record shows."""
    labels, units, _ = words
    label = labels.get(change.field, change.field)
    unit = units.get(change.field)
    said = change.words + (f" {unit}" if unit else "")
    for tail in (" or more", " or less"):
        if unit and change.words.endswith(tail):
            said = f"{change.words[:-len(tail)]} {unit}{tail}"
    shown = _stated(change)
    if change.to is True or change.to is False:
        if shown:
            return label if change.to else f"no {label}"
        return f"the request is {'' if change.to else 'not '}{label}"
    if _is_number_words(change.words):
        if shown:
            joined = "" if change.words.split(" ")[0] in ("above", "below", "from") else "of "
            return f"a {label} {joined}{said}"
        return f"the {label} is {said}"
    if change.words.startswith(_WITHOUT) and not shown:
        return f"the {label} leave out {change.words[len(_WITHOUT):]}"
    return f"{label}: {change.words}"


def _stated(change: Change) -> bool:
    return change.how in ("document", "clinical", "clarify")


def _is_number_words(text: str) -> bool:
    head = text.split(" ")[0]
    return head in ("above", "below", "from") or head.replace(".", "", 1).isdigit()


def _and(parts: list[str], between: str = ", ") -> str:
    return parts[0] if len(parts) == 1 else between.join(parts[:-1]) + " and " + parts[-1]


def _sentence(changes: list[Change], waived: list[Waived], words, decision: str) -> str:
    done = [_phrase(c, words) for c in changes if not _stated(c)]
    remedies = words[2]
    for w in waived:
        if w.date:
            done.append(f"the date of service is {w.date} or later (criterion {w.criterion} is met from then)")
        else:
            said = next((t for t in (remedies.get(f"{w.remedy}_unknown"), remedies.get(w.remedy))
                         if t and "{" not in t), w.remedy.replace("_", " "))
            done.append(f"criterion {w.criterion} is {said}" if said.startswith("met ")
                        else f"criterion {w.criterion} is met ({said})")
    said = [_and(done)] if done else []
    for how, verb in (("clarify", "clarifies"), ("document", "documents"), ("clinical", "documents")):
        shown = [_phrase(c, words) for c in changes if c.how == how]
        if shown:
            said.append(f"the record {verb}{' ' if len(shown) == 1 else ': '}" + _and(shown, "; "))
    if decision == "covered":
        return "Covered if " + ", and ".join(said) + "."
    # a criterion met only after something the request cannot bring about, at no date given
    return f"Decided {decision} as it stands; covered once " + ", and ".join(said) + "."


def as_text(answer: WhatIf) -> str:
    lines = [f"covkb whatif {answer.case_id}: {answer.decision} under {answer.version or 'no version'}; "
             f"changes allowed: {', '.join(answer.allowed)} and documentation"]
    if answer.message:
        lines.append(answer.message)
    for waived in answer.waived:
        lines.append(f"  criterion {waived.criterion}: {waived.remedy}" + (f", met from {waived.date}" if waived.date else ""))
    if answer.alternatives:
        lines += ["", f"{len(answer.alternatives)} smallest alternative(s), {answer.size} change(s) each"
                  + (" (more exist; --limit)" if answer.limited else "") + ":"]
        for index, alternative in enumerate(answer.alternatives, start=1):
            lines.append(f"  {index}. re-decided {alternative.decision} ({alternative.label})")
            for change in alternative.changes:
                was = "not documented" if change.was is None else _show(change.was)
                lines.append(f"       {change.how}: {change.field} {was} -> {change.words}")
            lines.append(f"       {alternative.sentence}")
    for settles in answer.pending:
        lines += ["", f"Criterion {settles.criterion}, now unknown:"]
        lines.append("  met when " + ("; ".join(f"{o.field} {o.value}" for o in settles.met_when) or "no one value documented meets it"))
        lines.append("  not met when " + ("; ".join(f"{o.field} {o.value}" for o in settles.not_met_when) or "no one value documented fails it"))
    return "\n".join(lines)


def _plain(case: Case) -> dict:
    """The case as JSON data, numbers exact."""
    from covkb.results.render import canonical

    return msgspec.json.Decoder(float_hook=Decimal).decode(canonical(case))


def _show(value: Any) -> str:
    from covkb.results.render import canonical

    return value if isinstance(value, str) else canonical(value)
