"""The knowledge base's atoms for one case → the result object of docs/case-format.md.

The reasons are the knowledge base's: each `because` and `advisory` term names
the field and carries the policy's words; this module only writes them out with
the case's own values.
"""

from __future__ import annotations

import datetime
from contextvars import ContextVar
from typing import Mapping, Optional

import msgspec

from covkb.input.case import Case
from covkb.engine.vocabulary import Policy, Shown
from covkb.engine.facts import day as yyyymmdd, field, fold


class Remedy(msgspec.Struct, omit_defaults=True):
    """How a criterion not met could come to be met: `request` (change the request),
    `on_date` (it is met from `date`), `after_treatment` (once the member has received a
    further line or class), `clinical` (a new documented clinical status), `history` (it
    cannot change); `words` says it, with every condition it rests on besides: `document`,
    fields still open once it is applied; `ongoing`, disease documented as present on the
    date of service (no date leaves the window until it ends); `version_ends`, the applied
    version's last day when `date` falls after it, and `version_then`, the version in force
    on `date`."""

    kind: str
    date: Optional[str] = None
    words: Optional[str] = None
    document: list[str] = []
    ongoing: bool = False
    version_ends: Optional[str] = None
    version_then: Optional[str] = None


class Criterion(msgspec.Struct, omit_defaults=True):
    """`text` is the policy's words verbatim; `reading`, when there is one, is how covkb
    reads them (the framing criterion 5 gives its items, the opening sentence read into 2)."""

    id: str
    status: str
    text: str
    because: list[str]
    remedy: Optional[Remedy] = None
    reading: Optional[str] = None


class Provenance(msgspec.Struct):
    covkb: str
    kb_sha256: str


class Document(msgspec.Struct, omit_defaults=True):
    """What to send, in words: `fields` are case field paths, any one of them settles it
    unless the words say "each of"; `for_resubmission` when it cannot change this
    decision (the decision is made, or what it settles cannot change it) and only a
    resubmission would need it."""

    fields: list[str]
    words: str
    for_resubmission: bool = False


class Suggestion(msgspec.Struct):
    """A name no table holds that looks like a typo of the one known name `nearest`."""

    field: str
    name: str
    nearest: str


class Result(msgspec.Struct, omit_defaults=True, kw_only=True):
    case_id: str
    date_of_service: Optional[str] = None
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
    # added in the third release: unrecognised names that look like a typo of a known name
    did_you_mean: list[Suggestion] = []


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
        readings = tables(policy).readings
        because, status, remedies = shown.because, shown.status, shown.remedy
        for ident, text in policy.criteria[shown.version]:
            reasons = sorted(because[ident]) if ident in because else []
            state = status[ident]
            kind = remedies.get(ident) if state == "not_met" else None
            remedy = _remedy(kind, ident, shown, policy, words, reasons) if kind else None
            criteria.append(Criterion(ident, state, text,
                                      [words.because(ident, term) for _, term in reasons], remedy,
                                      readings.get((shown.version, ident))))
    documentation = words.documentation(sorted(shown.missing), shown)
    if shown.decision in ("pending", "not_covered"):
        documentation += [Document(["prior_lines" if where[0] == "line" else where],
                                   words.write("document", "unrecognised", (where, name)),
                                   shown.decision != "pending" or name not in shown.decisive_names)
                          for where, name in words.unrecognised(shown)]
        documentation += [Document([where], words.write("document", "misfiled", (where, name, what)),
                                   shown.decision != "pending")
                          for where, name, what in words.misfiled(shown)]
    return Result(
        case_id=case.case_id,
        date_of_service=case.date_of_service.isoformat(),
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
        version_by_date=shown.in_force if shown.requested is not None else None,
        what_if=shown.requested is not None,
        did_you_mean=[Suggestion(words.place(where), words.name(name), near)
                      for where, name in words.unrecognised(shown)
                      if (near := nearest(name, policy)) is not None],
    )


