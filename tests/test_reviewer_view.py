"""What a reviewer and an auditor read (issue 13): the reason names the failing facts,
remedies say their kind, pending says what to send in words, the short view, the
forced version and the provenance (reading 7, second release)."""

import json
import re
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from cases import DROP, IN_2024, IN_2025, V2024, V2025, case, decide
from covkb.surfaces.audit import kb_hash
from covkb.surfaces.cli import app

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def remedy(result, ident):
    return next(c.remedy for c in result.criteria if c.id == ident)


# --- 3. the reason --------------------------------------------------------------
def test_the_reason_names_the_creatinine_clearance_that_failed_5d():
    # issue 13.3's own example: 45 is not above 45 (reading 16: 45 fails 5d)
    result = decide(case(date_of_service=IN_2024, creatinine_clearance_ml_min=45))
    assert result.reason == "not covered: creatinine clearance 45 mL/min is not more than 45 (criterion 5d)"


@pytest.mark.parametrize("changes, start", [
    ({"plan": {"walmart_associates_plan": True}}, "not applicable: this policy does not apply to the Wal-Mart"),
    ({"plan": {"group_specific_policy": True}}, "not applicable: a group specific policy supersedes"),
    ({"date_of_service": "2024-08-20"}, "not applicable: the date of service 2024-08-20 is before August 21, 2024"),
    ({}, "covered: every criterion of version 2025-11-01 is met"),
])
def test_every_decision_has_a_reason_not_applicable_too(changes, start):
    assert decide(case(**changes)).reason.startswith(start)


def test_a_reason_on_a_criterion_of_several_fields_names_only_the_failing_one():
    # 5f: "Active hepatitis B, active hepatitis C, HIV positive, or other ... infection"
    result = decide(case(date_of_service=IN_2024, infections={"hepatitis_b": False, "hepatitis_c": False,
                                                                "hiv": True, "uncontrolled": False}))
    assert result.reason == "not covered: HIV positive: yes (criterion 5f)"


def test_a_reason_on_4_failed_by_a_prior_cell_therapy_names_it_not_the_trials_documented_as_none():
    # 4 reads prior lines, prior cell therapies and clinical trials; here only the prior
    # cell therapy fails it ("has not received prior treatment with CAR T-cell therapy"),
    # and 5b of 2025-11-01 ("Prior treatment with chimeric antigen receptor therapy") with it
    result = decide(case(prior_cell_therapies=["ciltacabtagene autoleucel"], clinical_trials=[]))
    assert result.reason == ("not covered: prior CAR-T or other genetically modified T-cell therapies: "
                             "'ciltacabtagene autoleucel' is a prior cell therapy (criteria 4 and 5b)")


@pytest.mark.parametrize("service, version", [(IN_2024, V2024), (IN_2025, V2025)])
def test_a_reason_on_4_failed_by_a_trial_names_it_not_the_cell_therapies_documented_as_none(service, version):
    # 4, both versions: "is not or has not been a subject of a clinical trial for any of the
    # therapies listed in this policy"; KarMMa-3 is a trial of idecabtagene vicleucel
    result = decide(case(date_of_service=service, prior_cell_therapies=[], clinical_trials=["KarMMa-3"]), version)
    assert result.reason == ("not covered: clinical trials the member is or has been a subject of: 'KarMMa-3' "
                             "is a clinical trial of a therapy listed in this policy (criterion 4)")


