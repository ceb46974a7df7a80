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


class Remedy(msgspec.Struct, omit_defaults=True):
    """How a criterion not met could come to be met: `request` (change the request),
    `on_date` (it is met from `date`), `clinical` (a new documented clinical status),
    `history` (it cannot change)."""

    kind: str
    date: Optional[str] = None


class Criterion(msgspec.Struct, omit_defaults=True):
    id: str
    status: str
    text: str
    because: list[str]
    remedy: Optional[Remedy] = None


class Provenance(msgspec.Struct):
    covkb: str
    kb_sha256: str


class Document(msgspec.Struct):
    """What to send, in words: `fields` are case field paths, any one of them settles it."""

    fields: list[str]
    words: str


class Result(msgspec.Struct, omit_defaults=True):
    case_id: str
    policy: str
    version: Optional[str]
    decision: str
    label: str
    criteria: list[Criterion]
    advisories: list[str]
    missing: list[str]
    reason: str
    provenance: Provenance
    documentation: list[Document]
    version_requested: Optional[str] = None
    version_by_date: Optional[str] = None
    # decided under a version asked for, not the one the date selects: kept out of statistics
    what_if: bool = False


class Failure(msgspec.Struct):
    """A batch line that could not be decided."""

    case_id: Optional[str]
    line: int
    error: str


def build(case: Case, shown: Shown, policy: Policy) -> Result:
    from covkb import __version__

    words = Words(case, policy)
    criteria = []
    if shown.version is not None:
        for ident, text in policy.criteria[shown.version]:
            reasons = sorted(shown.because.get(ident, ()))
            kind = shown.remedy.get(ident) if shown.status[ident] == "not_met" else None
            remedy = None
            if kind:
                remedy = Remedy(kind, _met_on(shown.on_date.get(ident, ()), case, reasons))
            criteria.append(Criterion(ident, shown.status[ident], text,
                                      [words.because(ident, term) for _, term in reasons], remedy))
    documentation = words.documentation(sorted(shown.missing), words.doubted(shown))
    if shown.decision == "pending":
        documentation += [Document(["prior_lines" if where[0] == "line" else where],
                                   f"a clarification of {words.name(name)!r} in {words.place(where)}, not a recognised name")
                          for where, name in words.unrecognised(shown)]
        documentation += [Document([where], f"a clarification of {words.name(name)!r} in {where}: "
                                            f"it {what}, and may be misfiled")
                          for where, name, what in words.misfiled(shown)]
    by_date = None
    if shown.requested is not None:
        service = int(case.date_of_service.strftime("%Y%m%d"))
        by_date = next((v for v, (start, end) in policy.versions.items() if start <= service <= end), None)
    return Result(
        case_id=case.case_id,
        policy=policy.id,
        version=shown.version,
        decision=shown.decision,
        label=shown.label,
        criteria=criteria,
        advisories=[words.advisory(term) for _, term in sorted(shown.advisories)],
        missing=sorted(shown.missing),
        reason=words.reason(shown, criteria, documentation),
        provenance=Provenance(__version__, policy.kb_sha256),
        documentation=documentation,
        version_requested=shown.requested,
        version_by_date=by_date if shown.requested is not None else None,
        what_if=shown.requested is not None,
    )