class Tables:
    """What the writer looks up in kb/words.lp's atoms, gathered once per policy."""

    def __init__(self, policy: Policy):
        facts = policy.facts
        self.readings = {(v, i): w for v, i, w in facts.get("reading", ())}
        self.said = {k[0]: w for k, w in facts.get("remedy_words", ())}
        self.treatment = {(v, i): w for v, i, w in facts.get("treatment", ())}
        self.labels = {f: w for f, w in facts.get("field_words", ())}
        self.units = {f: u for f, u in facts.get("field_unit", ())}
        self.group = {f: g[0] for g, f in facts.get("one_of", ())}
        self.counted = {f: (one, many) for f, one, many in facts.get("count_words", ())}
        self.cited = {i: w for i, w in facts.get("cite_words", ())}
        self.joins = {g[0]: (start, join) for g, start, join in facts.get("group_words", ())}
        # per form, every kind's sentence as a writer, a kind with none in the form taking its
        # because sentence
        sentences = {(form[0], kind[0]): compiled(w) for form, kind, w in facts.get("sentence", ())}
        because = {k: s for (f, k), s in sentences.items() if f == "because"}
        self.forms = {form: {kind: writer(parts) for kind, parts in
                             {**because, **{k: s for (f, k), s in sentences.items() if f == form}}.items()}
                      for form in {*FORMS, *(f for f, _ in sentences)}}
        self.phrases = {key: w for key, w in facts.get("phrase", ())}
        self.bases = {f: compiled(w) for f, w in facts.get("field_basis", ())}
        self.joined = frozenset(u for u, in facts.get("unit_joined", ()))


# The forms a term is written in (kb/words.lp sentence/3).
FORMS = ("because", "fact", "advisory", "document")
# A template's fields: {N.rendering} fills argument N as Words renders it ("" its text);
# {ident}, {text}, {service} the criterion's id and words and the date of service.
RENDERINGS = ("", "stated", "measured", "label", "sendable", "value", "basis", "place", "day", "name")
NAMED = ("ident", "text", "service")


def compiled(template: str) -> tuple:
    """A template as parts (literal, argument index or name or None, rendering), read once:
    filling it then needs no parsing (Words.write). kb/'s self-check refuses a template
    with any other field."""
    import string

    parts = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            parts.append((literal, None, ""))
            continue
        if spec or conversion:
            raise ValueError(f"kb/words.lp: {template!r}: a field with a format or conversion")
        head, _, rendering = name.partition(".")
        if head.isdigit() and rendering in RENDERINGS:
            parts.append((literal, int(head), rendering))
        elif head in NAMED and not rendering:
            parts.append((literal, head, ""))
        else:
            raise ValueError(f"kb/words.lp: {template!r} names {{{name}}}, which the writer cannot fill")
    return tuple(parts)


def writer(parts: tuple):
    """A compiled template as a function (words, arguments, ident, text) → str; a template
    of one field, as most are, calls its rendering straight."""
    if len(parts) == 1 and parts[0][1].__class__ is int:
        literal, at, rendering = parts[0]
        render = RENDER[rendering]
        if literal:
            return lambda words, args, ident, text: literal + render(words, args[at])
        return lambda words, args, ident, text: render(words, args[at])
    return lambda words, args, ident, text: words.fill(parts, args, ident, text)


def tables(policy: Policy) -> Tables:
    got = policy.derived.get("tables")
    if got is None:
        got = policy.derived["tables"] = Tables(policy)
    return got


_NO_TABLES = Tables(Policy())


