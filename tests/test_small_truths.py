"""Small truths a reader relies on: a name is never split at its own hyphen, a criterion
met just outside its window names the window's start, and on a not-covered decision
every unknown criterion is marked for a resubmission."""

import pytest

from cases import DROP, V2024, case, decide
from covkb.input import case as cases
from covkb.api import explain
from covkb.results.explain import as_text


@pytest.mark.parametrize("width", range(40, 101))
def test_explain_never_wraps_ide_cel_at_its_hyphen(width):
    # "ide-cel", "cilta-cel" are names (reading 26); a line ending "ide-" reads as another word
    text = as_text(explain(cases.from_object(case(prior_cell_therapies=["ide-cel", "cilta-cel"]))), width)
    assert not any(line.rstrip().endswith(("ide-", "cilta-")) for line in text.splitlines())


@pytest.mark.parametrize("disease, start", [
    # reading 17: the window starts at the date of service moved back 6 months,
    # 2025-03-15 -> 2024-09-15; the day before it is outside
    ("2024-09-14", "2024-09-15"),
    ("2023-01-01", "2024-09-15"),
])
def test_5e_met_just_outside_the_window_names_the_window_start(disease, start):
    result = decide(case(date_of_service="2025-03-15", significant_cardiac_disease_dates=[disease]), V2024)
    [criterion] = [c for c in result.criteria if c.id == "5e"]
    assert criterion.status == "met"
    assert any(disease in fact and start in fact and "before" in fact for fact in criterion.because)


def _marked(result):
    return [(d.fields, d.for_resubmission) for d in result.documentation]


@pytest.mark.parametrize("changes", [
    # a field undocumented
    {"dose_million_car_t_cells": 600, "organ_function_adequate": DROP},
    # a name no table holds (reading 28), and a field undocumented with it
    {"dose_million_car_t_cells": 600, "prior_lines": [["VRd", "Velcaid"], ["Kd"]]},
    {"dose_million_car_t_cells": 600, "prior_lines": [["VRd"], ["mystery-mab"]], "lvef_percent": DROP},
])
def test_on_a_not_covered_decision_every_unknown_criterion_is_marked_for_a_resubmission(changes):
    result = decide(case(**changes))
    assert result.decision == "not_covered"
    unknown = [c.id for c in result.criteria if c.status == "unknown"]
    assert unknown and result.documentation
    assert all(later for _, later in _marked(result))
    text = as_text(explain(cases.from_object(case(**changes))))
    assert "for a resubmission" in text and "to document (" not in text


def test_on_a_pending_decision_what_can_change_it_is_not_marked_for_a_resubmission():
    result = decide(case(organ_function_adequate=DROP))
    assert result.decision == "pending"
    assert _marked(result) == [(["organ_function_adequate"], False)]