def _met_on(sources: list[tuple], case: Case, reasons: list) -> Optional[str]:
    """The first date of service on which core.lp's arithmetic (as covkb.arith evaluates
    it) meets a criterion met with time: `age(F, A)`, the age from the birth date in F
    reaches A; `window(M)`, the window of M months back no longer holds the latest date
    the criterion's within/3 reasons name."""
    from covkb import arith

    found = None
    for source in sources:
        if source[0] == "age":
            birth, least = field(case, source[1]), source[2]
            if birth is None:
                continue
            first = birth.year * 10000 + birth.month * 100 + birth.day
            day, met = _add_months(birth, 12 * least), lambda d: arith.age(d, first, None) >= least
        else:
            months = source[1]
            latest = max((term[2] for _, term in reasons if term[0] == "within"), default=None)
            if latest is None:
                continue
            start = datetime.date(latest // 10000, latest // 100 % 100, latest % 100)
            day, met = _add_months(start, months), lambda d: (arith.window_start(d, months) or 0) > latest
        if day is None:
            continue
        day -= datetime.timedelta(days=3)
        for _ in range(10):  # the date lies within a few days of the plain calendar sum
            number = day.year * 10000 + day.month * 100 + day.day
            if met(number):
                found = max(found or day, day)
                break
            day += datetime.timedelta(days=1)
    return found.isoformat() if found else None


def _add_months(day: datetime.date, months: int) -> Optional[datetime.date]:
    """The calendar sum, the day clamped to its month; None beyond year 9999."""
    import calendar

    total = day.year * 12 + day.month - 1 + months
    year, month = total // 12, total % 12 + 1
    if year > 9998:
        return None
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


# Where each field of a case read from FHIR came from, while covkb.fhir.sourced() holds
# it: a fact is then written "lvef_percent = 58, from Observation/lvef-1".
SOURCES: ContextVar[Mapping[str, str]] = ContextVar("SOURCES", default={})


def _iso(number: int) -> str:
    return datetime.date(number // 10000, number // 100 % 100, number % 100).isoformat()


class Words:
    """Writes the knowledge base's reason terms with the values of one case.

    A term is a tuple (name, *arguments) as covkb.terms reads it.
    """

    def __init__(self, case: Case, policy: Optional[Policy] = None):
        self.case = case
        self.policy = policy
        self.spelling: Optional[dict[str, str]] = None
        self.values: dict[str, str] = {}
        facts = policy.facts if policy else {}
        self.labels = {f: w for f, w in facts.get("field_words", ())}
        self.units = {f: u for f, u in facts.get("field_unit", ())}
        self.group = {f: g[0] for g, f in facts.get("one_of", ())}

    def label(self, path: str) -> str:
        return self.labels.get(path, path)

    def measured(self, path: str) -> str:
        """The field's value with its unit: `creatinine clearance 45 mL/min`."""
        unit = self.units.get(path, "")
        plain = self._value(path)
        source = self.value(path)[len(plain):]  # ", from Observation/..." for a FHIR case
        raw = field(self.case, path)
        if isinstance(raw, bool):
            return f"{self.label(path)}: {'yes' if raw else 'no'}{source}"
        return f"{self.label(path)} {plain}{'' if unit in ('', '%') else ' '}{unit}{source}"

    def sendable(self, path: str) -> str:
        """The field as a reviewer asks for it: `left ventricular ejection fraction (%)`."""
        unit = self.units.get(path)
        return f"{self.label(path)} ({unit})" if unit else self.label(path)

    def documentation(self, missing: list[str], doubted: frozenset = frozenset()) -> list["Document"]:
        """The missing fields in words, alternatives of one group as "one of"; a doubted
        value is asked to be confirmed."""
        out: list[Document] = []
        seen: dict[str, Document] = {}
        for path in missing:
            group = self.group.get(path)
            if group and group in seen:
                seen[group].fields.append(path)
                continue
            if path in doubted:
                out.append(Document([path], f"a confirmation of {self.sendable(path)}: "
                                            f"{self.value(path)} as written is doubted (see advisories)"))
                continue
            item = Document([path], self.sendable(path))
            out.append(item)
            if group:
                seen[group] = item
        for item in out:
            if len(item.fields) > 1:
                item.words = "one of: " + ", or ".join(self.sendable(f) for f in item.fields)
        return out

    @staticmethod
    def doubted(shown: Shown) -> frozenset:
        """The fields whose documented value the knowledge base doubts."""
        return frozenset(term[1] for _, term in shown.advisories if term[0] == "doubtful")

    @staticmethod
    def misfiled(shown: Shown) -> list[tuple]:
        return [term[1:] for _, term in sorted(shown.advisories) if term[0] == "misfiled"]

    @staticmethod
    def unrecognised(shown: Shown) -> list[tuple]:
        return [(term[1], term[2]) for _, term in sorted(shown.advisories) if term[0] == "unrecognised"]

    def fact(self, ident: str, text: str, term: tuple) -> str:
        """One fact that failed a criterion, in a reviewer's words."""
        kind, args = term[0], term[1:]
        if kind == "is":
            return self.measured(args[0])
        if kind == "requires":
            return f"{self.measured(args[0])} is not {args[1]}"
        if kind == "derived":
            return f"{args[0]} {args[1]} is not {args[2]}"
        if kind == "named":
            where = args[0]
            place = f"prior line {where[1]}" if isinstance(where, tuple) else self.label(where)
            return f"{place}: {self.name(args[1])!r} {args[2]}"
        if kind == "none_of_class":
            return f"{text}: none in any prior line"
        if kind == "within":
            return f"{self.label(args[0])}: {_iso(args[1])} is on or after {_iso(args[2])}, within the window"
        return self.because(ident, term)

    def failed(self, shown: Shown, criterion: "Criterion") -> str:
        """The facts that failed a criterion, and its id: `... (criterion 5d)`."""
        terms = [term for _, term in sorted(shown.because.get(criterion.id, ()))]
        fails = shown.fails.get(criterion.id)
        if fails:
            terms = [t for t in terms if _field_of(t) in fails] or terms
        facts = [self.fact(criterion.id, criterion.text, t) for t in terms]
        return f"{'; '.join(facts) or criterion.text} (criterion {criterion.id})"

    def reason(self, shown: Shown, criteria: list["Criterion"], documentation: list["Document"]) -> str:
        """The decision in one sentence, naming the deciding facts (kb rule_words)."""
        policy = self.policy
        not_met = [c for c in criteria if c.status == "not_met"]
        unknown = [c.id for c in criteria if c.status == "unknown"]
        template = policy.words.get(("rule_words", shown.rule or ""), shown.rule or "")
        return template.format(
            facts="; ".join(self.failed(shown, c) for c in not_met),
            unknown=("criterion " if len(unknown) == 1 else "criteria ") + _join(unknown),
            documents="; ".join(d.words for d in documentation),
            contract=policy.words.get(("contract_words", shown.contract or ""), ""),
            version=shown.version,
            asserted=self.asserted(shown),
        )

    def asserted(self, shown: Shown) -> str:
        """What the case asserts of the compendium pathway, and the indication it names."""
        said = " and ".join(self.policy.words.get(("asserted_words", a), a) for a in sorted(shown.asserted))
        if field(self.case, "compendium.indication"):
            said += f" ({self.stated('compendium.indication')})"
        return said

    def value(self, path: str) -> str:
        text = self.values.get(path)
        if text is None:
            text = self.values[path] = self._value(path)
        return text

    def stated(self, path: str) -> str:
        """`path = value`, and the resource it came from when the case was read from FHIR."""
        origin = SOURCES.get().get(path)
        return f"{path} = {self.value(path)}" + (f", from {origin}" if origin else "")

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
            return self.stated(args[0])
        if kind == "absent":
            return f"{args[0]} not documented"
        if kind == "requires":
            return f"{self.stated(args[0])}, and {ident} requires {args[1]}"
        if kind == "derived":
            return f"{args[0]} = {args[1]}, and {ident} requires {args[2]}"
        if kind == "named":
            return f"{self.place(args[0])}: {self.name(args[1])!r} {args[2]}"
        if kind == "none_of_class":
            return f"{args[0]}: no agent of this class in any prior line"
        if kind == "within":
            return (f"{args[0]} has {_iso(args[1])}, on or after "
                    f"{_iso(args[2])}, the start of the window {ident} looks back over")
        if kind == "doubted":
            return f"{self.stated(args[0])} is doubted as written (see advisories): it decides nothing until confirmed"
        return repr(term)

    def advisory(self, term: tuple) -> str:
        kind, args = term[0], term[1:]
        if kind == "guideline":
            return f"{self.stated(args[0])}: {args[1]}"
        if kind == "note":
            return f"{args[0]}: {args[1]}"
        if kind == "named":
            return self.because("", term)
        if kind == "guideline_date":
            return f"{args[0]} has {_iso(args[1])}: {args[2]}"
        if kind == "unrecognised":
            return f"{self.place(args[0])}: {self.name(args[1])!r} is not a recognised name; please clarify it"
        if kind == "misfiled":
            return (f"{args[0]}: {self.name(args[1])!r} {args[2]}: it is not read as a prior cell therapy; "
                    "please clarify it (a prior line of therapy belongs in prior_lines)")
        if kind in ("doubtful", "implausible"):
            return f"{self.stated(args[0])}: {args[1]}"
        if kind == "line_note":
            return f"prior_lines line {args[0]} {args[1]}"
        return repr(term)


def _field_of(term: tuple) -> Optional[str]:
    if term[0] in ("is", "absent", "requires", "none_of_class", "within"):
        return term[1]
    if term[0] == "named":
        return "prior_lines" if isinstance(term[1], tuple) else term[1]
    return None
