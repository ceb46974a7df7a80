"""What a reviewer and an auditor read (issue 13): the reason names the failing facts,
remedies say their kind, pending says what to send in words, the short view, the
forced version and the provenance (SPEC §2, second release)."""

import json

import pytest
from typer.testing import CliRunner

from cases import DROP, IN_2024, V2024, V2025, case, decide
from covkb.audit import kb_hash
from covkb.cli import app

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def remedy(result, ident):
    return next(c.remedy for c in result.criteria if c.id == ident)


# --- 3. the reason --------------------------------------------------------------
def test_the_reason_names_the_creatinine_clearance_that_failed_5d():
    # issue 13.3's own example: 45 is not above 45 (SPEC §4.7: 45 fails 5d)
    result = decide(case(date_of_service=IN_2024, creatinine_clearance_ml_min=45))
    assert result.reason == "not covered: creatinine clearance 45 mL/min is not more than 45 (criterion 5d)"


@pytest.mark.parametrize("changes, start", [
    ({"plan": {"walmart_associates_plan": True}}, "not applicable: this policy does not apply to the Wal-Mart"),
    ({"plan": {"group_specific_policy": True}}, "not applicable: a group specific policy supersedes"),
    ({"date_of_service": "2024-08-20"}, "not applicable: the date of service is before August 21, 2024"),
    ({}, "covered: every criterion of version 2025-11-01 is met"),
])
def test_every_decision_has_a_reason_not_applicable_too(changes, start):
    assert decide(case(**changes)).reason.startswith(start)


def test_a_reason_on_a_criterion_of_several_fields_names_only_the_failing_one():
    # 5f: "Active hepatitis B, active hepatitis C, HIV positive, or other ... infection"
    result = decide(case(date_of_service=IN_2024, infections={"hepatitis_b": False, "hepatitis_c": False,
                                                                "hiv": True, "uncontrolled": False}))
    assert result.reason == "not covered: HIV positive: yes (criterion 5f)"


# --- 4. remedy kinds --------------------------------------------------------------
@pytest.mark.parametrize("version, changes, ident, kind", [
    (V2025, {"dose_million_car_t_cells": 600}, "dose", "request"),
    (V2024, {"dose_million_car_t_cells": 200}, "9", "request"),
    (V2025, {"concurrent_therapies": [{"agent": "Darzalex", "purpose": "anti_cancer"}]}, "5a", "request"),
    (V2025, {"prescriber": {"specialist": False, "approved_car_t_center": True}}, "specialist", "request"),
    (V2025, {"prescriber": {"specialist": True, "approved_car_t_center": False}}, "center", "request"),
    (V2024, {"creatinine_clearance_ml_min": 30}, "5d", "clinical"),
    (V2024, {"lvef_percent": 40}, "5e", "clinical"),
    (V2024, {"infections": {"hiv": True}}, "5f", "clinical"),
    (V2025, {"organ_function_adequate": False}, "6", "clinical"),
    (V2025, {"diagnosis": {"multiple_myeloma": True, "relapsed": True, "cns_involvement": True}}, "7", "clinical"),
    (V2025, {"prior_cell_therapies": ["Abecma"]}, "5b", "history"),
    (V2024, {"prior_allogeneic_transplant": True}, "5b", "history"),
    (V2024, {"prior_cell_therapies": ["Carvykti"]}, "8", "history"),
    (V2025, {"member": {"age": 17}}, "1", "on_date"),
])
def test_each_criterion_not_met_has_its_remedy_kind(version, changes, ident, kind):
    assert remedy(decide(case(**changes), version), ident).kind == kind


@pytest.mark.parametrize("birth, service, eighteenth", [
    ("2008-06-01", "2025-11-12", "2026-06-01"),
    # SPEC §4.11: a 29 February birthday is reached on 1 March in common years
    ("2008-02-29", "2025-11-12", "2026-03-01"),
    ("2012-02-29", "2029-11-12", "2030-03-01"),
])
def test_an_age_under_18_is_met_on_the_18th_birthday(birth, service, eighteenth):
    result = decide(case(member={"birth_date": birth}, date_of_service=service))
    assert (remedy(result, "1").kind, remedy(result, "1").date) == ("on_date", eighteenth)


