"""The facts behind each status (`because`), pinned for a case per criterion and version.

Each expected line is the case's own value set beside the policy's requirement.
"""

import pytest

from cases import DROP, IN_2024, IN_2025, case, decide

ELIGIBLE_BECAUSE = {
    "specialist": ["prescriber.specialist = true"],
    "center": ["prescriber.approved_car_t_center = true"],
    # the age and what it was taken from (the birth date, else the stated age)
    "1": ["age on the date of service = 63 (from member.birth_date = 1961-04-30), "
          "and 1 requires 18 years of age or older"],
    "2": ["diagnosis.multiple_myeloma = true", "diagnosis.refractory = true", "diagnosis.relapsed = true"],
    "3": ["prior_lines = 2 (lenalidomide, bortezomib, dexamethasone; daratumumab), "
          "and 3 requires two or more prior lines"],
    "3a": ["prior_lines line 1: 'lenalidomide' is an immunomodulatory agent"],
    "3b": ["prior_lines line 1: 'bortezomib' is a proteasome inhibitor"],
    "3c": ["prior_lines line 2: 'daratumumab' is an anti-CD38 monoclonal antibody"],
    "4": ["clinical_trials = none", "prior_cell_therapies = none"],
    "5a": ["concurrent_therapies = fludarabine (lymphodepletion)"],
    "6": ["organ_function_adequate = true"],
    "7": ["diagnosis.cns_involvement = false"],
    "8": ["prior_cell_therapies = none"],
}
ELIGIBLE_2024 = {
    **ELIGIBLE_BECAUSE,
    "5b": ["prior_allogeneic_transplant = false"],
    "5c": ["prior_cell_therapies = none"],
    "5d": ["creatinine_clearance_ml_min = 80, and 5d requires more than 45"],
    "5e": ["lvef_percent = 60, and 5e requires at least 45", "significant_cardiac_disease_dates = none"],
    "5f": ["infections.hepatitis_b = false", "infections.hepatitis_c = false",
           "infections.hiv = false", "infections.uncontrolled = false"],
    "5g": ["prior_cell_therapies = none"],
    "9": ["dose_million_car_t_cells = 450, and 9 requires 300 to 510"],
}
ELIGIBLE_2025 = {
    **ELIGIBLE_BECAUSE,
    "1": ["age on the date of service = 64 (from member.birth_date = 1961-04-30), "
          "and 1 requires 18 years of age or older"],
    "5b": ["prior_cell_therapies = none"],
    "dose": ["dose_million_car_t_cells = 450, and dose requires 300 to 510"],
}


@pytest.mark.parametrize("service, expected", [(IN_2024, ELIGIBLE_2024), (IN_2025, ELIGIBLE_2025)])
def test_met_criteria_show_the_facts_that_meet_them(service, expected):
    result = decide(case(date_of_service=service))
    assert {c.id: sorted(c.because) for c in result.criteria} == {k: sorted(v) for k, v in expected.items()}


