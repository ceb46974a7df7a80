"""The compendium pathway's reasons (reading 31): covered = every criterion met OR
(pathway asserted AND criterion 2 not met AND specialist AND center met), the pathway
asserted only by an FDA-approved indication or an NCCN category 1 or 2A recommendation."""

import pytest

from cases import DROP, V2024, V2025, case, decide

# A request whose criteria fail on the dose (reading 19: 300 to 510), with an NCCN
# category 1 assertion, multiple myeloma documented and relapsed/refractory not: only the
# pathway can cover it, and it needs criterion 2 not met, relapsed and refractory both false.
PATHWAY_DOSE = dict(diagnosis={"multiple_myeloma": True, "cns_involvement": False},
                    dose_million_car_t_cells=600, organ_function_adequate=DROP,
                    compendium={"nccn_category": "1"})


# 2025-11-01's dose is its Dosage and Administration, no numbered criterion: cited by name
@pytest.mark.parametrize("version, service, dose", [(V2025, "2025-11-12", "the dose requirement"),
                                                    (V2024, "2025-03-15", "criterion 9")])
def test_a_pathway_case_failing_the_dose_names_the_failed_dose(version, service, dose):
    result = decide(case(**PATHWAY_DOSE, date_of_service=service))
    assert (result.version, result.decision) == (version, "pending")
    assert "600" in result.reason and f"({dose})" in result.reason
    assert "compendium pathway" in result.reason


def test_a_pathway_case_failing_the_dose_asks_only_for_what_can_change_the_decision():
    result = decide(case(**PATHWAY_DOSE))
    asked = [d for d in result.documentation if not d.for_resubmission]
    # organ function (criterion 6) cannot change it: the criteria already fail on the dose
    assert [d.fields for d in asked] == [["diagnosis.refractory", "diagnosis.relapsed"]]
    assert "organ" not in result.reason
    later = [d.fields for d in result.documentation if d.for_resubmission]
    assert later == [["organ_function_adequate"]]
    assert result.missing == ["diagnosis.refractory", "diagnosis.relapsed", "organ_function_adequate"]


def test_the_pathway_needs_relapsed_and_refractory_both_documented_not_one_of_them():
    [item] = [d for d in decide(case(**PATHWAY_DOSE)).documentation if not d.for_resubmission]
    assert not item.words.startswith("one of") and item.words.startswith("each of")


def test_without_the_pathway_relapsed_or_refractory_stays_one_of():
    result = decide(case(diagnosis={"multiple_myeloma": True, "cns_involvement": False}))
    [item] = result.documentation
    assert item.words.startswith("one of: ")


@pytest.mark.parametrize("category", ["2B", "3"])
@pytest.mark.parametrize("diagnosis, decision", [
    ({"multiple_myeloma": False, "cns_involvement": False}, "not_covered"),
    ({"multiple_myeloma": True, "cns_involvement": False}, "pending"),
])
def test_an_nccn_2b_or_3_assertion_is_said_to_be_no_pathway(category, diagnosis, decision):
    # "a NCCN category 1 or 2A recommendation": 2B and 3 are no pathway
    result = decide(case(diagnosis=diagnosis, compendium={"nccn_category": category}))
    assert result.decision == decision
    assert f"NCCN category {category} recommendation is stated" in result.reason
    assert "only a category 1 or 2A recommendation" in result.reason


def test_an_nccn_2b_assertion_on_a_request_the_criteria_cover_says_nothing_of_it():
    result = decide(case(compendium={"nccn_category": "2B"}))
    assert result.decision == "covered" and "2B" not in result.reason
