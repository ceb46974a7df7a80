"""The decision and label from the statuses (SPEC §4.12), and `missing`."""

import pytest

from cases import DROP, IN_2024, IN_2025, V2024, V2025, case, decide, status


def test_every_criterion_met_is_covered():
    result = decide(case())
    assert (result.decision, result.label) == ("covered", "meets_primary_coverage_criteria")
    assert result.policy == "2024041"


def test_a_criterion_not_met_is_not_covered():
    result = decide(case(organ_function_adequate=False))
    assert (result.decision, result.label) == ("not_covered", "does_not_meet_primary_coverage_criteria")


# "For individuals without primary coverage criteria, ... is considered investigational."
def test_not_covered_without_primary_coverage_criteria_is_investigational():
    result = decide(case(organ_function_adequate=False, plan={"primary_coverage_criteria": False}))
    assert (result.decision, result.label) == ("not_covered", "investigational")


def test_covered_is_covered_without_primary_coverage_criteria_too():
    result = decide(case(plan={"primary_coverage_criteria": False}))
    assert result.label == "meets_primary_coverage_criteria"


def test_undocumented_criterion_is_pending_with_the_field_missing():
    result = decide(case(lvef_percent=DROP, date_of_service=IN_2024))
    assert (result.decision, result.label) == ("pending", "documentation_required")
    assert status(result, "5e") == "unknown"
    assert result.missing == ["lvef_percent"]


def test_null_means_not_documented():
    result = decide(case(organ_function_adequate=None))
    assert status(result, "6") == "unknown"
    assert result.missing == ["organ_function_adequate"]


def test_not_met_outweighs_unknown():
    result = decide(case(organ_function_adequate=False, lvef_percent=DROP, dose_million_car_t_cells=DROP))
    assert result.decision == "not_covered"


@pytest.mark.parametrize("changes, missing", [
    ({"member": {}}, ["member.age", "member.birth_date"]),
    ({"diagnosis": {"multiple_myeloma": True, "relapsed": True, "cns_involvement": False}}, []),
    ({"diagnosis": {"relapsed": True, "cns_involvement": False}}, ["diagnosis.multiple_myeloma"]),
    ({"diagnosis": {"refractory": True, "cns_involvement": False}}, ["diagnosis.multiple_myeloma"]),
    ({"diagnosis": {"multiple_myeloma": True, "cns_involvement": False}},
     ["diagnosis.refractory", "diagnosis.relapsed"]),
    ({"infections": {"hepatitis_b": False, "hiv": False}},
     ["infections.hepatitis_c", "infections.uncontrolled"]),
    ({"prior_cell_therapies": DROP}, ["prior_cell_therapies"]),
    ({"clinical_trials": DROP}, ["clinical_trials"]),
    ({"prior_lines": DROP}, ["prior_lines"]),
    ({"prescriber": {"specialist": True}}, ["prescriber.approved_car_t_center"]),
    ({"significant_cardiac_disease_dates": DROP, "lvef_percent": DROP},
     ["lvef_percent", "significant_cardiac_disease_dates"]),
])
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_missing_names_the_fields_that_would_settle_unknown_criteria(changes, missing, service):
    result = decide(case(**changes, date_of_service=service))
    if service == IN_2025:  # fields of 2024-08-21 criteria that 2025-11-01 holds no criterion on
        missing = [m for m in missing if m not in ("lvef_percent", "significant_cardiac_disease_dates")
                   and not m.startswith("infections.")]
    assert result.missing == missing
    assert result.decision == ("pending" if missing else "covered")


def test_a_failing_field_settles_an_all_of_criterion_whatever_the_rest():
    result = decide(case(infections={"hiv": True}, date_of_service=IN_2024))
    assert status(result, "5f") == "not_met"
    assert "infections.hepatitis_b" not in result.missing


# SPEC §4.12(b): the compendium pathway — the opening requirements alone decide.
@pytest.mark.parametrize("compendium", [
    {"fda_approved_indication": True}, {"nccn_category": "1"}, {"nccn_category": "2A"},
])
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_compendium_pathway_covers_when_the_opening_requirements_are_met(compendium, service):
    result = decide(case(compendium=compendium, prior_lines=[["Rd"]], date_of_service=service))
    assert (result.decision, result.label) == ("covered", "covered_by_compendium")
    assert status(result, "3") == "not_met"   # still reported


@pytest.mark.parametrize("category", ["2B", "3"])
def test_nccn_2b_and_3_are_no_compendium_pathway(category):
    result = decide(case(compendium={"nccn_category": category}, prior_lines=[["Rd"]]))
    assert result.decision == "not_covered"


def test_compendium_pathway_fails_without_a_specialist():
    result = decide(case(compendium={"fda_approved_indication": True}, prior_lines=[["Rd"]],
                         prescriber={"specialist": False, "approved_car_t_center": True},
                         plan={"primary_coverage_criteria": False}))
    assert (result.decision, result.label) == ("not_covered", "investigational")


def test_compendium_pathway_waits_for_an_undocumented_center():
    result = decide(case(compendium={"nccn_category": "1"}, prior_lines=[["Rd"]],
                         prescriber={"specialist": True}))
    assert (result.decision, result.label) == ("pending", "documentation_required")
    assert result.missing == ["prescriber.approved_car_t_center"]


def test_compendium_false_is_no_pathway():
    result = decide(case(compendium={"fda_approved_indication": False, "indication": "x"},
                         prior_lines=[["Rd"]]))
    assert result.decision == "not_covered"


def test_concurrent_purposes():
    def five_a(purpose):
        therapy = [{"agent": "daratumumab", "purpose": purpose}]
        return status(decide(case(concurrent_therapies=therapy)), "5a")
    assert five_a("anti_cancer") == "not_met"
    assert five_a("bridging") == five_a("lymphodepletion") == five_a("supportive") == "met"
    assert status(decide(case(concurrent_therapies=[])), "5a") == "met"


def test_the_texts_are_the_policy_words():
    result = decide(case(date_of_service=IN_2024))
    words = {c.id: c.text for c in result.criteria}
    assert words["5d"] == "Creatinine clearance less than or equal to 45 mL/min"
    assert words["7"] == "Individual does not have evidence of myeloma involving the central nervous system"
    result = decide(case(date_of_service=IN_2025))
    words = {c.id: c.text for c in result.criteria}
    assert words["8"] == "There is only one administration of idecabtagene vicleucel per individual per lifetime"
