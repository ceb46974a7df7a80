"""Which version applies, and the differences between the two versions (reading 5, 6, 11, 14, 16, 17, 18)."""

import pytest

from cases import DROP, IN_2024, IN_2025, V2024, V2025, case, decide, status, statuses

IDS_2024 = "specialist center 1 2 3 3a 3b 3c 4 5a 5b 5c 5d 5e 5f 5g 6 7 8 9".split()
IDS_2025 = "specialist center 1 2 3 3a 3b 3c 4 5a 5b 6 7 8 dose".split()


# "Effective August 21, 2024 to October 31, 2025" / "Effective November 1, 2025" /
# "For coverage criteria prior to August 21, 2024, ... hardcopy print" (reading 5)
@pytest.mark.parametrize("service, version, decision, label", [
    ("2024-08-20", None, "not_applicable", "criteria_not_on_file"),
    ("2024-08-21", V2024, "covered", "meets_primary_coverage_criteria"),
    ("2025-10-31", V2024, "covered", "meets_primary_coverage_criteria"),
    ("2025-11-01", V2025, "covered", "meets_primary_coverage_criteria"),
    ("2031-01-01", V2025, "covered", "meets_primary_coverage_criteria"),
    ("1999-01-01", None, "not_applicable", "criteria_not_on_file"),
])
def test_the_date_of_service_selects_the_version(service, version, decision, label):
    result = decide(case(date_of_service=service, member={"birth_date": "1961-04-30"}))
    assert (result.version, result.decision, result.label) == (version, decision, label)


def test_each_version_lists_its_criteria_in_policy_order():
    assert [c.id for c in decide(case(date_of_service=IN_2024)).criteria] == IDS_2024
    assert [c.id for c in decide(case(date_of_service=IN_2025)).criteria] == IDS_2025


def test_not_applicable_has_no_version_and_no_criteria():
    result = decide(case(date_of_service="2024-08-20"))
    assert (result.version, result.criteria, result.missing) == (None, [], [])


@pytest.mark.parametrize("service", ["2024-08-20", IN_2024, IN_2025])
@pytest.mark.parametrize("version", [V2024, V2025])
def test_version_option_applies_that_version_whatever_the_date(service, version):
    result = decide(case(date_of_service=service, member={"age": 60}), version)
    assert result.version == version


# "This policy does not apply to the Wal-Mart Associates Group Health Plan participants."
# "Group specific policy will supersede this policy when applicable." (reading 6)
@pytest.mark.parametrize("plan, service, label", [
    ({"walmart_associates_plan": True}, IN_2025, "plan_excluded"),
    ({"walmart_associates_plan": True, "group_specific_policy": True}, IN_2025, "plan_excluded"),
    ({"group_specific_policy": True}, IN_2024, "group_policy_supersedes"),
    ({"walmart_associates_plan": True}, "2024-01-01", "plan_excluded"),  # checked before the date
    ({"group_specific_policy": True}, "2024-01-01", "group_policy_supersedes"),
])
def test_plan_exclusions_come_before_the_date(plan, service, label):
    result = decide(case(plan=plan, date_of_service=service, member={"age": 60}))
    assert (result.decision, result.label, result.version) == ("not_applicable", label, None)


@pytest.mark.parametrize("plan", [{"walmart_associates_plan": False},
                                  {"group_specific_policy": False}, {}])
def test_plan_flags_false_or_absent_leave_the_policy_applying(plan):
    assert decide(case(plan=plan)).decision == "covered"


# Prior cilta-cel: "g. Repeated administration of idecabtagene vicleucel or ciltacabtagene
# autoleucel" and "8. ... idecabtagene vicleucel or ciltacabtagene autoleucel" (2024-08-21);
# "8. ... idecabtagene vicleucel per individual per lifetime" (2025-11-01). Any prior cell
# therapy fails 4 and 5c (2024) / 5b (2025).
@pytest.mark.parametrize("service, expected", [
    (IN_2024, {"4": "not_met", "5c": "not_met", "5g": "not_met", "8": "not_met"}),
    (IN_2025, {"4": "not_met", "5b": "not_met", "8": "met"}),
])
def test_prior_cilta_cel(service, expected):
    result = decide(case(prior_cell_therapies=["Carvykti"], date_of_service=service))
    assert {k: status(result, k) for k in expected} == expected
    assert result.decision == "not_covered"


