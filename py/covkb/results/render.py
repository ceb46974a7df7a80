"""Result objects → text for a person, JSON for a program."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from typing import Optional

import msgspec

from covkb.results.result import Document, Result

_encoder = msgspec.json.Encoder(decimal_format="number")


def _plain_decimal(value):
    if isinstance(value, Decimal):  # covkb's exact-number subclasses
        return Decimal(value)
    raise NotImplementedError(type(value))


_canonical = msgspec.json.Encoder(decimal_format="number", order="sorted", enc_hook=_plain_decimal)


def canonical(value) -> str:
    """JSON with keys sorted and numbers exact: what the decision log stores and hashes."""
    return _canonical.encode(value).decode()


def as_json(result: msgspec.Struct) -> str:
    return _encoder.encode(result).decode()


def version_line(policy: str, version: Optional[str], requested: Optional[str] = None,
                 by_date: Optional[str] = None, date_of_service: Optional[str] = None) -> str:
    """`policy 2024041, version 2024-08-21, date of service 2025-10-31`, saying so when the
    version was forced."""
    line = f"policy {policy}, version {version or 'none'}"
    day = f" {date_of_service}" if date_of_service else ""
    if requested is not None:
        return line + f", requested (a what-if); the date of service{day} selects {by_date or 'no version'}"
    return line + (f", date of service {date_of_service}" if date_of_service else "")


def fill(text: str, width: int, **indents) -> str:
    """textwrap.fill that never breaks a word at its hyphen: `ide-cel` stays whole."""
    return textwrap.fill(text, width, break_on_hyphens=False, **indents)


def wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False)


def documentation_lines(documentation: list[Document], width: int = 100) -> list[str]:
    """What to send, one item a line, in words with the case field paths."""
    lines = []
    for later, heading in ((False, "to document (any one field of a \"one of\" item settles it):"),
                           (True, "for a resubmission (these cannot change this decision):")):
        items = [item for item in documentation if item.for_resubmission == later]
        if items:
            lines += ["", heading]
        lines += [fill(f"{item.words} [{', '.join(item.fields)}]", width,
                       initial_indent="  - ", subsequent_indent="    ") for item in items]
    return lines


def remedy_line(kind: str, words: Optional[str]) -> str:
    """A remedy with what its kind means: `remedy (clinical): a new documented ...`."""
    return f"remedy ({kind}): {words}" if words else f"remedy ({kind})"


def as_text(result: Result, width: int = 100, every: bool = False) -> str:
    """The decision, its reason, and the criteria not met or unknown (every one with
    `every`), then how many are met."""
    lines = [
        f"{result.case_id}: {result.decision.upper().replace('_', ' ')} ({result.label})",
        version_line(result.policy, result.version, result.version_requested, result.version_by_date,
                     result.date_of_service),
        fill(result.reason, width),
    ]
    if result.criteria:
        rows = [c for c in result.criteria if every or c.status != "met"]
        if rows:
            lines.append("")
            lines.append(f"{'criterion':<11}{'status':<9}reason")
        for criterion in rows:
            reason = "; ".join(criterion.because) or criterion.text
            wrapped = wrap(reason, width - 20) or [""]
            lines.append(f"{criterion.id:<11}{criterion.status:<9}{wrapped[0]}")
            lines.extend(f"{'':<20}{more}" for more in wrapped[1:])
            if criterion.remedy is not None:
                said = wrap(f"remedy ({criterion.remedy.kind}): {criterion.remedy.words}", width - 20)
                lines.extend(f"{'':<20}{more}" for more in said)
        met = sum(c.status == "met" for c in result.criteria)
        lines.append("")
        hint = "" if every else " (--all shows every criterion)"
        lines.append(f"{met} of {len(result.criteria)} criteria met{hint}")
    if result.advisories:
        lines.append("")
        lines.append("advisories:")
        lines.extend(fill(a, width, initial_indent="  - ", subsequent_indent="    ")
                     for a in result.advisories)
    lines += documentation_lines(result.documentation, width)
    return "\n".join(lines)