def test_a_reason_on_5e_failed_by_recent_cardiac_disease_names_the_date_not_the_lvef():
    # 5e: "ejection fraction (EF) less than 45%, or other clinically significant cardiac
    # disease within in the past 6 months"; reading 17: within while on or after the date
    # of service moved back 6 months (2025-03-15 -> 2024-09-15). The LVEF of 60 met it.
    result = decide(case(date_of_service="2025-03-15", significant_cardiac_disease_dates=["2025-01-10"]), V2024)
    assert result.reason == ("not covered: dates of clinically significant cardiac disease: 2025-01-10 "
                             "is within 6 months before the date of service 2025-03-15 (criterion 5e)")


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
    (V2024, {"member": {"age": 17}}, "1", "on_date"),
    # the rest of each version's criteria, by what meets them: the diagnosis, 6 and 7 are
    # clinical status; 3 and its classes are met once the member has received the further
    # line or class (reading 32, third release: after_treatment); 4 and the prior products are
    # the member's history; 5a is the request's own combination
    (V2025, {"diagnosis": {"multiple_myeloma": False}}, "2", "clinical"),
    (V2024, {"diagnosis": {"multiple_myeloma": False}}, "2", "clinical"),
    (V2025, {"prior_lines": [["VRd"]]}, "3", "after_treatment"),
    (V2024, {"prior_lines": [["VRd"]]}, "3", "after_treatment"),
    (V2025, {"prior_lines": [["bortezomib"], ["daratumumab"]]}, "3a", "after_treatment"),
    (V2024, {"prior_lines": [["lenalidomide"], ["daratumumab"]]}, "3b", "after_treatment"),
    (V2025, {"prior_lines": [["VRd"], ["Kd"]]}, "3c", "after_treatment"),
    (V2025, {"clinical_trials": ["KarMMa"]}, "4", "history"),
    (V2024, {"clinical_trials": ["KarMMa"]}, "4", "history"),
    (V2024, {"concurrent_therapies": [{"agent": "Darzalex", "purpose": "anti_cancer"}]}, "5a", "request"),
    (V2024, {"prior_cell_therapies": ["Abecma"]}, "5c", "history"),
    (V2024, {"prior_cell_therapies": ["Abecma"]}, "5g", "history"),
    (V2025, {"prior_cell_therapies": ["Abecma"]}, "8", "history"),
    (V2024, {"organ_function_adequate": False}, "6", "clinical"),
    (V2024, {"diagnosis": {"multiple_myeloma": True, "relapsed": True, "cns_involvement": True}}, "7", "clinical"),
])
def test_each_criterion_not_met_has_its_remedy_kind(version, changes, ident, kind):
    assert remedy(decide(case(**changes), version), ident).kind == kind


@pytest.mark.parametrize("birth, service, eighteenth", [
    ("2008-06-01", "2025-11-12", "2026-06-01"),
    # reading 10: a 29 February birthday is reached on 1 March in common years
    ("2008-02-29", "2025-11-12", "2026-03-01"),
    ("2012-02-29", "2029-11-12", "2030-03-01"),
])
def test_an_age_under_18_is_met_on_the_18th_birthday(birth, service, eighteenth):
    result = decide(case(member={"birth_date": birth}, date_of_service=service))
    assert (remedy(result, "1").kind, remedy(result, "1").date) == ("on_date", eighteenth)


def test_an_age_given_as_a_number_is_met_on_a_date_the_case_does_not_give():
    found = remedy(decide(case(member={"age": 17})), "1")
    # the date is the eighteenth birthday: the remedy asks for the birth date that gives it
    assert found.date is None and found.document == ["member.birth_date"]


