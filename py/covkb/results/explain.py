"""Explanations for auditors: the decision in one sentence, every criterion with the
policy's words, the facts and comparisons behind its status, what to document or remedy,
and names to clarify. Every reason comes from the knowledge base's atoms."""

from __future__ import annotations

from typing import Optional

import msgspec

from covkb.input.case import Case
from covkb.engine.vocabulary import Policy, Shown
from covkb.results.render import documentation_lines, fill, remedy_line, version_line
from covkb.results.result import Document, Provenance, Result, Words, nearest


class Step(msgspec.Struct):
    id: str
    status: str
    text: str
    because: list[str]
    document: list[str]
    remediable: Optional[bool]
    remedy: Optional[str]
    remedy_kind: Optional[str] = None  # request, on_date, clinical or history
    remedy_date: Optional[str] = None
    reading: Optional[str] = None  # covkb's reading of the policy's words, when it frames them
    # the fields `document` names, in words, alternatives as "one of"
    documentation: list[Document] = []


class Name(msgspec.Struct):
    field: str
    name: str
    nearest: Optional[str]


class Explanation(msgspec.Struct, kw_only=True):
    case_id: str
    date_of_service: Optional[str] = None  # added in the third release
    policy: str
    version: Optional[str]
    decision: str
    label: str
    rule: str
    sentence: str
    criteria: list[Step]
    advisories: list[str]
    unrecognised: list[Name]
    missing: list[str]
    # added in the second release; defaults keep older logged explanations readable
    documentation: list[Document] = []
    provenance: Optional[Provenance] = None
    version_requested: Optional[str] = None
    version_by_date: Optional[str] = None
    what_if: bool = False  # decided under a version asked for: kept out of statistics


def explain_result(case: Case, shown: Shown, policy: Policy, result: Result) -> Explanation:
    """The explanation of a result already built from the same shown atoms."""
    words = Words(case, policy)
    names = [Name(words.place(where), words.name(name), nearest(name, policy))
             for where, name in words.unrecognised(shown)]
    steps = []
    for criterion in result.criteria:
        document = sorted(shown.document.get(criterion.id, []))
        step = Step(criterion.id, criterion.status, criterion.text, criterion.because, document, None, None,
                    reading=criterion.reading, documentation=words.documentation(document))
        if criterion.remedy is not None:
            kind, date = criterion.remedy.kind, criterion.remedy.date
            step.remediable = kind == "request"
            step.remedy = criterion.remedy.words
            step.remedy_kind, step.remedy_date = kind, date
        steps.append(step)
    return Explanation(case_id=result.case_id, date_of_service=result.date_of_service, policy=result.policy,
                       version=result.version, decision=result.decision, label=result.label,
                       rule=shown.rule or "", sentence=result.reason, criteria=steps,
                       advisories=result.advisories, unrecognised=names, missing=result.missing,
                       documentation=result.documentation, provenance=result.provenance,
                       version_requested=result.version_requested, version_by_date=result.version_by_date,
                       what_if=result.what_if)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
def as_text(explanation: Explanation, width: int = 100) -> str:
    e = explanation
    lines = [f"{e.case_id}: {e.decision.upper().replace('_', ' ')} ({e.label})",
             version_line(e.policy, e.version, e.version_requested, e.version_by_date, e.date_of_service),
             "", fill(e.sentence, width)]
    for step in e.criteria:
        lines.append("")
        lines.append(f"[{step.id}] {step.status}")
        lines.append(fill(f'"{step.text}"', width, initial_indent="  policy: ",
                                   subsequent_indent="          "))
        if step.reading:
            lines.append(fill(step.reading, width, initial_indent="  reading: ", subsequent_indent="          "))
        for reason in step.because:
            lines.append(fill(reason, width, initial_indent="  fact:   ",
                                       subsequent_indent="          "))
        for item in _step_documents(step):
            lines.append(fill(f"{item.words} [{', '.join(item.fields)}]", width,
                              initial_indent="  document: ", subsequent_indent="          "))
        if step.remedy_kind:
            lines.append(fill(remedy_line(step.remedy_kind, step.remedy), width,
                              initial_indent="  ", subsequent_indent="          "))
    if e.advisories:
        lines += ["", "advisories:"]
        lines += [fill(a, width, initial_indent="  - ", subsequent_indent="    ")
                  for a in e.advisories]
    hint = _hint_words()
    lines += [fill(hint.format(place=n.field, name=repr(n.name), nearest=repr(n.nearest)), width,
                   initial_indent="  - ", subsequent_indent="    ")
              for n in e.unrecognised if n.nearest]
    lines += documentation_lines(e.documentation, width)
    if e.missing and not e.documentation:
        lines += ["", "documentation missing: " + ", ".join(e.missing)]
    if e.provenance is not None:
        lines += ["", f"covkb {e.provenance.covkb}, kb sha256 {e.provenance.kb_sha256}"]
    return "\n".join(lines)