def test_an_age_given_as_a_number_is_met_on_a_date_the_case_does_not_give():
    assert remedy(decide(case(member={"age": 17})), "1").date is None


@pytest.mark.parametrize("service, disease, leaves", [
    # SPEC §4.7: inside while on or after the date of service moved back 6 months
    ("2025-03-15", "2025-01-10", "2025-07-11"),
    ("2025-03-15", "2024-12-31", "2025-07-01"),   # last day of its month
    ("2025-08-31", "2025-02-28", "2025-09-01"),   # 2025-08-31 less 6 months is 2025-02-28
    ("2025-03-15", "2024-09-30", "2025-04-01"),   # September 30 -> March has no 31st
])
def test_recent_cardiac_disease_is_met_from_the_day_it_leaves_the_window(service, disease, leaves):
    result = decide(case(date_of_service=service, significant_cardiac_disease_dates=[disease]), V2024)
    assert (remedy(result, "5e").kind, remedy(result, "5e").date) == ("on_date", leaves)
    # the day before it leaves still fails 5e, the day it leaves meets it
    before = decide(case(date_of_service=leaves, significant_cardiac_disease_dates=[disease]), V2024)
    assert {c.id: c.status for c in before.criteria}["5e"] == "met"


def test_met_criteria_carry_no_remedy():
    assert all(c.remedy is None for c in decide(case()).criteria)


# --- 5. pending in words ------------------------------------------------------------
def test_pending_lists_alternative_fields_as_one_of():
    result = decide(case(member=DROP))
    assert result.missing == ["member.age", "member.birth_date"]   # SPEC §2 stays as it was
    [item] = result.documentation
    assert item.fields == ["member.age", "member.birth_date"]
    assert item.words.startswith("one of: ") and "date of birth" in item.words


def test_pending_gives_each_field_a_human_label_with_its_unit():
    [item] = decide(case(lvef_percent=DROP), V2024).documentation
    assert (item.fields, item.words) == (["lvef_percent"], "left ventricular ejection fraction (%)")


def test_pending_caused_by_an_unrecognised_name_says_so():
    result = decide(case(prior_lines=[["Velcaid", "lenalidomide"], ["daratumumab"]]))
    assert result.decision == "pending"
    assert any("'Velcaid'" in d.words and "not a recognised name" in d.words for d in result.documentation)


# --- 6. the short view ------------------------------------------------------------------
def test_check_shows_only_criteria_not_met_or_unknown_then_the_count(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(case(date_of_service=IN_2024, creatinine_clearance_ml_min=45)))
    out = run("check", path).stdout
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in
            "specialist center 1 2 3 3a 3b 3c 4 5a 5b 5c 5d 5e 5f 5g 6 7 8 9".split()]
    assert rows == ["5d"]
    assert "19 of 20 criteria met" in out   # SPEC §2: 2024-08-21 has 20 criteria
    every = run("check", path, "--all").stdout
    assert "specialist" in every and "20 criteria" in every


def test_explain_stays_complete(tmp_path):
    out = run("explain", "-", input=json.dumps(case(organ_function_adequate=False))).stdout
    assert out.count("\n[") == 15   # SPEC §2: 2025-11-01 has 15 criteria


# --- 7. overrides and provenance ---------------------------------------------------------
def test_a_forced_version_shows_in_text_and_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(case()))
    text = run("check", path, "--policy-version", V2024).stdout
    assert "version 2024-08-21, requested; the date of service selects 2025-11-01" in text
    data = json.loads(run("check", path, "--policy-version", V2024, "-f", "json").stdout)
    assert (data["version"], data["version_requested"]) == (V2024, V2024)
    assert "version_requested" not in json.loads(run("check", path, "-f", "json").stdout)


def test_json_and_markdown_carry_the_provenance(tmp_path):
    from covkb import __version__

    path = tmp_path / "c.json"
    path.write_text(json.dumps(case()))
    data = json.loads(run("check", path, "-f", "json").stdout)
    assert data["provenance"] == {"covkb": __version__, "kb_sha256": kb_hash()}
    assert kb_hash() in run("explain", path, "-f", "markdown").stdout