@pytest.mark.parametrize("service, disease, leaves", [
    # reading 17: inside while on or after the date of service moved back 6 months
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
    assert result.missing == ["member.age", "member.birth_date"]   # reading 1 stays as it was
    [item] = result.documentation
    assert item.fields == ["member.age", "member.birth_date"]
    # reading 2, 10: member.age is the "age on the date of service", birth_date the date of birth
    assert item.words == "one of: age on the date of service, or date of birth"


# Each field a pending result asks for, in words: reading 2's meaning where it gives one,
# otherwise the words of the criterion that reads the field, with reading 2's unit.
@pytest.mark.parametrize("drop, version, words", [
    ("prescriber__specialist", V2025,
     "ordered by, with direct involvement of, a physician with expertise in the condition"),   # reading 2
    ("prescriber__approved_car_t_center", V2025, "given in a center approved to administer CAR-T"),  # reading 2
    ("diagnosis__multiple_myeloma", V2025, "diagnosis of multiple myeloma"),  # 2: "a diagnosis of ... multiple myeloma"
    ("diagnosis__cns_involvement", V2025, "myeloma involving the central nervous system"),  # reading 2
    ("prior_lines", V2025, "prior lines of therapy"),                        # 3: "two or more prior lines of therapy"
    ("prior_cell_therapies", V2025,                                          # 4, 5b: "CAR T-cell therapy or other
     "prior CAR-T or other genetically modified T-cell therapies"),         # genetically modified T-cell therapy"
    ("clinical_trials", V2025, "clinical trials the member is or has been a subject of"),  # 4: "is or has been a subject"
    ("concurrent_therapies", V2025, "therapies planned around the infusion"),  # reading 2: "planned around the infusion"
    ("prior_allogeneic_transplant", V2024, "prior allogeneic stem cell transplant"),  # 2024 5b, word for word
    ("creatinine_clearance_ml_min", V2024, "creatinine clearance (mL/min)"),  # 2024 5d: "Creatinine clearance ... mL/min"
    ("lvef_percent", V2024, "left ventricular ejection fraction (%)"),      # reading 2, 2024 5e: "45%"
    ("significant_cardiac_disease_dates", V2024,                             # 2024 5e: "clinically significant
     "dates of clinically significant cardiac disease"),                    # cardiac disease"
    ("infections__hepatitis_b", V2024, "active hepatitis B"),                # 2024 5f, word for word
    ("infections__hepatitis_c", V2024, "active hepatitis C"),
    ("infections__hiv", V2024, "HIV positive"),
    ("infections__uncontrolled", V2024, "other active, uncontrolled infection"),
    ("organ_function_adequate", V2025,                                       # reading 2
     "adequate organ and bone marrow function per the treating oncologist/hematologist"),
    ("dose_million_car_t_cells", V2025, "planned dose (x 10^6 CAR-positive T cells)"),  # reading 2: "planned dose, ×10⁶
])                                                                          # CAR-positive T cells"
def test_pending_asks_for_each_field_in_words(drop, version, words):
    date = IN_2024 if version == V2024 else IN_2025
    result = decide(case(date_of_service=date, **{drop: DROP}))
    assert result.decision == "pending"
    assert [(d.fields, d.words) for d in result.documentation] == [([drop.replace("__", ".")], words)]


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
    assert "19 of 20 criteria met" in out   # reading 8: 2024-08-21 has 20 criteria
    every = run("check", path, "--all").stdout
    assert "specialist" in every and "20 criteria" in every


def test_explain_stays_complete(tmp_path):
    out = run("explain", "-", input=json.dumps(case(organ_function_adequate=False))).stdout
    assert out.count("\n[") == 15   # reading 8: 2025-11-01 has 15 criteria


# --- 7. overrides and provenance ---------------------------------------------------------
def test_a_forced_version_shows_in_text_and_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(case()))
    text = run("check", path, "--policy-version", V2024).stdout
    assert "version 2024-08-21, requested (a what-if); the date of service 2025-11-12 selects 2025-11-01" in text
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


# --- 1. exclusions read as requirements ---------------------------------------------------
# Policy: "5. Individual does not have any of the following circumstances: ... b. Prior
# allogeneic stem cell transplant; OR". The item's words are quoted as they stand; that the
# individual must not have it is the reading criterion 5 gives them, kept apart (reading 9,
# third release).
@pytest.mark.parametrize("version, ids", [(V2024, "5a 5b 5c 5d 5e 5f 5g"), (V2025, "5a 5b")])
def test_every_sub_item_of_criterion_5_is_read_under_individual_does_not_have(version, ids):
    criteria = {c.id: c for c in decide(case(), version).criteria}
    opening = '"Individual does not have any of the following circumstances"'
    assert all(opening in (criteria[i].reading or "") for i in ids.split())
    assert sum(opening in (c.reading or "") for c in criteria.values()) == len(ids.split())


def test_prior_transplant_reads_as_the_requirement_in_criteria_and_markdown(tmp_path):
    words, reading = '"Prior allogeneic stem cell transplant"', "Individual does not have any of the following"
    listing = run("criteria", "--policy-version", V2024).stdout
    [row] = [n for n, line in enumerate(listing.splitlines()) if words in line]
    assert reading in listing.splitlines()[row + 1]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(case(date_of_service=IN_2024)))
    assert words in run("explain", path, "-f", "markdown").stdout
    assert reading in run("explain", path, "-f", "markdown").stdout
    assert words in run("explain", path).stdout