@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_prior_ide_cel_fails_8_under_both_versions(service):
    result = decide(case(prior_cell_therapies=["ide-cel"], date_of_service=service))
    assert status(result, "8") == "not_met"


# Criterion 4's "therapies listed in this policy": ide-cel and cilta-cel in 2024-08-21,
# ide-cel only in 2025-11-01 (reading 14).
@pytest.mark.parametrize("trial, service, expected", [
    ("cilta-cel", IN_2024, "not_met"),
    ("cilta-cel", IN_2025, "met"),
    ("ciltacabtagene autoleucel", IN_2024, "not_met"),
    ("Abecma", IN_2024, "not_met"),
    ("idecabtagene vicleucel", IN_2025, "not_met"),
    ("daratumumab", IN_2024, "met"),     # an example agent of criterion 3 is no listed therapy
    ("teclistamab", IN_2025, "met"),
])
def test_clinical_trial_of_a_listed_therapy_fails_4(trial, service, expected):
    result = decide(case(clinical_trials=[trial], date_of_service=service))
    assert status(result, "4") == expected


def test_cilta_cel_trial_alone_tells_the_versions_apart():
    data = case(clinical_trials=["cilta-cel"], date_of_service=IN_2025)
    assert decide(data, V2024).decision == "not_covered"
    assert decide(data, V2025).decision == "covered"


# "b. Prior allogeneic stem cell transplant" is criterion 5b in 2024-08-21 only (reading 16, 18).
def test_prior_allogeneic_transplant_fails_5b_only_under_2024_08_21():
    data = case(prior_allogeneic_transplant=True, date_of_service=IN_2025)
    old, new = decide(data, V2024), decide(data, V2025)
    assert (status(old, "5b"), old.decision) == ("not_met", "not_covered")
    assert (status(new, "5b"), new.decision) == ("met", "covered")


# Relapsed or refractory, in both versions (reading 11).
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
@pytest.mark.parametrize("diagnosis, expected", [
    ({"multiple_myeloma": True, "relapsed": False, "refractory": False}, "not_met"),
    ({"multiple_myeloma": True, "relapsed": True, "refractory": False}, "met"),
    ({"multiple_myeloma": True, "relapsed": False, "refractory": True}, "met"),
    ({"multiple_myeloma": False, "relapsed": True, "refractory": True}, "not_met"),
    ({"multiple_myeloma": True, "relapsed": False}, "unknown"),
    ({"multiple_myeloma": True}, "unknown"),
    ({"relapsed": True}, "unknown"),
    ({"relapsed": False, "refractory": False}, "not_met"),
])
def test_criterion_2_needs_relapsed_or_refractory_multiple_myeloma(service, diagnosis, expected):
    result = decide(case(diagnosis={**diagnosis, "cns_involvement": False}, date_of_service=service))
    assert status(result, "2") == expected


@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_not_relapsed_not_refractory_myeloma_is_not_covered(service):
    result = decide(case(diagnosis={"multiple_myeloma": True, "relapsed": False,
                                    "refractory": False, "cns_involvement": False},
                         date_of_service=service))
    assert result.decision == "not_covered"


def test_identical_eligible_case_is_covered_under_both_versions():
    data = case(date_of_service=IN_2025)
    assert decide(data, V2024).decision == decide(data, V2025).decision == "covered"
    assert set(statuses(decide(data, V2024)).values()) == {"met"}


def test_the_2025_11_01_version_has_no_end():
    assert decide(case(date_of_service="9999-12-31")).version == V2025
