"""The decision and label from the statuses (reading 30), and `missing`."""

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


# reading 31: "if an FDA-approved oncologic indication exists (not listed as an indication
# above) ... AND/OR a NCCN category 1 or 2A recommendation": covered = (every criterion met)
# OR (pathway asserted AND criterion 2 not met AND specialist met AND center met), in
# Kleene's three-valued logic.
NOT_MYELOMA = {"multiple_myeloma": False, "cns_involvement": False}
PATHWAYS = [{"fda_approved_indication": True}, {"nccn_category": "1"}, {"nccn_category": "2A"}]


@pytest.mark.parametrize("compendium", PATHWAYS)
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_compendium_pathway_covers_an_indication_not_listed_above(compendium, service):
    result = decide(case(compendium=compendium, diagnosis=NOT_MYELOMA, prior_lines=[["Rd"]],
                         date_of_service=service))
    assert (result.decision, result.label) == ("covered", "covered_by_compendium")
    assert status(result, "2") == status(result, "3") == "not_met"   # still reported


# "(not listed as an indication above)": the pathway never rescues a relapsed or
# refractory myeloma request that fails the criteria.
@pytest.mark.parametrize("changes, failing", [
    ({"prior_cell_therapies": ["Abecma"]}, "8"),                       # a second lifetime ide-cel
    ({"member": {"age": 16}}, "1"),                                     # a child
    ({"concurrent_therapies": [{"agent": "daratumumab", "purpose": "anti_cancer"}]}, "5a"),
    ({"dose_million_car_t_cells": 600}, "dose"),                        # an off-label dose
    ({"prior_lines": [["Rd"]]}, "3"),
])
@pytest.mark.parametrize("compendium", PATHWAYS)
def test_compendium_pathway_never_rescues_a_myeloma_request_that_fails_the_criteria(changes, failing, compendium):
    result = decide(case(compendium=compendium, **changes))
    assert status(result, "2") == "met" and status(result, failing) == "not_met"
    assert (result.decision, result.label) == ("not_covered", "does_not_meet_primary_coverage_criteria")
    assert any(a.startswith("compendium: ") and "the criteria decide" in a for a in result.advisories)


def test_a_pathway_asserted_on_a_myeloma_request_that_meets_every_criterion_is_an_advisory():
    result = decide(case(compendium={"nccn_category": "2A"}))
    assert (result.decision, result.label) == ("covered", "meets_primary_coverage_criteria")
    assert [a for a in result.advisories if a.startswith("compendium: ")]


def test_no_compendium_advisory_without_a_pathway_or_without_myeloma():
    assert not decide(case()).advisories
    result = decide(case(compendium={"nccn_category": "1"}, diagnosis=NOT_MYELOMA))
    assert not [a for a in result.advisories if a.startswith("compendium: ")]


def test_a_pathway_case_whose_criterion_2_is_unknown_is_pending_naming_the_diagnosis():
    result = decide(case(compendium={"nccn_category": "1"}, member={"age": 16},
                         diagnosis={"cns_involvement": False}))
    assert status(result, "1") == "not_met" and status(result, "2") == "unknown"
    assert (result.decision, result.label) == ("pending", "documentation_required")
    assert {"diagnosis.multiple_myeloma", "diagnosis.relapsed", "diagnosis.refractory"} <= set(result.missing)


def test_without_a_pathway_criterion_2_unknown_and_another_not_met_is_not_covered():
    result = decide(case(member={"age": 16}, diagnosis={"cns_involvement": False}))
    assert result.decision == "not_covered"


@pytest.mark.parametrize("category", ["2B", "3"])
def test_nccn_2b_and_3_are_no_compendium_pathway(category):
    result = decide(case(compendium={"nccn_category": category}, diagnosis=NOT_MYELOMA))
    assert result.decision == "not_covered"


def test_compendium_pathway_fails_without_a_specialist():
    result = decide(case(compendium={"fda_approved_indication": True}, diagnosis=NOT_MYELOMA,
                         prescriber={"specialist": False, "approved_car_t_center": True},
                         plan={"primary_coverage_criteria": False}))
    assert (result.decision, result.label) == ("not_covered", "investigational")


def test_compendium_pathway_waits_for_an_undocumented_center():
    result = decide(case(compendium={"nccn_category": "1"}, diagnosis=NOT_MYELOMA,
                         prescriber={"specialist": True}))
    assert (result.decision, result.label) == ("pending", "documentation_required")
    assert result.missing == ["prescriber.approved_car_t_center"]


def test_compendium_false_is_no_pathway():
    result = decide(case(compendium={"fda_approved_indication": False, "indication": "x"},
                         diagnosis=NOT_MYELOMA))
    assert result.decision == "not_covered"


def test_concurrent_purposes():
    def five_a(purpose):
        therapy = [{"agent": "daratumumab", "purpose": purpose}]
        return status(decide(case(concurrent_therapies=therapy)), "5a")
    assert five_a("anti_cancer") == "not_met"
    assert five_a("bridging") == "met"
    # reading 15: daratumumab is no lymphodepleting chemotherapy, and a myeloma agent
    assert five_a("lymphodepletion") == five_a("supportive") == "not_met"
    assert status(decide(case(concurrent_therapies=[])), "5a") == "met"


def test_the_texts_are_the_policy_words():
    result = decide(case(date_of_service=IN_2024))
    words = {c.id: c.text for c in result.criteria}
    assert words["5d"] == "Creatinine clearance less than or equal to 45 mL/min"
    assert words["7"] == "Individual does not have evidence of myeloma involving the central nervous system"
    result = decide(case(date_of_service=IN_2025))
    words = {c.id: c.text for c in result.criteria}
    assert words["8"] == "There is only one administration of idecabtagene vicleucel per individual per lifetime"