# --- 2. compare lines up by meaning ----------------------------------------------------------
def test_compare_lines_up_the_versions_requirement_by_requirement():
    from covkb.input.case import from_object
    from covkb.api import compare
    from covkb.results.explain import requirements

    rows = requirements(compare(from_object(case())))
    # the issue: 2024 5c and 2025 5b are prior CAR-T; 2024 9 and 2025 dose the dose;
    # 2024 5d-5f became 2025 Policy Guidelines advisories; 2024 5b (transplant) is 2024's only
    assert {V2024: "5c", V2025: "5b"} in rows
    assert {V2024: "9", V2025: "dose"} in rows
    assert {V2024: "5b", V2025: None} in rows
    assert all({V2024: i, V2025: "guidelines"} in rows for i in ("5d", "5e", "5f"))
    # reading 8: every criterion of each version stands in exactly one row
    assert [r[V2024] for r in rows] == "specialist center 1 2 3 3a 3b 3c 4 5a 5b 5c 5d 5e 5f 5g 6 7 8 9".split()
    assert [r[V2025] for r in rows if r[V2025] not in (None, "guidelines")] == \
        "specialist center 1 2 3 3a 3b 3c 4 5a 5b 6 7 8 dose".split()


def test_compare_text_puts_each_versions_id_in_the_row():
    out = run("compare", "-", input=json.dumps(case(prior_cell_therapies=["Carvykti"]))).stdout
    [row] = [line for line in out.splitlines() if line.startswith("5c ")]
    assert "5b not_met" in row and "5c not_met" in row and "differs" not in row
    [dose] = [line for line in out.splitlines() if line.startswith("9 ")]
    assert "dose met" in dose


# --- 9. every validation error at once ---------------------------------------------------------
def test_every_validation_error_is_reported_at_once_each_naming_field_and_value():
    from covkb.input.case import InvalidCase, from_object

    with pytest.raises(InvalidCase) as caught:
        from_object(case(prescriber={"specialist": "yes", "approved_car_t_center": True},
                         diagnosis={"relapse": True}, lvef_percent=120))
    error = caught.value
    assert len(error.errors) == 3
    assert 'prescriber.specialist = "yes"' in error.message
    assert "diagnosis.relapse = true: unknown field; did you mean `diagnosis.relapsed`?" in error.message
    assert "lvef_percent = 120" in error.message
    assert "\n" not in error.message
    # callers reading the first error's attributes still can
    assert (error.path, error.value) == (error.errors[0].path, error.errors[0].value)


def test_a_field_given_at_the_wrong_level_is_offered_its_place():
    from covkb.input.case import InvalidCase, from_object

    with pytest.raises(InvalidCase) as caught:
        from_object({**case(), "relapsed": True})
    assert "did you mean `diagnosis.relapsed`?" in caught.value.message


def test_a_batch_error_line_names_every_error_too(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(case(member={"birth_date": "2030-01-01"}, dose_million_car_t_cells=0,
                                      infections={"hiv": False, "hepatits_b": False})) + "\n")
    out = tmp_path / "out.jsonl"
    assert run("batch", source, "--out", out, "-q").exit_code == 1
    error = json.loads(out.read_text())["error"]
    assert "dose_million_car_t_cells = 0" in error
    assert "infections.hepatits_b" in error and "did you mean `infections.hepatitis_b`?" in error


# --- 10. audit filters, show --case-id, json keeps the record -------------------------------------
@pytest.fixture()
def log(tmp_path):
    path = tmp_path / "log.db"
    first = tmp_path / "a.json"
    first.write_text(json.dumps(case(case_id="A")))
    second = tmp_path / "b.json"
    second.write_text(json.dumps(case(case_id="B")))
    assert run("check", first, "--log", path).exit_code == 0
    assert run("check", second, "--log", path).exit_code == 0
    assert run("check", first, "--log", path, "--policy-version", V2024).exit_code == 0
    return path


