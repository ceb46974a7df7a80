"""covkb diff: the kinds of case the versions decide differently, computed from kb/."""

import json
import shutil
from pathlib import Path

import pytest

from covkb.engine import kb
from covkb.api import check
from covkb.input.text import from_json
from covkb.analysis.diff import diff

KB = kb.kb_dir()


@pytest.fixture(scope="module")
def result():
    return diff()


def _kinds(groups):
    return {"; ".join(g.classes): tuple(g.decisions.values()) for g in groups}


def test_every_difference_of_spec_4_5_to_4_9_is_found(result):
    kinds = _kinds(result.decisions_differ)
    # reading 16, 18 and §4.8: 2024-08-21 criteria that are only Policy Guidelines from 2025-11-01
    assert kinds["prior_allogeneic_transplant: true"] == ("not_covered", "covered")
    assert kinds["creatinine_clearance_ml_min = 45"] == ("not_covered", "covered")
    assert kinds["creatinine_clearance_ml_min < 45"] == ("not_covered", "covered")
    assert kinds["lvef_percent < 45"] == ("not_covered", "covered")
    assert kinds["significant_cardiac_disease_dates: within the past 6 months"] == ("not_covered", "covered")
    for infection in ("hepatitis_b", "hepatitis_c", "hiv", "uncontrolled"):
        assert kinds[f"infections.{infection}: true"] == ("not_covered", "covered")
        assert kinds[f"infections.{infection}: not documented"] == ("pending", "covered")
    # reading 14: a cilta-cel trial is a listed therapy only in 2024-08-21
    assert kinds["clinical_trials: [ciltacabtagene autoleucel]"] == ("not_covered", "covered")
    assert len(kinds) == 18


def test_alike_decisions_on_different_criteria(result):
    kinds = {"; ".join(g.classes): g.failing for g in result.failures_differ}
    assert kinds["prior_cell_therapies: [ciltacabtagene autoleucel]"] == {
        "2024-08-21": ["4", "5c", "5g", "8"], "2025-11-01": ["4", "5b"]}
    assert kinds["dose_million_car_t_cells > 510"] == {"2024-08-21": ["9"], "2025-11-01": ["dose"]}


def test_each_example_case_gets_the_decisions_the_diff_claims(result):
    for group in result.decisions_differ + result.failures_differ:
        case = from_json(json.dumps(group.example))
        for version, decision in group.decisions.items():
            got = check(case, version)
            assert got.decision == decision, (group.classes, version)
            failing = [c.id for c in got.criteria if c.status == "not_met"]
            assert sorted(failing) == sorted(group.failing[version])


def test_the_baseline_is_eligible_under_both_versions(result):
    case = from_json(json.dumps(result.baseline))
    assert {check(case, v).decision for v in result.versions} == {"covered"}


def test_a_made_up_criterion_shows_up_as_a_new_kind_of_case(tmp_path):
    copy = tmp_path / "kb"
    shutil.copytree(KB, copy)
    version_file = copy / "v2025-11-01.lp"
    version_file.write_text(version_file.read_text() + '''
% x. (made up) The planned dose is at most 400 x 1 million CAR-positive T cells.
criterion("2025-11-01","x",16,"The planned dose is at most 400 x 1 million CAR-positive T cells").
bound("2025-11-01","x","dose_million_car_t_cells",le,400).
reads("2025-11-01","x","dose_million_car_t_cells").
met(K,"x") :- in2025(K), bounds_met(K,"x").
''')
    before = _kinds(diff(directory=KB).decisions_differ)
    after = _kinds(diff(directory=copy).decisions_differ)
    new = set(after) - set(before)
    assert new == {"dose_million_car_t_cells between 400 and 510", "dose_million_car_t_cells = 510"}
    assert {after[k] for k in new} == {("covered", "not_covered")}



def test_the_classes_are_those_the_policy_thresholds_make():
    import datetime

    from covkb.analysis.diff import kb_facts, space

    fields = {f.path: [o.name for o in f.options] for f in space(kb_facts(None), datetime.date(2025, 11, 1))}
    # "18 years of age or older"; "less than or equal to 45 mL/min"; "less than 45%";
    # "300 to 510 x 1 million CAR-positive T cells"; "within in the past 6 months"
    assert fields["member.age"] == ["< 18", "= 18", "> 18", "not documented"]
    assert fields["creatinine_clearance_ml_min"] == ["< 45", "= 45", "> 45", "not documented"]
    assert fields["lvef_percent"] == ["< 45", "= 45", "> 45", "not documented"]
    assert fields["dose_million_car_t_cells"] == ["< 300", "= 300", "between 300 and 510", "= 510", "> 510",
                                                  "not documented"]
    assert fields["significant_cardiac_disease_dates"] == [
        "none", "within the past 6 months", "just before the past 6 months", "not documented"]
