"""Result objects → text for a person, JSON for a program."""

from __future__ import annotations

import textwrap

import msgspec

from covkb.result import Result

_encoder = msgspec.json.Encoder(decimal_format="number")


def as_json(result: msgspec.Struct) -> str:
    return _encoder.encode(result).decode()


def as_text(result: Result, width: int = 100) -> str:
    version = result.version or "none"
    lines = [
        f"{result.case_id}: {result.decision.upper().replace('_', ' ')} ({result.label})",
        f"policy {result.policy}, version {version}",
    ]
    if result.criteria:
        lines.append("")
        lines.append(f"{'criterion':<11}{'status':<9}reason")
        for criterion in result.criteria:
            reason = "; ".join(criterion.because) or criterion.text
            wrapped = textwrap.wrap(reason, width - 20) or [""]
            lines.append(f"{criterion.id:<11}{criterion.status:<9}{wrapped[0]}")
            lines.extend(f"{'':<20}{more}" for more in wrapped[1:])
    if result.advisories:
        lines.append("")
        lines.append("advisories:")
        lines.extend(textwrap.fill(a, width, initial_indent="  - ", subsequent_indent="    ")
                     for a in result.advisories)
    if result.missing:
        lines.append("")
        lines.append("documentation missing: " + ", ".join(result.missing))
    return "\n".join(lines)