@pytest.mark.parametrize("option, value", [("--decision", "not covered"), ("--decision", "denied"),
                                           ("--since", "2026-13-01"), ("--until", "2026-02-30"),
                                           ("--since", "yesterday")])
def test_audit_list_refuses_a_filter_nothing_could_match(log, option, value):
    result = run("audit", "list", "--log", log, option, value)
    assert result.exit_code == 2 and result.stdout == ""
    assert ("covered, not_covered, pending, not_applicable" if option == "--decision" else "YYYY-MM-DD") in result.stderr


def test_audit_show_case_id_shows_every_determination_of_the_case_newest_first(log):
    out = run("audit", "show", "--case-id", "A", "--log", log).stdout
    heads = [line.split(",")[0] for line in out.splitlines() if line.startswith("determination ")]
    assert heads == ["determination 3", "determination 1"]


def test_audit_show_json_keeps_the_logged_time_and_the_digests(log):
    records = [json.loads(line) for line in
               run("audit", "show", "--case-id", "A", "--log", log, "-f", "json").stdout.splitlines()]
    assert [r["id"] for r in records] == [3, 1]
    newest = records[0]
    assert newest["logged_at"] and len(newest["input_sha256"]) == 64
    assert newest["kb_sha256"] == kb_hash()
    # 7: the forced version and the provenance travel with the log too
    assert newest["version_requested"] == V2024
    assert newest["explanation"]["version_requested"] == V2024
    assert newest["explanation"]["provenance"]["kb_sha256"] == kb_hash()


# --- 11. plausibility advisories ----------------------------------------------------------------
# reading 20: a likely unit slip decides nothing (a denial never rests on a value covkb
# doubts); under 2025-11-01 LVEF and creatinine clearance are no criterion, so the decision
# stays; an age over 100 is only checked.
@pytest.mark.parametrize("changes, field, decision", [
    ({"lvef_percent": 1}, "lvef_percent", "covered"),
    ({"lvef_percent": Decimal("0.55")}, "lvef_percent", "covered"),
    ({"creatinine_clearance_ml_min": Decimal("250.01")}, "creatinine_clearance_ml_min", "covered"),
    # the dose is the policy's criterion: doubted, it is unknown, so the request is pending
    ({"dose_million_car_t_cells": Decimal("0.45")}, "dose_million_car_t_cells", "pending"),
    ({"member": {"birth_date": "1924-11-12"}}, "member.birth_date", "covered"),   # 101 that day
])
def test_an_implausible_value_gets_an_advisory_and_the_decision_stays_the_policys(changes, field, decision):
    result = decide(case(**changes))
    assert result.decision == decision
    assert len([a for a in result.advisories if a.startswith(f"{field} = ")]) == 1
    assert any(a.startswith(f"{field} = ") and PLEASE.search(a) for a in result.advisories)


PLEASE = re.compile(r"please (check|confirm)")


@pytest.mark.parametrize("changes", [
    {"lvef_percent": Decimal("1.000001")}, {"creatinine_clearance_ml_min": 250},
    {"dose_million_car_t_cells": 1}, {"member": {"birth_date": "1924-11-13"}},   # 100 that day
])
def test_a_value_on_the_plausible_side_of_its_bound_gets_none(changes):
    assert not [a for a in decide(case(**changes)).advisories if PLEASE.search(a)]


def test_a_fhir_case_reason_keeps_the_unit_with_the_number():
    from pathlib import Path

    bundle = Path(__file__).parents[1] / "facts" / "fhir" / "not-covered-crcl-45-2024.bundle.json"
    reason = json.loads(run("check", bundle, "-f", "json").stdout)["reason"]
    # a source, when the reason names one, follows the unit: "45 mL/min, from Observation/..."
    assert reason.startswith("not covered: creatinine clearance 45 mL/min")
    assert reason.endswith("is not more than 45 (criterion 5d)")
