"""`covkb explain` and `covkb compare`: the rule that decided, remedies, what to document."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import DROP, IN_2024, IN_2025, V2024, V2025, case
from covkb.input.case import from_object
from covkb.surfaces.cli import app
from covkb.api import compare, explain
from covkb.results.explain import as_markdown

runner = CliRunner()


def explained(version=None, **changes):
    return explain(from_object(case(**changes)), version)


# The rule that made the decision, for an auditor (kb/core.lp decided/2): the formula of
# the criteria true, false or undecided, the compendium pathway, or the plan outside the policy.
@pytest.mark.parametrize("changes, rule", [
    ({}, "every_criterion_met"),
    ({"organ_function_adequate": False}, "criterion_not_met"),
    ({"organ_function_adequate": DROP}, "documentation_required"),
    ({"compendium": {"nccn_category": "2A"}, "diagnosis": {"multiple_myeloma": False, "cns_involvement": False}},
     "compendium_pathway_met"),
    ({"plan": {"walmart_associates_plan": True}}, "plan_excluded"),
    ({"plan": {"group_specific_policy": True}}, "group_policy_supersedes"),
])
def test_the_explanation_names_the_rule_that_decided(changes, rule):
    assert explained(**changes).rule == rule


@pytest.mark.parametrize("changes, sentence", [
    ({}, "covered: every criterion of version 2025-11-01 is met, so it meets primary coverage criteria"),
    # issue 13.3: the reason names the failing facts and their criterion, not criterion numbers alone
    ({"organ_function_adequate": False, "dose_million_car_t_cells": 600},
     "not covered: adequate organ and bone marrow function per the treating oncologist/hematologist: "
     "no (criterion 6); planned dose 600 x 10^6 CAR-positive T cells is not 300 to 510 (the dose requirement)"),
    ({"organ_function_adequate": False, "plan": {"primary_coverage_criteria": False}},
     "not covered: adequate organ and bone marrow function per the treating oncologist/hematologist: "
     "no (criterion 6); the contract has no primary coverage criteria, so it is considered investigational"),
    ({"lvef_percent": DROP, "organ_function_adequate": DROP},
     "pending: criterion 6 cannot be decided without: adequate organ and bone marrow function per the "
     "treating oncologist/hematologist"),
    # the two opening requirements the policy does not number, cited by name (kb/words.lp cite_words)
    ({"prescriber": {"specialist": False}},
     "not covered: ordered by, with direct involvement of, a physician with expertise in the condition: "
     "no (the specialist requirement)"),
    ({"prescriber": {"approved_car_t_center": False}},
     "not covered: given in a center approved to administer CAR-T: no (the center requirement)"),
    ({"plan": {"walmart_associates_plan": True}},
     "not applicable: this policy does not apply to the Wal-Mart Associates Group Health Plan participants"),
    ({"plan": {"group_specific_policy": True}},
     "not applicable: a group specific policy supersedes this policy"),
    ({"date_of_service": "2024-08-20"},
     # the policy's own instruction for the criteria in force before its first version
     "not applicable: the date of service 2024-08-20 is before August 21, 2024, and for the criteria in "
     'force then the policy says: "For coverage criteria prior to August 21, 2024, for Idecabtagene '
     'Vicleucel (e.g., Abecma), please email codespecificinquiry@arkbluecross.com for a hardcopy print '
     'of the coverage policy."'),
    ({"compendium": {"fda_approved_indication": True}, "prior_lines": [["Rd"]]},
     "not covered: 1 prior line of therapy (Rd) is not two or more prior lines (criterion 3); "
     "Proteasome inhibitor (e.g., bortezomib, carfilzomib, ixazomib): none in any prior line (criterion 3b); "
     "Anti-CD38 monoclonal antibody (e.g., daratumumab, isatuximab): none in any prior line (criterion 3c)"),
    ({"compendium": {"nccn_category": "1"}, "diagnosis": {"cns_involvement": False},
      "prescriber": {"specialist": True}, "member": {"age": 16}},
     # the criteria fail on the age (criterion 1: "18 years of age or older"), so only the
     # compendium pathway is left, and the reason names the failing age
     "pending: age on the date of service 16 is not 18 years of age or older (criterion 1), so only the "
     "compendium pathway can still cover it (an NCCN category 1 recommendation is asserted; it is for an "
     "indication other than relapsed or refractory multiple myeloma, criterion 2 not met, with the specialist "
     "and center met), and that cannot be decided without: diagnosis of multiple myeloma; "
     "one of: myeloma is refractory, or myeloma is relapsed; given in a center approved to administer CAR-T"),
    # the compendium pathway names what the case asserts (reading 31: "naming the deciding facts")
    ({"compendium": {"nccn_category": "2A"}, "diagnosis": {"multiple_myeloma": False, "cns_involvement": False}},
     "covered: an NCCN category 2A recommendation is asserted, for an indication other than relapsed or "
     "refractory multiple myeloma (criterion 2 not met), and the opening requirements (specialist, center) "
     "are met, so it is covered by compendium"),
    ({"compendium": {"nccn_category": "1", "indication": 'the "X" indication'},
      "diagnosis": {"multiple_myeloma": False, "cns_involvement": False}},
     'covered: an NCCN category 1 recommendation is asserted (compendium.indication = the "X" indication), '
     "for an indication other than relapsed or refractory multiple myeloma (criterion 2 not met), and the "
     "opening requirements (specialist, center) are met, so it is covered by compendium"),
    ({"compendium": {"fda_approved_indication": True, "nccn_category": "2A"},
      "diagnosis": {"multiple_myeloma": False, "cns_involvement": False}},
     "covered: an FDA-approved oncologic indication whose label requirements the member meets is asserted "
     "and an NCCN category 2A recommendation is asserted, for an indication other than relapsed or "
     "refractory multiple myeloma (criterion 2 not met), and the opening requirements (specialist, center) "
     "are met, so it is covered by compendium"),
])
def test_the_decision_in_one_sentence(changes, sentence):
    assert explained(**changes).sentence == sentence


def test_the_2024_sentence_names_the_failing_facts_of_each_criterion():
    e = explained(date_of_service=IN_2024, creatinine_clearance_ml_min=45, lvef_percent=44)
    assert e.sentence == ("not covered: creatinine clearance 45 mL/min is not more than 45 (criterion 5d); "
                          "left ventricular ejection fraction 44% is not at least 45 (criterion 5e)")


# Criterion 2 reads three fields; the reason names only those that failed it: the
# diagnosis when it is not myeloma, else both of "refractory or relapsed".
@pytest.mark.parametrize("version", [V2024, V2025])
@pytest.mark.parametrize("diagnosis, sentence", [
    ({"multiple_myeloma": False, "relapsed": True, "refractory": True},
     "not covered: diagnosis of multiple myeloma: no (criterion 2)"),
    ({"multiple_myeloma": True, "relapsed": False, "refractory": False},
     "not covered: myeloma is refractory: no; myeloma is relapsed: no (criterion 2)"),
])
def test_the_sentence_names_only_the_diagnosis_facts_that_failed_2(version, diagnosis, sentence):
    assert explained(version, diagnosis={**diagnosis, "cns_involvement": False}).sentence == sentence


ANTI_CANCER = {"concurrent_therapies": [{"agent": "Darzalex", "purpose": "anti_cancer"}]}
NO_SPECIALIST = {"prescriber": {"specialist": False, "approved_car_t_center": True}}
NO_CENTER = {"prescriber": {"specialist": True, "approved_car_t_center": False}}


@pytest.mark.parametrize("version, changes, ident, remediable", [
    (V2025, {"dose_million_car_t_cells": 600}, "dose", True),
    (V2024, {"dose_million_car_t_cells": 200}, "9", True),
    (V2025, ANTI_CANCER, "5a", True),
    (V2024, ANTI_CANCER, "5a", True),
    (V2024, NO_SPECIALIST, "specialist", True),
    (V2025, NO_SPECIALIST, "specialist", True),
    (V2024, NO_CENTER, "center", True),
    (V2025, NO_CENTER, "center", True),
    (V2025, {"member": {"age": 16}}, "1", False),
    (V2024, {"prior_cell_therapies": ["Abecma"]}, "8", False),
    (V2025, {"diagnosis": {"multiple_myeloma": True, "relapsed": True, "cns_involvement": True}}, "7", False),
])
def test_a_criterion_not_met_says_whether_the_request_can_be_remedied(version, changes, ident, remediable):
    step = next(s for s in explained(version, **changes).criteria if s.id == ident)
    assert (step.status, step.remediable) == ("not_met", remediable)
    assert step.remedy


# issue 13's remedy kinds in words: clinical, "a new documented clinical status could meet
# it"; history, it rests on what has already happened; on_date, met from a date the case
# computes (the 18th birthday), or one it does not give when only the age is documented.
@pytest.mark.parametrize("changes, ident, kind, words", [
    ({"organ_function_adequate": False}, "6", "clinical", "a new documented clinical status could meet it"),
    ({"prior_cell_therapies": ["Abecma"]}, "8", "history", "cannot be remedied: it rests on the member's history"),
    ({"member": {"birth_date": "2008-06-01"}}, "1", "on_date", "met from 2026-06-01"),
    ({"member": {"age": 17}}, "1", "on_date",
     "met from a date the case does not give (document the date of birth)"),
])
def test_each_remedy_kind_is_said_in_words(changes, ident, kind, words):
    step = next(s for s in explained(V2025, **changes).criteria if s.id == ident)
    assert (step.status, step.remedy_kind, step.remedy) == ("not_met", kind, words)


def test_an_unknown_criterion_names_the_field_to_document():
    e = explained(V2024, infections={"hiv": False})
    step = next(s for s in e.criteria if s.id == "5f")
    assert step.document == ["infections.hepatitis_b", "infections.hepatitis_c", "infections.uncontrolled"]


def test_an_unrecognised_name_is_offered_the_nearest_known_name():
    e = explained(prior_lines=[["Revlimid", "Velcaid"], ["Darzalx"]])
    assert [(n.name, n.nearest) for n in e.unrecognised] == [("Velcaid", "velcade"), ("Darzalx", "darzalex")]


@pytest.mark.parametrize("field, written, nearest", [
    ("prior_lines", [["VRd"], ["DPdd"]], "dpd"),                       # a regimen abbreviation
    ("prior_cell_therapies", ["Abecmma"], "abecma"),                   # a product
    ("clinical_trials", ["KarMMa-33"], "karmma-3"),                    # a trial name
])
def test_the_nearest_known_name_may_be_a_regimen_a_product_or_a_trial(field, written, nearest):
    e = explained(**{field: written})
    assert [n.nearest for n in e.unrecognised] == [nearest]


def test_markdown_is_one_table_row_per_criterion_and_pipes_are_escaped():
    e = explained(case_id="A|B", prior_lines=[["Rd|x"], ["Vd"]])
    text = as_markdown(e)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| criterion")]
    assert len(rows) == len(e.criteria)
    assert all(row.count(" | ") == 4 for row in rows)


def test_compare_decides_under_both_versions_in_policy_order():
    sides = compare(from_object(case(prior_allogeneic_transplant=True, date_of_service=IN_2025)))
    assert [(s.version, s.decision) for s in sides] == [(V2024, "not_covered"), (V2025, "covered")]


def test_compare_command_marks_differing_rows():
    out = runner.invoke(app, ["compare", "-"], input=json.dumps(case(clinical_trials=["cilta-cel"]))).stdout
    [row] = [line for line in out.splitlines() if line.startswith("4 ")]
    assert "4 not_met" in row and "4 met" in row and row.endswith("<- differs")
    assert "the versions decide this case differently" in out
    data = json.loads(runner.invoke(app, ["compare", "-", "-f", "json"],
                                    input=json.dumps(case(clinical_trials=["cilta-cel"]))).stdout)
    assert data["decisions_differ"] is True and "4" in data["criteria_differ"]


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_explain_command_formats(fmt):
    result = runner.invoke(app, ["explain", "-", "-f", fmt], input=json.dumps(case(organ_function_adequate=False)))
    assert result.exit_code == 0
    assert "(criterion 6)" in result.stdout


FACTS = Path(__file__).parents[1] / "facts"


@pytest.mark.parametrize("example", sorted(p.name for p in FACTS.glob("*.*") if p.suffix != ".jsonl"))
def test_explain_and_compare_work_on_every_bundled_example(example):
    path = str(FACTS / example)
    for fmt in ("text", "json", "markdown"):
        assert runner.invoke(app, ["explain", path, "-f", fmt]).exit_code == 0
    assert runner.invoke(app, ["compare", path]).exit_code == 0