def _hint_words() -> str:
    from covkb.engine.reference import policy as kb_policy

    return kb_policy().facts["hint_words"][0][0]


def _step_documents(step: Step) -> list[Document]:
    """What a step asks for, in words; a step logged before the words were kept, by field."""
    return step.documentation or [Document([path], path) for path in step.document]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_markdown(explanation: Explanation) -> str:
    e = explanation
    lines = [f"### {_cell(e.case_id)}: {e.decision.replace('_', ' ')} ({e.label})", "",
             version_line(e.policy, e.version, e.version_requested, e.version_by_date,
                          e.date_of_service).capitalize() + ".",
             "", f"**{_cell(e.sentence)}**", ""]
    if e.criteria:
        lines += ["| criterion | status | policy words | facts | action |",
                  "|---|---|---|---|---|"]
        for s in e.criteria:
            action = ""
            if s.document:
                action = "document " + "; ".join(
                    f"{d.words} (" + ", ".join(f"`{f}`" for f in d.fields) + ")" for d in _step_documents(s))
            elif s.remedy:
                action = f"{s.remedy_kind}: {s.remedy}"
            words = f'"{s.text}"' + (f" _(reading: {s.reading})_" if s.reading else "")
            lines.append(f"| {s.id} | {s.status} | {_cell(words)} | "
                         f"{_cell('; '.join(s.because))} | {_cell(action)} |")
        lines.append("")
    if e.advisories:
        lines += ["Advisories:", ""] + [f"- {_cell(a)}" for a in e.advisories] + [""]
    if e.unrecognised:
        lines += ["Names to clarify:", ""]
        lines += [f"- {_cell(n.field)}: `{_cell(n.name)}`"
                  + (f" (nearest known name: `{n.nearest}`)" if n.nearest else "") for n in e.unrecognised]
        lines.append("")
    for later, heading in ((False, 'To document (any one field of a "one of" item settles it):'),
                           (True, "For a resubmission (these cannot change this decision):")):
        items = [d for d in e.documentation if d.for_resubmission == later]
        if items:
            lines += [heading, ""]
            lines += [f"- {_cell(d.words)} (" + ", ".join(f"`{f}`" for f in d.fields) + ")" for d in items]
            lines.append("")
    if e.missing and not e.documentation:
        lines += ["Documentation missing: " + ", ".join(f"`{m}`" for m in e.missing), ""]
    if e.provenance is not None:
        lines += [f"_covkb {e.provenance.covkb}, kb sha256 `{e.provenance.kb_sha256}`_", ""]
    return "\n".join(lines)


def criteria_differ(sides: list[Explanation]) -> list[str]:
    """Criterion ids whose status differs between the versions, or that only some have."""
    status = [{s.id: s.status for s in side.criteria} for side in sides]
    ids = {ident for row in status for ident in row}
    return sorted(i for i in ids if len({row.get(i) for row in status}) > 1)


def decisions_differ(sides: list[Explanation]) -> bool:
    return len({(s.decision, s.label) for s in sides}) > 1


class Comparison(msgspec.Struct, omit_defaults=True):
    """`compare --format json`: the case under every version."""

    case_id: str
    versions: list[Explanation]
    criteria_differ: list[str]
    decisions_differ: bool
    # one row per requirement: each version's criterion id for it (null where the version
    # has none, "guidelines" where it became a Policy Guidelines advisory)
    requirements: list[dict[str, Optional[str]]] = []
    # each side names the version the date of service selects (version_by_date, null for none)
    date_of_service: Optional[str] = None


