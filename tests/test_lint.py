"""covkb lint: findings about each policy version, proved by clingo over the case space.

Every expected value is read off the policy text (/work/shared/policy): which criteria
fail together, and the connectives it prints between its numbered items.
"""

import json
import shutil

import pytest
from typer.testing import CliRunner

from covkb.engine import kb
from covkb.api import check
from covkb.input.case import from_object
from covkb.surfaces.cli import app
from covkb.analysis.lint import lint

KB = kb.kb_dir()


@pytest.fixture(scope="module")
def v2024():
    return lint("2024-08-21")


@pytest.fixture(scope="module")
def v2025():
    return lint("2025-11-01")


def _lint_with(tmp_path, version, change):
    """Lint a copy of kb/ whose version file `change` rewrites."""
    copy = tmp_path / "kb"
    shutil.copytree(KB, copy)
    path = copy / f"v{version}.lp"
    path.write_text(change(path.read_text()))
    return lint(version, copy)


def _of(result, kind):
    return {tuple(f.criteria): f for f in result.findings if f.kind == kind}


def test_2024_implied_criteria_are_those_the_policy_repeats(v2024):
    # 4 "has not received prior treatment with CAR T-cell therapy or other genetically
    # modified T-cell therapy" holds 5c "Prior treatment with chimeric antigen receptor
    # therapy ..."; 5g and 8 (ide-cel or cilta-cel given before) are such a prior treatment.
    assert set(_of(v2024, "implied")) == {("5c", "4"), ("5g", "5c"), ("8", "5c")}
    # 5g "Repeated administration of idecabtagene vicleucel or ciltacabtagene autoleucel" and
    # 8 "only one administration of idecabtagene vicleucel or ciltacabtagene autoleucel".
    assert set(_of(v2024, "equivalent")) == {("5g", "8")}
    assert set(_of(v2024, "never_deciding")) == {("5c",), ("5g",), ("8",)}


def test_2025_implied_criteria(v2025):
    # 5b is 2024's 5c word for word; 8 names idecabtagene vicleucel alone, a CAR-T therapy.
    assert set(_of(v2025, "implied")) == {("5b", "4"), ("8", "5b")}
    assert not _of(v2025, "equivalent")
    assert set(_of(v2025, "never_deciding")) == {("5b",), ("8",)}


def test_every_criterion_can_be_met_and_can_fail(v2024, v2025):
    for result in (v2024, v2025):
        assert not _of(result, "never_met") and not _of(result, "never_fails")


def test_a_witness_is_a_real_case_check_decides_as_the_finding_says(v2024):
    finding = _of(v2024, "implied")[("5c", "4")]
    decided = check(from_object(finding.witness.case), "2024-08-21")
    failing = {c.id for c in decided.criteria if c.status == "not_met"}
    assert decided.decision == "not_covered" and {"5c", "4"} <= failing
    assert finding.witness.not_met == sorted(failing, key=lambda i: [c.id for c in decided.criteria].index(i))


def test_2025_b_or_6_reads_as_a_disjunction_the_rules_do_not_have(v2025):
    # 2025-11-01: "b. Prior treatment with chimeric antigen receptor therapy ...; OR
    # 6. Individual has adequate organ and bone marrow function ...; AND"
    finding = _of(v2025, "or_where_and")[("5", "6")]
    # the case the OR would cover: 5 met, 6 failing, every other criterion met
    assert finding.witness.decision == "not_covered"
    assert finding.witness.not_met == ["6"]


def test_2024_g_and_6_is_joined_as_the_rules_join_it(v2024):
    # 2024-08-21: "g. Repeated administration ...; AND 6. ..."
    assert not _of(v2024, "or_where_and")


@pytest.mark.slow
def test_the_connective_is_read_from_the_kb_words(tmp_path):
    words = "modified T-cell therapy; OR\n"
    assert words in (KB / "v2025-11-01.lp").read_text()
    fixed = _lint_with(tmp_path, "2025-11-01", lambda text: text.replace(words, words.replace("OR", "AND"), 1))
    assert not _of(fixed, "or_where_and")


def test_criteria_and_guidelines_state_the_same_bounds(v2024, v2025):
    # 2025 Policy Guidelines "creatinine clearance is not less than or equal to 45 mL/min",
    # "(EF) is not less than 45%": no 2025 criterion bounds those; the dose criterion and
    # Dosage and Administration both say "300 to 510".
    assert not _of(v2024, "bound_differs") and not _of(v2025, "bound_differs")


@pytest.mark.slow
def test_a_guideline_bound_unlike_its_criterion_is_found_with_a_value_between(tmp_path):
    changed = _lint_with(tmp_path, "2025-11-01", lambda text: text + (
        '\nbound("2025-11-01",dose_guideline,"dose_million_car_t_cells",le,460).\n'))
    finding = _of(changed, "bound_differs")[("dose", "dose_guideline")]
    assert "le 510" in finding.message and "le 460" in finding.message
    dose = finding.witness.case["dose_million_car_t_cells"]
    assert 460 < dose <= 510


@pytest.mark.slow
def test_cli_formats():
    runner = CliRunner()
    shown = runner.invoke(app, ["lint", "--policy-version", "2024-08-21", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["version"] == "2024-08-21"
    assert {"kind": "implied", "criteria": ["5c", "4"]}.items() <= next(
        f for f in data["findings"] if f["criteria"] == ["5c", "4"]).items()
    markdown = runner.invoke(app, ["lint", "--policy-version", "2025-11-01", "-f", "markdown"])
    assert markdown.exit_code == 0 and "| 5, 6 |" in markdown.output
    bad = runner.invoke(app, ["lint", "--policy-version", "2023-01-01"])
    assert bad.exit_code == 2 and "--policy-version" in bad.output


def test_criteria_and_guidelines_do_not_part_on_any_value(v2024, v2025):
    # 2024-08-21 has no Policy Guidelines; 2025-11-01's guidelines speak of creatinine
    # clearance, ejection fraction, cardiac disease and infections, which no 2025 criterion reads.
    assert not _of(v2024, "guideline_differs") and not _of(v2025, "guideline_differs")


@pytest.mark.slow
def test_a_guideline_window_unlike_its_criterion_is_found_with_a_date_between(tmp_path):
    # 5e: "clinically significant cardiac disease within in the past 6 months"; a made-up
    # guideline of the same version speaking of the past 3 months parts from it.
    changed = _lint_with(tmp_path, "2024-08-21", lambda text: text + (
        '\nmonths_back(3).\n'
        'advisory(K,guideline_date("significant_cardiac_disease_dates",D,"3 months")) :- '
        'in2024(K), cardiac(K,D), window_start(K,3,S), D >= S.\n'))
    finding = _of(changed, "guideline_differs")[("5e",)]
    (day,) = finding.witness.case["significant_cardiac_disease_dates"]
    service = finding.witness.case["date_of_service"]
    assert service == "2024-08-21"
    assert "2024-02-21" <= day < "2024-05-21"  # inside 6 months back, before 3 months back
    assert finding.witness.not_met == ["5e"]
