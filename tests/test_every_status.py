"""Every criterion of each version seen met, not_met and unknown at least once.

For each criterion: one change of the eligible case that the policy words say fails it,
and one that leaves it undocumented. The eligible case meets them all.
"""

import pytest

from cases import DROP, IN_2024, IN_2025, case, decide, statuses

FAILS = {
    "specialist": {"prescriber": {"specialist": False, "approved_car_t_center": True}},
    "center": {"prescriber": {"specialist": True, "approved_car_t_center": False}},
    "1": {"member": {"age": 17}},
    "2": {"diagnosis": {"multiple_myeloma": False, "cns_involvement": False}},
    "3": {"prior_lines": [["DVRd"]]},
    "3a": {"prior_lines": [["Vd"], ["Darzalex"]]},
    "3b": {"prior_lines": [["Rd"], ["Darzalex"]]},
    "3c": {"prior_lines": [["Rd"], ["Vd"]]},
    "4": {"clinical_trials": ["Abecma"]},
    "5a": {"concurrent_therapies": [{"agent": "daratumumab", "purpose": "anti_cancer"}]},
    "5b@2024-08-21": {"prior_allogeneic_transplant": True},
    "5b@2025-11-01": {"prior_cell_therapies": ["tisagenlecleucel"]},
    "5c": {"prior_cell_therapies": ["Kymriah"]},
    "5d": {"creatinine_clearance_ml_min": 30},
    "5e": {"lvef_percent": 40},
    "5f": {"infections": {"uncontrolled": True}},
    "5g": {"prior_cell_therapies": ["Carvykti"]},
    "6": {"organ_function_adequate": False},
    "7": {"diagnosis": {"multiple_myeloma": True, "relapsed": True, "cns_involvement": True}},
    "8": {"prior_cell_therapies": ["Abecma"]},
    "9": {"dose_million_car_t_cells": 600},
    "dose": {"dose_million_car_t_cells": 100},
}
UNDOCUMENTED = {
    "specialist": {"prescriber": {"approved_car_t_center": True}},
    "center": {"prescriber": {"specialist": True}},
    "1": {"member": DROP},
    "2": {"diagnosis": {"cns_involvement": False}},
    "3": {"prior_lines": DROP},
    "3a": {"prior_lines": [["Vd"], ["Darzalex", "mystery-mab"]]},
    "3b": {"prior_lines": [["Rd"], ["Darzalex", "mystery-mib"]]},
    "3c": {"prior_lines": [["Rd"], ["Vd", "mystery"]]},
    "4": {"clinical_trials": DROP},
    "5a": {"concurrent_therapies": DROP},
    "5b@2024-08-21": {"prior_allogeneic_transplant": DROP},
    "5b@2025-11-01": {"prior_cell_therapies": DROP},
    "5c": {"prior_cell_therapies": DROP},
    "5d": {"creatinine_clearance_ml_min": DROP},
    "5e": {"significant_cardiac_disease_dates": DROP},
    "5f": {"infections": {"hepatitis_b": False}},
    "5g": {"prior_cell_therapies": DROP},
    "6": {"organ_function_adequate": DROP},
    "7": {"diagnosis": {"multiple_myeloma": True, "relapsed": True}},
    "8": {"prior_cell_therapies": DROP},
    "9": {"dose_million_car_t_cells": DROP},
    "dose": {"dose_million_car_t_cells": DROP},
}
VERSIONS = {
    "2024-08-21": (IN_2024, "specialist center 1 2 3 3a 3b 3c 4 5a 5b 5c 5d 5e 5f 5g 6 7 8 9"),
    "2025-11-01": (IN_2025, "specialist center 1 2 3 3a 3b 3c 4 5a 5b 6 7 8 dose"),
}
ROWS = [(version, ident) for version, (_, ids) in VERSIONS.items() for ident in ids.split()]


def _change(table, version, ident):
    return table.get(f"{ident}@{version}", table.get(ident))


@pytest.mark.parametrize("version, ident", ROWS)
def test_each_criterion_can_be_met_not_met_and_unknown(version, ident):
    service = VERSIONS[version][0]
    seen = {
        "met": statuses(decide(case(date_of_service=service)))[ident],
        "not_met": statuses(decide(case(**_change(FAILS, version, ident), date_of_service=service)))[ident],
        "unknown": statuses(decide(case(**_change(UNDOCUMENTED, version, ident), date_of_service=service)))[ident],
    }
    assert seen == {"met": "met", "not_met": "not_met", "unknown": "unknown"}


@pytest.mark.parametrize("version, ident", ROWS)
def test_each_failing_change_fails_only_its_own_criteria(version, ident):
    service = VERSIONS[version][0]
    result = decide(case(**_change(FAILS, version, ident), date_of_service=service))
    failing = {k for k, s in statuses(result).items() if s == "not_met"}
    assert ident in failing
    assert result.decision == "not_covered"