def comparison(case_id: str, sides: list[Explanation]) -> Comparison:
    return Comparison(case_id, sides, criteria_differ(sides), decisions_differ(sides),
                      requirements(sides), sides[0].date_of_service if sides else None)


GUIDELINES = "guidelines"


def requirements(sides: list[Explanation]) -> list[dict[str, Optional[str]]]:
    """The versions' criteria lined up by meaning: kb/words.lp's correspond/4 first, else
    the same id when neither side's criterion corresponds to another."""
    from covkb.engine.reference import policy as kb_policy

    pairs = kb_policy().facts.get("correspond", ())
    rows: list[dict[str, Optional[str]]] = []
    previous: Optional[str] = None
    for side in sides:
        version = side.version or "none"
        if previous is None:
            rows = [{version: step.id} for step in side.criteria]
            previous = version
            continue
        mapped = {p[1]: (p[3] if isinstance(p[3], str) else p[3][0])
                  for p in pairs if p[0] == previous and p[2] == version}
        taken = set(mapped.values())
        for row in rows:
            before = row.get(previous)
            if before in mapped and mapped[before] == GUIDELINES:
                row[version] = GUIDELINES
        at = -1
        for step in side.criteria:
            match = next((i for i, row in enumerate(rows)
                          if version not in row and row.get(previous) is not None
                          and (mapped.get(row[previous]) == step.id
                               or (row[previous] == step.id and row[previous] not in mapped
                                   and step.id not in taken))), None)
            if match is None:
                rows.insert(at + 1, {version: step.id})
                at += 1
            else:
                rows[match][version] = step.id
                at = match
        previous = version
    versions = [side.version or "none" for side in sides]
    return [{v: row.get(v) for v in versions} for row in rows]


def compare_text(case_id: str, sides: list[Explanation], by_date: Optional[Explanation] = None,
                 in_force: Optional[str] = None) -> str:
    """The sides compared, after what the date of service decides (`by_date`, under the
    version `in_force` on it, kb/core.lp in_force/2)."""
    import textwrap

    versions = [side.version or "none" for side in sides]
    status = [{s.id: s.status for s in side.criteria} for side in sides]
    header = "".join(f"{v:<22}" for v in versions).rstrip()
    lines = []
    if by_date is not None:
        day = by_date.date_of_service
        if by_date.version is None and by_date.label == "criteria_not_on_file":
            lines += [f"{case_id}: the date of service {day} selects no version of policy {by_date.policy}: "
                      f"the decision is not applicable ({by_date.label})",
                      textwrap.fill(by_date.sentence, 100), "",
                      "What if a version applied (what-ifs, not the decision):"]
        else:
            selected = by_date.version or in_force
            selects = f"selects version {selected}" if selected else "selects no version"
            lines += [f"{case_id}: the date of service {day} {selects}: "
                      f"{by_date.decision} ({by_date.label})", ""]
    lines += [f"{case_id}: compared under {', '.join(versions)}, one row per requirement", "", header]
    for row in requirements(sides):
        cells, states = [], []
        for version, known in zip(versions, status):
            ident = row[version]
            if ident is None:
                cells.append("-")
            elif ident == GUIDELINES:
                cells.append("advisory")
            else:
                cells.append(f"{ident} {known[ident]}")
                states.append(known[ident])
        present = [v for v in versions if row[v] not in (None, GUIDELINES)]
        if len(present) < len(versions):
            advisory = [v for v in versions if row[v] == GUIDELINES]
            mark = (f"  (Policy Guidelines in {', '.join(advisory)}: an advisory, not a criterion)" if advisory
                    else f"  (only in {', '.join(present)})")
        else:
            mark = "  <- differs" if len(set(states)) > 1 else ""
        lines.append("".join(f"{c:<22}" for c in cells).rstrip() + mark)
    lines.append("")
    for side in sides:
        what_if = " (what-if)" if by_date is not None and side.version != by_date.version else ""
        lines.append(f"{side.version or 'none'}{what_if}: {side.decision} ({side.label}) — {side.sentence}")
    if decisions_differ(sides):
        lines.append("the versions decide this case differently")
    return "\n".join(lines)