NOT_MET = [
    (IN_2024, "specialist", {"prescriber": {"specialist": False, "approved_car_t_center": True}},
     ["prescriber.specialist = false"]),
    (IN_2025, "center", {"prescriber": {"specialist": True, "approved_car_t_center": False}},
     ["prescriber.approved_car_t_center = false"]),
    (IN_2024, "1", {"member": {"age": 17}},
     ["age on the date of service = 17 (from member.age = 17), and 1 requires 18 years of age or older"]),
    (IN_2025, "2", {"diagnosis": {"multiple_myeloma": True, "relapsed": False, "refractory": False}},
     ["diagnosis.multiple_myeloma = true", "diagnosis.refractory = false", "diagnosis.relapsed = false"]),
    (IN_2024, "3", {"prior_lines": [["DVRd"]]},
     ["prior_lines = 1 (DVRd), and 3 requires two or more prior lines"]),
    (IN_2025, "3a", {"prior_lines": [["Vd"], ["Darzalex"]]},
     ["prior_lines: no agent of this class in any prior line"]),
    # 4 reads both lists: the one that fails it is named, the other one cited as it is
    (IN_2024, "4", {"clinical_trials": ["Abecma"]},
     ["clinical_trials: 'Abecma' is a therapy listed in this policy", "prior_cell_therapies = none"]),
    (IN_2025, "4", {"clinical_trials": ["ide-cel"]},
     ["clinical_trials: 'ide-cel' is a therapy listed in this policy", "prior_cell_therapies = none"]),
    (IN_2025, "4", {"prior_cell_therapies": ["Kymriah"]},
     ["prior_cell_therapies: 'Kymriah' is a prior cell therapy", "clinical_trials = none"]),
    (IN_2024, "4", {"prior_cell_therapies": ["Yescarta"]},
     ["prior_cell_therapies: 'Yescarta' is a prior cell therapy", "clinical_trials = none"]),
    (IN_2024, "5a", {"concurrent_therapies": [{"agent": "Darzalex", "purpose": "anti_cancer"}]},
     ["concurrent_therapies: 'Darzalex' is given in combination with idecabtagene vicleucel"]),
    (IN_2025, "5a", {"concurrent_therapies": [{"agent": "Kyprolis", "purpose": "anti_cancer"}]},
     ["concurrent_therapies: 'Kyprolis' is given in combination with idecabtagene vicleucel"]),
    (IN_2024, "5b", {"prior_allogeneic_transplant": True}, ["prior_allogeneic_transplant = true"]),
    (IN_2025, "5b", {"prior_cell_therapies": ["tisa-cel"]},
     ["prior_cell_therapies: 'tisa-cel' is a prior cell therapy"]),
    (IN_2024, "5c", {"prior_cell_therapies": ["Kymriah"]},
     ["prior_cell_therapies: 'Kymriah' is a prior cell therapy"]),
    (IN_2024, "5d", {"creatinine_clearance_ml_min": 45},
     ["creatinine_clearance_ml_min = 45, and 5d requires more than 45"]),
    (IN_2024, "5e", {"lvef_percent": 40},
     ["lvef_percent = 40, and 5e requires at least 45", "significant_cardiac_disease_dates = none"]),
    (IN_2024, "5e", {"significant_cardiac_disease_dates": ["2024-09-15"]},
     ["lvef_percent = 60, and 5e requires at least 45",
      # 5e: "within in the past 6 months"; reading 17: on or after the date of service moved back
      "significant_cardiac_disease_dates has 2024-09-15, within 6 months before the date of service "
      "2025-03-15 (on or after 2024-09-15)"]),
    (IN_2024, "5f", {"infections": {"uncontrolled": True}}, ["infections.uncontrolled = true"]),
    (IN_2024, "5g", {"prior_cell_therapies": ["Carvykti"]},
     ["prior_cell_therapies: 'Carvykti' is idecabtagene vicleucel or ciltacabtagene autoleucel"]),
    (IN_2024, "6", {"organ_function_adequate": False}, ["organ_function_adequate = false"]),
    (IN_2025, "7", {"diagnosis": {"multiple_myeloma": True, "relapsed": True, "cns_involvement": True}},
     ["diagnosis.cns_involvement = true"]),
    (IN_2024, "8", {"prior_cell_therapies": ["cilta-cel"]},
     ["prior_cell_therapies: 'cilta-cel' is idecabtagene vicleucel or ciltacabtagene autoleucel"]),
    (IN_2025, "8", {"prior_cell_therapies": ["ABECMA"]},
     ["prior_cell_therapies: 'ABECMA' is idecabtagene vicleucel"]),
    (IN_2024, "9", {"dose_million_car_t_cells": 600},
     ["dose_million_car_t_cells = 600, and 9 requires 300 to 510"]),
    (IN_2025, "dose", {"dose_million_car_t_cells": 299},
     ["dose_million_car_t_cells = 299, and dose requires 300 to 510"]),
]


@pytest.mark.parametrize("service, ident, changes, expected", NOT_MET)
def test_not_met_criteria_show_the_facts_that_fail_them(service, ident, changes, expected):
    result = decide(case(**changes, date_of_service=service))
    criterion = next(c for c in result.criteria if c.id == ident)
    assert (criterion.status, sorted(criterion.because)) == ("not_met", sorted(expected))