def nearest(folded: str, policy: Policy) -> Optional[str]:
    """The known name an unrecognised name is a likely typo of, or None: within
    kb/words.lp's typo_edits of exactly one known name (compared as written and
    compacted), and no word of it ending in a drug_stem, which spells a real drug of its own."""
    from covkb.engine.facts import compacted

    allowed = sorted((least[1], edits) for least, edits in policy.facts.get("typo_edits", ()))
    stems = tuple(s[0] for s in policy.facts.get("drug_stem", ()))
    edits = max((e for least, e in allowed if len(folded) >= least), default=None)
    words = folded.replace("-", " ").replace("/", " ").split()
    if edits is None or any(w.endswith(stems) for w in words):
        return None
    forms = {folded, compacted(folded)}
    best: dict[str, int] = {}
    for known in policy.names:
        distance = min(_edits(form, known, edits) for form in forms)
        if distance <= edits:
            best[known] = distance
    if not best:
        return None
    least = min(best.values())
    closest = [k for k, d in best.items() if d == least]
    return closest[0] if len(closest) == 1 else None


def _edits(a: str, b: str, limit: int) -> int:
    """Edits from a to b (a letter added, dropped, changed, or two neighbours swapped),
    or limit + 1 when more than limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before, row = None, list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (x != y))
            if before is not None and i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


def _remedy(kind: str, ident: str, shown: Shown, policy: Policy, words: "Words", reasons: list) -> Remedy:
    """A criterion's remedy from kb/words.lp's atoms for the case, in its words."""
    version = shown.version or ""
    said = tables(policy).said
    remedy = Remedy(kind, document=sorted(shown.remedy_open.get(ident, ())))
    values: dict[str, object] = {"ident": ident}
    if kind == "on_date":
        sources = shown.on_date.get(ident, ())
        day, remedy.ongoing = _met_on(sources, words.case, reasons)
        remedy.date = day
        for source in sources:
            values.update({"least": source[2]} if source[0] == "age" else {"months": source[1]})
        values["latest"] = max((iso_day(t[2]) for _, t in reasons if t[0] == "within"), default="")
        if remedy.ongoing:
            text = said["ongoing"]
        elif day is None:
            text = said["on_date_unknown"]  # these words name the date of birth they need
        elif remedy.document:
            text = policy.words.get(("on_date_event", sources[0][0]), said["on_date"])
        else:
            text = said["on_date"]
        text = text.format(date=day, **values)
        if day is not None:
            end = policy.versions[version][1]
            if int(day.replace("-", "")) > end:
                remedy.version_ends = iso_day(end)
                from covkb.engine.reference import in_force

                remedy.version_then = in_force(int(day.replace("-", "")), policy.directory)
                text = _beyond(text, said, policy, version, ident, remedy)
    elif kind == "request":
        text = policy.remedies.get((version, ident), "")
    elif kind == "after_treatment":
        treatment = tables(policy).treatment
        text = said[kind].format(treatment=treatment.get((version, ident), ""))
    else:
        text = said.get(kind, kind)
    if remedy.document and not (kind == "on_date" and remedy.date is None and not remedy.ongoing):
        text = said["pending"].format(remedy=text, fields=", ".join(words.sendable(f) for f in remedy.document))
    remedy.words = text
    return remedy


def _beyond(text: str, said: dict, policy: Policy, version: str, ident: str, remedy: Remedy) -> str:
    """A date after the applied version's end: say so, and how the version then reads it."""
    then = remedy.version_then
    start = policy.versions[then][0] if then else None
    moved = next((p[3] for p in policy.facts.get("correspond", ())
                  if p[0] == version and p[1] == ident and p[2] == then), None)
    guideline = said["guidelines"].format(ident=ident, version=version) if isinstance(moved, tuple) else ""
    return said["version_ends"].format(remedy=text, version=version, end=remedy.version_ends,
                                       start=iso_day(start) if start else "",
                                       next=then or tables(policy).phrases[("none",)], then=guideline)


