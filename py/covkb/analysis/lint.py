"""covkb lint: what a policy author should see in one version before publishing it.

Each finding is proved by clingo over the abstract case space `covkb diff` searches
(every field reduced to the classes the knowledge base's own thresholds, windows, drug
classes and product names make, plus "not documented"), with kb/ deciding and lint.lp
asking: criteria implied by others (never the only reason for a denial), criteria that
can never be the deciding one or never be met, connectives quoted as OR where the rules
conjoin, and a bound stated differently in a version's criteria and its guidelines.
Where a case shows the finding, the nearest such case to an eligible one is given and
re-decided by the normal path.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional

import clingo
import msgspec

from covkb.engine.kb import control as kb_control, kb_files
from covkb.analysis.diff import Field, jsonable, kb_facts, load_space, set_path, space


class Witness(msgspec.Struct):
    case: dict
    decision: str
    not_met: list[str]


class Finding(msgspec.Struct, omit_defaults=True):
    kind: str
    criteria: list[str]
    message: str
    witness: Optional[Witness] = None


class Lint(msgspec.Struct):
    version: str
    criteria: list[str]
    findings: list[Finding]
    seconds: float


KINDS = {
    "implied": "implied by another criterion",
    "equivalent": "fails in exactly the same cases as another criterion",
    "never_deciding": "never the deciding criterion",
    "never_met": "never met",
    "never_fails": "never fails",
    "or_where_and": "quoted as OR where the rules conjoin",
    "bound_differs": "a bound stated differently in the criteria and the guidelines",
    "guideline_differs": "a criterion and a guideline of the version part on a value",
}


# ---------------------------------------------------------------------------
# The quoted words: each numbered item of a version's list, its level and the
# connective its quotation ends with. These are data for lint.lp, which judges them.
# ---------------------------------------------------------------------------
_ITEM = re.compile(r"^%\s*(\d+|[a-z])\.\s+(.*)$")
_END = re.compile(r"(;\s*(AND|OR)|[.:])\s*$")
_VERSION = re.compile(r'^criterion\("([^"]+)"', re.M)


@dataclass
class Quoted:
    version: str
    position: int
    label: str
    level: int
    connective: str  # and, or, end (a full stop) or list (a colon)
    words: str


def quoted(paths: Iterable[Path]) -> list[Quoted]:
    items = []
    for path in paths:
        text = path.read_text()
        versions = set(_VERSION.findall(text))
        if len(versions) != 1:
            continue
        version = versions.pop()
        lines = text.splitlines()
        top = ""
        position = 0
        for index, line in enumerate(lines):
            match = _ITEM.match(line)
            if not match:
                continue
            marker, words = match.groups()
            level = 1 if marker.isdigit() else 2
            if level == 1:
                top = marker
            label = marker if level == 1 else top + marker
            end = _END.search(words)
            following = index + 1
            while end is None and following < len(lines) and following <= index + 6 \
                    and lines[following].startswith("%") and not _ITEM.match(lines[following]):
                words += " " + lines[following].lstrip("% ").strip()
                end = _END.search(words)
                following += 1
            if end is None:
                continue
            connective = (end.group(2) or "").lower() or ("list" if end.group(1) == ":" else "end")
            position += 1
            items.append(Quoted(version, position, label, level, connective, words[:end.start()].strip()))
    return items


# ---------------------------------------------------------------------------
# Solving.
# ---------------------------------------------------------------------------
def _control(directory: Optional[Path], extra: list[str] = ()) -> clingo.Control:
    control = kb_control(directory, ("--warn=none", *extra))
    package = resources.files("covkb.analysis")
    control.add("base", [], package.joinpath("diff.lp").read_text())
    control.add("base", [], package.joinpath("lint.lp").read_text())
    return control


def _load(backend, fields: list[Field], service: datetime.date, version: str, items: list[Quoted]) -> None:
    load_space(backend, fields, service, [version])
    S, N, F = clingo.String, clingo.Number, clingo.Function
    for item in items:
        if item.version == version:
            backend.add_rule([backend.add_atom(F("quoted", [S(version), N(item.position), S(item.label),
                                                             N(item.level), F(item.connective)]))])


def _symbols(control: clingo.Control, programs, mode: str) -> list[clingo.Symbol]:
    control.ground(programs)
    control.configuration.solve.enum_mode = mode
    control.configuration.solve.models = 0
    last: list[clingo.Symbol] = []
    with control.solve(yield_=True) as handle:
        for model in handle:
            last = model.symbols(shown=True)
    return last


def lint(version: Optional[str] = None, directory: Optional[Path] = None) -> Lint:
    import time

    from covkb.api import check
    from covkb.input.case import from_object

    started = time.perf_counter()
    kb = kb_facts(directory)
    version = version or max(kb.versions, key=kb.versions.get)
    start = kb.versions[version]
    service = datetime.date(start // 10000, start // 100 % 100, start % 100)
    fields = space(kb, service)
    items = quoted(kb_files(directory))

    # What some case makes true: the brave consequences over the whole space.
    control = _control(directory)
    with control.backend() as backend:
        _load(backend, fields, service, version, items)
    brave = _symbols(control, [("base", []), ("lint", [])], "brave")
    atoms: dict[str, list[tuple]] = {}
    symbols = {}
    for symbol in brave:
        symbols[(symbol.name, *(a.string if a.type is clingo.SymbolType.String else str(a)
                                for a in symbol.arguments))] = symbol
        atoms.setdefault(symbol.name, []).append(tuple(
            a.string if a.type is clingo.SymbolType.String else str(a) for a in symbol.arguments))
    criteria = sorted({i for (i,) in atoms.get("crit", [])}, key=_policy_order)
    can_fail = {i for (i,) in atoms.get("can_fail", [])}
    can_be_met = {i for (i,) in atoms.get("can_be_met", [])}
    deciding = {i for (i,) in atoms.get("deciding", [])}
    without = set(atoms.get("fails_without", []))
    implied = [(i, j) for i in criteria for j in criteria
               if i != j and i in can_fail and (i, j) not in without]

    # Which implications to report: equivalences, and each strict one by its nearest criterion.
    reduce = clingo.Control(["--warn=none"])
    reduce.add("base", [], resources.files("covkb.analysis").joinpath("lint.lp").read_text())
    with reduce.backend() as backend:
        for i, j in implied:
            backend.add_rule([backend.add_atom(clingo.Function("implied", [clingo.String(i), clingo.String(j)]))])
    reduced: dict[str, set] = {"equivalent": set(), "direct": set()}
    for symbol in _symbols(reduce, [("base", []), ("reduce", [])], "auto"):
        reduced[symbol.name].add(tuple(a.string for a in symbol.arguments))

    witness = _Witnesses(directory, fields, service, version, items, check, from_object)
    findings: list[Finding] = []
    for i, j in sorted(reduced["direct"], key=lambda p: (_policy_order(p[0]), _policy_order(p[1]))):
        findings.append(Finding("implied", [i, j],
                                f"{i} is implied by {j}: every case that fails {i} fails {j}, "
                                f"so {i} is never the only reason for a denial",
                                witness.of(clingo.Function("can_fail", [clingo.String(i)]))))
    for i, j in sorted(reduced["equivalent"], key=lambda p: (_policy_order(p[0]), _policy_order(p[1]))):
        if _policy_order(i) < _policy_order(j):
            findings.append(Finding("equivalent", [i, j],
                                    f"{i} and {j} fail in exactly the same cases",
                                    witness.of(clingo.Function("can_fail", [clingo.String(i)]))))
    for i in criteria:
        if i not in can_fail:
            findings.append(Finding("never_fails", [i], f"{i} is met or unknown in every case: it never fails"))
        if i not in can_be_met:
            findings.append(Finding("never_met", [i], f"{i} is not met or unknown in every case: it is never met"))
        if i not in deciding:
            by = sorted({j for a, j in implied if a == i}, key=_policy_order)
            why = (f"whenever it fails, {', '.join(by)} {'fails' if len(by) == 1 else 'fail'} as well" if by
                   else "no case fails it alone with every other criterion met")
            findings.append(Finding("never_deciding", [i], f"{i} can never be the deciding criterion: {why}",
                                    witness.of(clingo.Function("can_fail", [clingo.String(i)])) if i in can_fail else None))
    either = set(atoms.get("either_case", []))
    for top, following in sorted(set(atoms.get("stated_or", [])) & set(atoms.get("structure_and", []))):
        members = sorted({c for t, c in atoms.get("member", []) if t == top}, key=_policy_order)
        words = next((q.words for q in items if q.version == version and q.label == following), "")
        findings.append(Finding(
            "or_where_and", [top, following],
            f"the quoted words join item {top} ({', '.join(members) or top}) to item {following} "
            f"(\"{following}. {words}\") with OR, but the rules conjoin them: every criterion must be met",
            witness.of(clingo.Function("either_case", [clingo.String(top), clingo.String(following)]))
            if (top, following) in either else None))
    for i, g, f in sorted(set(atoms.get("bound_differs", []))):
        stated = lambda ident: ", ".join(f"{r} {t}" for c, fld, r, t in atoms.get("bound_of", []) if c == ident and fld == f)
        findings.append(Finding("bound_differs", [i, g],
                                f"{f}: criterion {i} says {stated(i)}, its guideline {g} says {stated(g)}",
                                witness.of(symbols[("bound_parts", i, g, f)])
                                if ("bound_parts", i, g, f) in symbols else None))
    spoken = {f for (f,) in atoms.get("guideline_on", [])}
    parting = set(atoms.get("parts_on", []))
    for i, f in sorted(set(atoms.get("criterion_on", [])), key=lambda p: (_policy_order(p[0]), p[1])):
        if f in spoken and (i, f) in parting:
            findings.append(Finding("guideline_differs", [i], f"{f}: criterion {i} and a Policy Guidelines "
                                    f"advisory of this version part on a value of it (a threshold or window "
                                    f"stated differently)", witness.of(symbols[("parts_on", i, f)])))
    return Lint(version, criteria, findings, round(time.perf_counter() - started, 2))


class _Witnesses:
    """The case nearest an eligible one that makes an atom of lint.lp true, re-decided."""

    def __init__(self, directory, fields, service, version, items, check, from_object):
        self.fields = {f.path: f for f in fields}
        self.service, self.version, self.check, self.from_object = service, version, check, from_object
        baseline = _control(directory)
        with baseline.backend() as backend:
            _load(backend, fields, service, version, items)
        base = [s for s in _symbols(baseline, [("base", []), ("baseline", [])], "auto") if s.name == "pick"]
        self.control = _control(directory)
        with self.control.backend() as backend:
            _load(backend, fields, service, version, items)
            for symbol in base:
                backend.add_rule([backend.add_atom(clingo.Function("base", symbol.arguments))])
        self.control.ground([("base", []), ("lint", []), ("witness", [])])

    def of(self, atom: clingo.Symbol) -> Optional[Witness]:
        if self.control.symbolic_atoms[atom] is None:
            return None
        picks = None
        with self.control.solve(assumptions=[(atom, True)], yield_=True) as handle:
            for model in handle:
                picks = [(s.arguments[0].string, s.arguments[1].number) for s in model.symbols(shown=True) if s.name == "pick"]
        if picks is None:
            return None
        data: dict = {"case_id": f"lint {self.version}: {atom}", "date_of_service": self.service.isoformat()}
        for path, position in sorted(picks):
            set_path(data, path, self.fields[path].options[position].value)
        data = jsonable(data)
        result = self.check(self.from_object(data), self.version)
        return Witness(data, result.decision, [c.id for c in result.criteria if c.status == "not_met"])


def _policy_order(ident: str) -> tuple:
    digits = "".join(c for c in ident if c.isdigit())
    return (0, ident) if not digits else (1, int(digits), ident)


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------
def _witness_line(witness: Witness) -> str:
    return (f"witness: a case decided {witness.decision}, not met: "
            f"{', '.join(witness.not_met) or 'none'} (--format json gives the case)")


def as_text(result: Lint) -> str:
    lines = [f"covkb lint {result.version}: {len(result.findings)} finding(s) over "
             f"{len(result.criteria)} criteria, each proved over the whole case space ({result.seconds} s)"]
    for kind, title in KINDS.items():
        found = [f for f in result.findings if f.kind == kind]
        if not found:
            continue
        lines += ["", f"{title[0].upper()}{title[1:]}:"]
        for finding in found:
            lines.append(f"  - {finding.message}")
            if finding.witness:
                lines.append(f"      {_witness_line(finding.witness)}")
    if not result.findings:
        lines += ["", "No findings."]
    return "\n".join(lines)


def as_markdown(result: Lint) -> str:
    lines = [f"# Policy 2024041, version {result.version}: lint", "",
             f"{len(result.findings)} finding(s) over {len(result.criteria)} criteria "
             f"({', '.join(result.criteria)}), each proved over every case the knowledge base's "
             "classes make.", ""]
    for kind, title in KINDS.items():
        found = [f for f in result.findings if f.kind == kind]
        if not found:
            continue
        lines += [f"## {title[0].upper()}{title[1:]}", "", "| Criteria | Finding | Witness |", "|---|---|---|"]
        for finding in found:
            witness = (f"{finding.witness.decision}; not met: {', '.join(finding.witness.not_met) or 'none'}"
                       if finding.witness else "none exists")
            lines.append(f"| {', '.join(finding.criteria)} | {_cell(finding.message)} | {_cell(witness)} |")
        lines.append("")
    if not result.findings:
        lines.append("No findings.")
    return "\n".join(lines).rstrip() + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