UNKNOWN = [
    (IN_2024, "specialist", {"prescriber": {"approved_car_t_center": True}}, ["prescriber.specialist not documented"]),
    (IN_2025, "specialist", {"prescriber": {"approved_car_t_center": True}}, ["prescriber.specialist not documented"]),
    (IN_2024, "center", {"prescriber": {"specialist": True}},
     ["prescriber.approved_car_t_center not documented", ]),
    (IN_2025, "center", {"prescriber": {"specialist": True}}, ["prescriber.approved_car_t_center not documented"]),
    (IN_2025, "1", {"member": DROP}, ["member.age not documented", "member.birth_date not documented"]),
    (IN_2024, "2", {"diagnosis": {"refractory": True, "cns_involvement": False}},
     ["diagnosis.multiple_myeloma not documented", "diagnosis.refractory = true"]),
    (IN_2024, "3", {"prior_lines": DROP}, ["prior_lines not documented"]),
    (IN_2025, "3", {"prior_lines": DROP}, ["prior_lines not documented"]),
    (IN_2024, "3a", {"prior_lines": DROP}, ["prior_lines not documented"]),
    (IN_2025, "3b", {"prior_lines": DROP}, ["prior_lines not documented"]),
    (IN_2025, "3c", {"prior_lines": [["Rd"], ["Vd", "mystery-mab"]]},
     ["prior_lines line 2: 'mystery-mab' is not a recognised agent name and may belong to this class"]),
    (IN_2024, "4", {"prior_cell_therapies": DROP}, ["clinical_trials = none", "prior_cell_therapies not documented"]),
    (IN_2024, "5a", {"concurrent_therapies": DROP}, ["concurrent_therapies not documented"]),
    (IN_2025, "5a", {"concurrent_therapies": DROP}, ["concurrent_therapies not documented"]),
    (IN_2024, "5b", {"prior_allogeneic_transplant": DROP}, ["prior_allogeneic_transplant not documented"]),
    (IN_2025, "5b", {"prior_cell_therapies": DROP}, ["prior_cell_therapies not documented"]),
    (IN_2024, "5c", {"prior_cell_therapies": DROP}, ["prior_cell_therapies not documented"]),
    (IN_2024, "5d", {"creatinine_clearance_ml_min": DROP}, ["creatinine_clearance_ml_min not documented"]),
    (IN_2024, "5g", {"prior_cell_therapies": DROP}, ["prior_cell_therapies not documented"]),
    (IN_2024, "6", {"organ_function_adequate": DROP}, ["organ_function_adequate not documented"]),
    (IN_2025, "6", {"organ_function_adequate": DROP}, ["organ_function_adequate not documented"]),
    (IN_2024, "7", {"diagnosis": {"multiple_myeloma": True, "relapsed": True}}, ["diagnosis.cns_involvement not documented"]),
    (IN_2025, "7", {"diagnosis": {"multiple_myeloma": True, "relapsed": True}}, ["diagnosis.cns_involvement not documented"]),
    (IN_2024, "8", {"prior_cell_therapies": DROP}, ["prior_cell_therapies not documented"]),
    (IN_2025, "8", {"prior_cell_therapies": DROP}, ["prior_cell_therapies not documented"]),
    (IN_2024, "9", {"dose_million_car_t_cells": DROP}, ["dose_million_car_t_cells not documented"]),
    (IN_2025, "3a", {"prior_lines": DROP}, ["prior_lines not documented"]),
    (IN_2024, "3c", {"prior_lines": DROP}, ["prior_lines not documented"]),
    (IN_2024, "1", {"member": DROP}, ["member.age not documented", "member.birth_date not documented"]),
    (IN_2025, "2", {"diagnosis": {"multiple_myeloma": True, "cns_involvement": False}},
     ["diagnosis.multiple_myeloma = true", "diagnosis.refractory not documented",
      "diagnosis.relapsed not documented"]),
    (IN_2024, "3b", {"prior_lines": [["Rd"], ["Darzalex", "mystery-mib"]]},
     ["prior_lines line 2: 'mystery-mib' is not a recognised agent name and may belong to this class"]),
    (IN_2025, "4", {"clinical_trials": DROP}, ["clinical_trials not documented", "prior_cell_therapies = none"]),
    (IN_2024, "5e", {"lvef_percent": DROP},
     ["lvef_percent not documented", "significant_cardiac_disease_dates = none"]),
    (IN_2024, "5f", {"infections": {"hiv": False}},
     ["infections.hepatitis_b not documented", "infections.hepatitis_c not documented",
      "infections.hiv = false", "infections.uncontrolled not documented"]),
    (IN_2025, "dose", {"dose_million_car_t_cells": DROP}, ["dose_million_car_t_cells not documented"]),
]


@pytest.mark.parametrize("service, ident, changes, expected", UNKNOWN)
def test_unknown_criteria_show_what_is_not_documented(service, ident, changes, expected):
    result = decide(case(**changes, date_of_service=service))
    criterion = next(c for c in result.criteria if c.id == ident)
    assert (criterion.status, sorted(criterion.because)) == ("unknown", sorted(expected))


@pytest.mark.parametrize("changes, expected", [
    ({"creatinine_clearance_ml_min": 45},
     "creatinine_clearance_ml_min = 45: Policy Guidelines: provider is responsible for verification "
     "of adequate renal function (creatinine clearance is not less than or equal to 45 mL/min)"),
    ({"lvef_percent": 44},
     "lvef_percent = 44: Policy Guidelines: provider is responsible for verification of adequate "
     "cardiovascular function (left cardiac ejection fraction (EF) is not less than 45%)"),
    ({"significant_cardiac_disease_dates": ["2025-05-12"]},
     "significant_cardiac_disease_dates has 2025-05-12: Policy Guidelines: provider is responsible "
     "for verification of adequate cardiovascular function (other clinically significant cardiac "
     "disease has not been present within in the past 6 months)"),
    ({"infections": {"hepatitis_c": True}},
     "infections.hepatitis_c = true: Policy Guidelines: provider is responsible for verification of "
     "adequate immunological status (no active hepatitis B, active hepatitis C, human "
     "immunodeficiency virus (HIV) positive, or other active, uncontrolled infection)"),
])
def test_2025_11_01_advisories_quote_the_policy_guidelines(changes, expected):
    assert decide(case(**changes, date_of_service=IN_2025)).advisories == [expected]