def _met_on(sources: list[tuple], case: Case, reasons: list) -> tuple[Optional[str], bool]:
    """The first date of service on which core.lp's arithmetic (as covkb.engine.arith evaluates
    it) meets a criterion met with time: `age(F, A)`, the age from the birth date in F
    reaches A; `window(M)`, the window of M months back no longer holds the latest date
    the criterion's within/3 reasons name. No date, and True, when that latest date is the
    date of service: disease ongoing then (kb/words.lp, remedy_words(ongoing, ...))."""
    from covkb.engine import arith

    found = None
    for source in sources:
        if source[0] == "age":
            birth, least = field(case, source[1]), source[2]
            if birth is None:
                continue
            first = yyyymmdd(birth)
            day, met = _add_months(birth, 12 * least), lambda d: arith.age(d, first, None) >= least
        else:
            months = source[1]
            latest = max((term[2] for _, term in reasons if term[0] == "within"), default=None)
            if latest is None:
                continue
            if latest == yyyymmdd(case.date_of_service):
                return None, True
            start = datetime.date(latest // 10000, latest // 100 % 100, latest % 100)
            day, met = _add_months(start, months), lambda d: (arith.window_start(d, months) or 0) > latest
        if day is None:
            continue
        day -= datetime.timedelta(days=3)
        for _ in range(10):  # the date lies within a few days of the plain calendar sum
            if met(yyyymmdd(day)):
                found = max(found or day, day)
                break
            day += datetime.timedelta(days=1)
    return (found.isoformat() if found else None), False


def _add_months(day: datetime.date, months: int) -> Optional[datetime.date]:
    """The calendar sum, the day clamped to its month; None beyond year 9999."""
    import calendar

    total = day.year * 12 + day.month - 1 + months
    year, month = total // 12, total % 12 + 1
    if year > 9998:
        return None
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# Where each field of a case read from FHIR came from, while covkb.fhir.reading.sourced() holds
# it: a fact is then written "lvef_percent = 58, from Observation/lvef-1".
SOURCES: ContextVar[Mapping[str, str]] = ContextVar("SOURCES", default={})


def iso_day(number: int) -> str:
    return datetime.date(number // 10000, number // 100 % 100, number % 100).isoformat()


class Words:
    """Writes the knowledge base's reason terms with the values of one case.

    A term is a tuple (name, *arguments) as covkb.engine.terms reads it. Every sentence is
    a template of kb/words.lp (sentence/3, phrase/2); this class fills them with the case's
    values and knows no words of its own.
    """

    def __init__(self, case: Case, policy: Optional[Policy] = None):
        self.case = case
        self.policy = policy
        self.spelling: Optional[dict[str, str]] = None
        self.values: dict[str, str] = {}
        self.statements: dict[str, str] = {}  # stated(path), once per path
        found = tables(policy) if policy else _NO_TABLES
        self.labels, self.units, self.group = found.labels, found.units, found.group
        self.counted, self.cited, self.joins = found.counted, found.cited, found.joins
        self.forms, self.phrases, self.bases = found.forms, found.phrases, found.bases
        self.joined = found.joined

    def phrase(self, *key) -> str:
        return self.phrases[key]

    def write(self, form: str, kind: str, args: tuple, ident: str = "", text: str = "") -> str:
        """A term of `kind` in its `form`'s sentence (kb/words.lp sentence/3); a form with no
        sentence for the kind writes it as `because` does."""
        write = self.forms[form].get(kind)
        if write is None:
            return repr((kind, *args))
        return write(self, args, ident, text)

    def fill(self, parts: tuple, args: tuple, ident: str = "", text: str = "") -> str:
        out = []
        for literal, at, rendering in parts:
            out.append(literal)
            if at is None:
                continue
            if at.__class__ is int:
                out.append(RENDER[rendering](self, args[at]))
            else:
                out.append(ident if at == "ident" else text if at == "text" else self.case.date_of_service.isoformat())
        return "".join(out)

    def text(self, raw) -> str:
        """An argument's text: a term whose name has a phrase/2 is written by it."""
        if raw.__class__ is tuple:
            return self.phrases[(raw[0],)].format(*raw[1:])
        return str(raw)

    def basis(self, path: str) -> str:
        """The field a derived value was taken from, in kb/words.lp field_basis/2 words."""
        parts = self.bases.get(path)
        return self.fill(parts, (path,)) if parts else ""

    def label(self, path) -> str:
        if isinstance(path, tuple):  # a place such as line(L)
            return self.of_place("label", path)
        return self.labels.get(path, path)

    def of_place(self, how: str, where: tuple) -> str:
        """A place such as line(L) in kb/words.lp's phrase(How(line), ...) words."""
        return self.phrases[(how, (where[0],))].format(*where[1:])

    def measured(self, path: str) -> str:
        """The field's value with its unit: `creatinine clearance 45 mL/min`."""
        unit = self.units.get(path, "")
        plain = self._value(path)
        source = self.value(path)[len(plain):]  # ", from Observation/..." for a FHIR case
        raw = field(self.case, path)
        if isinstance(raw, bool):
            return f"{self.label(path)}: {self.phrase('yes' if raw else 'no')}{source}"
        if path in self.counted and isinstance(raw, list):
            one, many = self.counted[path]
            listed = "; ".join(", ".join(item) if isinstance(item, list) else str(item) for item in raw)
            return f"{len(raw)} {one if len(raw) == 1 else many}{f' ({listed})' if raw else ''}{source}"
        space = "" if unit == "" or unit in self.joined else " "
        return f"{self.label(path)} {plain}{space}{unit}{source}"

    def sendable(self, path: str) -> str:
        """The field as a reviewer asks for it: `left ventricular ejection fraction (%)`."""
        unit = self.units.get(path)
        return f"{self.label(path)} ({unit})" if unit else self.label(path)

    def cite(self, idents: list[str]) -> str:
        """Criteria as a reason cites them, in the order given: `criteria 4 and 5b`; a
        requirement the policy does not number by its kb/words.lp words."""
        numbered = [i for i in idents if i not in self.cited]
        parts = []
        for ident in idents:
            if ident in self.cited:
                parts.append(self.cited[ident])
            elif ident == numbered[0]:
                parts.append(self.phrase("criterion" if len(numbered) == 1 else "criteria").format(self.join(numbered)))
        return self.join(parts)

    def join(self, items: list[str]) -> str:
        """`a`, `a and b`, `a, b and c`: the last joined by kb/words.lp's phrase(and, ...)."""
        if len(items) <= 1:
            return "".join(items)
        return ", ".join(items[:-1]) + self.phrase("and") + items[-1]

    def documentation(self, missing: list[str], shown: Optional[Shown] = None) -> list["Document"]:
        """The missing fields in words, alternatives of one group as "one of" (or "each of"
        where the case needs every one, kb/words.lp all_of), each marked when it is only
        for a resubmission; a doubted value is asked to be confirmed."""
        doubted = self.doubted(shown) if shown is not None else frozenset()
        out: list[Document] = []
        seen: dict[str, Document] = {}
        joins = self.joins
        for path in missing:
            group = self.group.get(path)
            if group and group in seen:
                seen[group].fields.append(path)
                continue
            later = shown is not None and path in shown.for_resubmission
            if path in doubted:
                out.append(Document([path], self.write("document", "doubted", (path,)), later))
                continue
            item = Document([path], self.sendable(path), later)
            out.append(item)
            if group:
                seen[group] = item
        every = shown.all_of if shown is not None else set()
        for item in out:
            if len(item.fields) > 1:
                start, join = joins["all_of" if self.group[item.fields[0]] in every else "one_of"]
                item.words = start + join.join(self.sendable(f) for f in item.fields)
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
        return self.write("fact", term[0], term[1:], ident, text)

    def failed(self, shown: Shown, criterion: "Criterion") -> str:
        """The facts that failed a criterion, in a reviewer's words."""
        terms = [term for _, term in sorted(shown.because.get(criterion.id, ()))]
        fails = shown.fails.get(criterion.id)
        if fails:
            terms = [t for t in terms if _field_of(t) in fails] or terms
        facts = [self.fact(criterion.id, criterion.text, t) for t in terms]
        return '; '.join(facts) or criterion.text

    def failures(self, shown: Shown, not_met: list["Criterion"]) -> str:
        """The facts that failed each criterion not met, with the criteria they failed:
        the same facts failing several criteria are said once, citing them all."""
        cited: dict[str, list[str]] = {}
        for criterion in not_met:
            cited.setdefault(self.failed(shown, criterion), []).append(criterion.id)
        return "; ".join(f"{facts} ({self.cite(idents)})" for facts, idents in cited.items())

    def reason(self, shown: Shown, criteria: list["Criterion"], documentation: list["Document"]) -> str:
        """The decision in one sentence, naming the deciding facts (kb rule_words)."""
        policy = self.policy
        not_met = [c for c in criteria if c.status == "not_met"]
        unknown = [c.id for c in criteria if c.status == "unknown"]
        # the reason's words are kb/'s reason_rule: the decided rule's unless kb/ says otherwise
        template = policy.words[("rule_words", shown.reason_rule)]
        if shown.decision == "pending":  # what cannot change the decision is not asked for
            documentation = [d for d in documentation if not d.for_resubmission]
            unknown = [c.id for c in criteria if c.id in shown.can_change]
        unasserted = policy.facts.get("unasserted_words", [("",)])[0][0]
        return template.format(
            facts=self.failures(shown, not_met),
            unknown=self.cite(unknown),
            date_of_service=self.case.date_of_service.isoformat(),
            unasserted="".join(unasserted.format(category=c) for c in sorted(shown.unasserted)),
            documents="; ".join(d.words for d in documentation),
            contract=policy.words.get(("contract_words", shown.contract or ""), ""),
            version=shown.version,
            asserted=self.asserted(shown),
        )

    def asserted(self, shown: Shown) -> str:
        """What the case asserts of the compendium pathway, and the indication it names."""
        said = self.phrase("and").join(self.policy.words.get(("asserted_words", a), a) for a in sorted(shown.asserted))
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
        text = self.statements.get(path)
        if text is None:
            origin = SOURCES.get().get(path)
            if origin:
                text = self.phrases[("sourced",)].format(path=path, value=self.value(path), origin=origin)
            else:
                text = self.phrases[("stated",)].format(path=path, value=self.value(path))
            self.statements[path] = text
        return text

    def _value(self, path: str) -> str:
        value = field(self.case, path)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime.date):
            return value.isoformat()
        if path == "prior_lines":
            lines = "; ".join(", ".join(line) for line in value)
            return f"{len(value)} ({lines if value else self.phrase('none')})"
        if path == "concurrent_therapies":
            return ", ".join(f"{t.agent} ({t.purpose})" for t in value) or self.phrase("none")
        if isinstance(value, list):
            return ", ".join(d.isoformat() if isinstance(d, datetime.date) else str(d)
                             for d in value) or self.phrase("none")
        return str(value)

    def place(self, where) -> str:
        if isinstance(where, tuple):  # line(L)
            return self.of_place("place", where)
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
        return self.write("because", term[0], term[1:], ident)

    def advisory(self, term: tuple) -> str:
        return self.write("advisory", term[0], term[1:])


# How a template renders an argument (RENDERINGS): its text; a field as stated, measured,
# labelled, asked for, its value, its basis; a place; a date; a name as the case spells it.
RENDER = {
    "": Words.text, "stated": Words.stated, "measured": Words.measured, "label": Words.label,
    "sendable": Words.sendable, "value": Words.value, "basis": Words.basis, "place": Words.place,
    "day": lambda words, raw: iso_day(raw), "name": lambda words, raw: repr(words.name(raw))}
assert tuple(RENDER) == RENDERINGS


def _field_of(term: tuple) -> Optional[str]:
    if term[0] in ("is", "absent", "requires", "none_of_class", "within"):
        return term[1]
    if term[0] == "named":
        return "prior_lines" if isinstance(term[1], tuple) else term[1]
    return None
