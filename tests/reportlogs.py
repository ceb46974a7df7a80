"""Decision logs for the report's tests: rows as the current knowledge base logs them, and
rows as an earlier one logged them, deciding otherwise (reading 31 fixes what criterion 6
decides now: organ_function_adequate false is not covered)."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import msgspec

from cases import DROP, case
from covkb.surfaces import audit
from covkb.api import determine_explained
from covkb.input.case import from_object
from covkb.results.render import canonical

EARLIER_KB = "0" * 64


def _variant(data: dict):
    one = from_object(data)
    result, explanation = determine_explained([one])[0]
    return one, result, explanation


def _renamed(row: dict, case_id: str) -> dict:
    """A prepared row of another case id, its input and explanation renamed alike."""
    data = json.loads(row["input_json"])
    data["case_id"] = case_id
    explanation = json.loads(row["explanation_json"])
    explanation["case_id"] = case_id
    input_json = canonical(data)
    return {**row, "case_id": case_id, "input_json": input_json,
            "input_sha256": hashlib.sha256(input_json.encode()).hexdigest(),
            "explanation_json": canonical(explanation)}


def build(path: Path, rows: int, decision_changes: int, criteria_changes: int, alike: int = 0,
          weeks: int = 1) -> None:
    """`rows` determinations: the first `decision_changes` logged by an earlier kb as covered
    though criterion 6 is not met (not covered now); the next `criteria_changes` logged by
    it as not covered with 5b not met too (only 5b differs now); `alike` more logged by it
    as decided now; the rest logged by the current kb (covered, not covered and pending in
    turn). Logged times spread over `weeks` weeks."""
    current = audit.kb_hash()
    eligible = _variant(case(case_id="T"))
    refused = _variant(case(case_id="T", organ_function_adequate=False))
    pended = _variant(case(case_id="T", organ_function_adequate=DROP))
    one, result, explanation = refused
    covered_then = msgspec.structs.replace(
        result, decision="covered", label="meets_primary_coverage_criteria",
        criteria=[msgspec.structs.replace(c, status="met") if c.id == "6" else c for c in result.criteria])
    more_then = msgspec.structs.replace(
        result, criteria=[msgspec.structs.replace(c, status="not_met") if c.id == "5b" else c for c in result.criteria])
    explained_then = msgspec.structs.replace(
        explanation, decision="covered", label="meets_primary_coverage_criteria", sentence="covered (as logged then)",
        criteria=[msgspec.structs.replace(c, status="met", remedy=None, remedy_kind=None) if c.id == "6" else c
                  for c in explanation.criteria])
    templates = {
        "decision": audit.prepare(one, None, covered_then, explained_then, EARLIER_KB),
        "criteria": audit.prepare(one, None, more_then, explanation, EARLIER_KB),
        "alike": audit.prepare(one, None, result, explanation, EARLIER_KB),
        "current": [audit.prepare(c, None, r, e, current) for c, r, e in (eligible, refused, pended)],
    }
    connection = audit.connect(path)
    try:
        batch = []
        for i in range(rows):
            if i < decision_changes:
                template = templates["decision"]
            elif i < decision_changes + criteria_changes:
                template = templates["criteria"]
            elif i < decision_changes + criteria_changes + alike:
                template = templates["alike"]
            else:
                template = templates["current"][i % 3]
            batch.append(_renamed(template, f"PA-{i:06d}"))
            if len(batch) == 2000:
                audit.append(connection, batch)
                batch = []
        audit.append(connection, batch)
        if weeks > 1:  # spread the logged times (the chain is not what these tests read)
            start = datetime.datetime(2026, 1, 5, 9, 30, 15, 123456, tzinfo=datetime.timezone.utc)
            span = weeks * 7 * 24 * 3600
            connection.execute("BEGIN")
            for i in range(1, rows + 1):
                when = start + datetime.timedelta(seconds=span * (i - 1) // rows)
                connection.execute("UPDATE determinations SET logged_at = ? WHERE id = ?",
                                   (when.isoformat(timespec="microseconds"), i))
            connection.execute("COMMIT")
    finally:
        connection.close()
