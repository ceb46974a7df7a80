"""What a reviewer and an auditor read, second pass: the date of service beside the version,
quotes that are the policy's own words, the same fact said the same way, pending asking only
for what can change the decision, compare before the first version, and the wording.

Expected words come from the policy (docs/policy/) and reading 5, 8, 9's third-release additions.
"""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import DROP, IN_2024, IN_2025, V2024, V2025, case, decide
from covkb.surfaces.cli import app

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "docs" / "policy" / "2024041-idecabtagene-vicleucel.txt"
runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def written(tmp_path, **changes) -> Path:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case(**changes)))
    return path


def criterion(result, ident):
    return next(c for c in result.criteria if c.id == ident)


# --- 1. the date of service beside the version ------------------------------------------------
@pytest.mark.parametrize("service", ["2025-10-31", "2024-08-20"])
def test_the_json_result_echoes_the_date_of_service(tmp_path, service):
    data = json.loads(run("check", written(tmp_path, date_of_service=service), "-f", "json").stdout)
    assert data["date_of_service"] == service


def test_a_2025_10_31_case_shows_the_date_that_put_it_under_2024_08_21(tmp_path):
    # "Effective August 21, 2024 to October 31, 2025": its last day
    path = written(tmp_path, date_of_service="2025-10-31")
    line = "version 2024-08-21, date of service 2025-10-31"
    assert line in run("check", path).stdout
    assert line in run("explain", path).stdout
    assert line in run("explain", path, "-f", "markdown").stdout
    assert "date of service 2025-10-31" in run("compare", path).stdout


@pytest.mark.parametrize("member, basis", [
    ({"birth_date": "1961-04-30"}, "(from member.birth_date = 1961-04-30)"),
    ({"age": 40}, "(from member.age = 40)"),     # reading 10: used only when birth_date is absent
    ({"age": 40, "birth_date": "1961-04-30"}, "(from member.birth_date = 1961-04-30)"),
])
def test_criterion_1_names_what_the_age_was_taken_from(member, basis):
    [fact] = criterion(decide(case(member=member)), "1").because
    assert basis in fact


# --- 2. quotes are the policy's words -----------------------------------------------------------
def _folded(text: str) -> str:
    return " ".join(text.split())


def _sections() -> dict[str, str]:
    """Each version's text: the opening requirements every version shares (Policy/Coverage),
    then the version's own section, up to the next version's heading or the Rationale."""
    text = POLICY.read_text(encoding="utf-8")
    opening = text[text.index("Policy/\nCoverage:"):text.index("Effective November 1, 2025")]
    newer = text[text.index("Effective November 1, 2025"):text.index("Effective August 21, 2024 to October 31, 2025")]
    older = text[text.index("Effective August 21, 2024 to October 31, 2025"):text.index("Rationale:")]
    return {V2025: _folded(opening + newer), V2024: _folded(opening + older)}


def test_the_repository_keeps_the_policy_the_kb_quotes():
    text = POLICY.read_text(encoding="utf-8")
    assert "Policy #: 2024041" in text and "Effective August 21, 2024 to October 31, 2025" in text


@pytest.mark.parametrize("version", [V2024, V2025])
def test_every_criterion_text_is_the_policy_words_of_its_version_verbatim(version):
    from covkb.engine.reference import policy

    section = _sections()[version]
    texts = policy().criteria[version]
    assert len(texts) == (20 if version == V2024 else 15)   # reading 8's ids
    for ident, text in texts:
        assert _folded(text) in section, (ident, text)


def test_a_text_of_the_other_version_is_not_taken_for_this_ones():
    # the check above can fail: 2024's criterion 9 is not in 2025's section
    assert _folded("Must be dosed in accordance with the FDA label") not in _sections()[V2025]


@pytest.mark.parametrize("version, ident, reading", [
    # reading 11: 2024-08-21 says "relapsed or refractory" in its opening sentence
    (V2024, "2", "relapsed or refractory multiple myeloma"),
    # 2024's criterion 9 is read with its Dosage and Administration
    (V2024, "9", "300 to 510 x 1 million CAR-positive T cells"),
    (V2024, "5d", "Individual does not have any of the following circumstances"),
    (V2025, "5b", "Individual does not have any of the following circumstances"),
    # 2025's dose requirement is read with its Dosage and Administration: "must be dosed in
    # accordance with the indication specific recommended dose per FDA label"
    (V2025, "dose", "indication specific recommended dose per FDA label"),
])
def test_the_framing_is_a_reading_apart_from_the_quote(version, ident, reading):
    found = criterion(decide(case(), version), ident)
    assert reading in found.reading
    assert reading not in found.text


def test_criteria_quotes_the_words_and_shows_the_reading_unquoted():
    lines = run("criteria", "--policy-version", V2024).stdout.splitlines()
    [row] = [n for n, line in enumerate(lines) if line.split()[:1] == ["2"]]
    assert lines[row].endswith('"Individual has a diagnosis of multiple myeloma"')
    assert lines[row + 1].strip().startswith("reading: ")


# --- 3. every fact a status rests on, written the same way everywhere ---------------------------
CARVYKTI_IN_A_LINE = {"prior_lines": [["VRd"], ["DPd"], ["Carvykti"]], "clinical_trials": ["CARTITUDE-4"]}


def test_a_car_t_product_in_a_prior_line_is_named_alike_by_4_5b_and_8():
    # reading 29: a CAR-T product in prior_lines is a prior cell therapy; 2025-11-01's 8 is ide-cel only
    result = decide(case(**CARVYKTI_IN_A_LINE), V2025)
    named = "prior_lines line 3: 'Carvykti' is a prior cell therapy"
    for ident in ("4", "5b", "8"):
        assert any(fact.startswith(named) for fact in criterion(result, ident).because), ident
    assert "prior_cell_therapies = none" not in criterion(result, "8").because
    assert criterion(result, "8").status == "met"


@pytest.mark.parametrize("version", [V2024, V2025])
def test_criterion_4_cites_every_trial_the_case_lists(version):
    # CARTITUDE-4 is a cilta-cel trial (reading 26): listed in 2024-08-21, not in 2025-11-01
    facts = criterion(decide(case(**CARVYKTI_IN_A_LINE), version), "4").because
    assert any("'CARTITUDE-4'" in fact for fact in facts)


# --- 4. pending asks only for what can change the decision ---------------------------------------
def test_a_name_that_cannot_change_the_decision_is_not_asked_for():
    # 3a-3c are met by VRd and DPd whatever 'Velcaid' is (the bundled pending case)
    result = decide(case(prior_lines=[["VRd"], ["DPd", "Velcaid"]], organ_function_adequate=DROP))
    assert result.decision == "pending"
    assert [d.fields for d in result.documentation if not d.for_resubmission] == [["organ_function_adequate"]]
    assert "Velcaid" not in result.reason


def test_a_name_that_can_change_the_decision_is_asked_for():
    # no proteasome inhibitor is recognised: 'Velcaid' may be one (reading 28)
    result = decide(case(prior_lines=[["Velcaid", "lenalidomide"], ["daratumumab"]]))
    [item] = [d for d in result.documentation if not d.for_resubmission]
    assert "'Velcaid'" in item.words
    assert "criterion 3b" in result.reason


def test_a_criterion_that_cannot_change_the_decision_is_not_asked_for():
    # criterion 1 fails (16), so only the compendium pathway could cover: it needs 2 not met,
    # so the diagnosis can change the decision and the organ function (6) cannot (reading 31)
    result = decide(case(member={"age": 16}, compendium={"nccn_category": "1"}, diagnosis={"cns_involvement": False},
                         organ_function_adequate=DROP))
    assert result.decision == "pending"
    assert "organ_function_adequate" in result.missing           # reading 1's missing is unchanged
    assert all("organ_function_adequate" not in d.fields for d in result.documentation if not d.for_resubmission)
    assert "criterion 6" not in result.reason and "criterion 2" in result.reason


def test_one_of_is_kept_where_explain_asks_for_a_criterion(tmp_path):
    path = written(tmp_path, diagnosis={"multiple_myeloma": True, "cns_involvement": False})
    text = run("explain", path).stdout
    assert "document: one of: myeloma is refractory, or myeloma is relapsed" in text
    assert "document one of: myeloma is refractory, or myeloma is relapsed" in run("explain", path, "-f", "markdown").stdout


def test_the_pending_reason_is_one_sentence_about_what_can_change_it():
    names = [["VRd", "Foo1"], ["DPd", "Foo2"], ["Kd", "Foo3"], ["Foo4"]]
    result = decide(case(prior_lines=names, dose_million_car_t_cells=DROP))
    assert result.reason == ("pending: the dose requirement cannot be decided without: "
                             "planned dose (x 10^6 CAR-positive T cells)")


# --- 5. compare on a date before the first version ------------------------------------------------
def test_compare_before_2024_08_21_says_no_version_applies_then_shows_what_ifs(tmp_path):
    path = written(tmp_path, date_of_service="2024-08-20")
    lines = run("compare", path).stdout.splitlines()
    assert "selects no version" in lines[0] and "not applicable" in lines[0]
    assert all("(what-if)" in line for line in lines if line.startswith((V2024 + ":", V2024 + " (", V2025 + " (")))
    assert sum("(what-if)" in line for line in lines) == 2
    data = json.loads(run("compare", path, "-f", "json").stdout)
    assert data["date_of_service"] == "2024-08-20"
    assert [side["version_by_date"] for side in data["versions"]] == [None, None]
    assert all(side["version_requested"] == side["version"] for side in data["versions"])


def test_compare_in_force_marks_only_the_other_version_as_a_what_if(tmp_path):
    out = run("compare", written(tmp_path, date_of_service=IN_2025)).stdout
    assert f"selects version {V2025}" in out.splitlines()[0]
    assert f"{V2024} (what-if):" in out and f"{V2025} (what-if)" not in out


# --- 8. wording ----------------------------------------------------------------------------------
def test_the_dose_requirement_is_cited_by_name_not_as_criterion_dose():
    reason = decide(case(dose_million_car_t_cells=600)).reason
    assert reason.endswith("(the dose requirement)") and "criterion dose" not in reason


def test_one_prior_line_is_counted_in_words():
    reason = decide(case(prior_lines=[["VRd"]])).reason
    assert "1 prior line of therapy (VRd) is not two or more prior lines" in reason


def test_the_cardiac_window_is_said_in_months_before_the_date_of_service():
    # 5e: "within in the past 6 months"
    result = decide(case(date_of_service="2025-09-10", significant_cardiac_disease_dates=["2025-04-10"]), V2024)
    assert "2025-04-10 is within 6 months before the date of service 2025-09-10" in result.reason


def test_the_same_fact_failing_two_criteria_is_said_once_citing_both():
    result = decide(case(**CARVYKTI_IN_A_LINE), V2025)
    assert result.reason == "not covered: prior line 3: 'Carvykti' is a prior cell therapy (criteria 4 and 5b)"


def test_check_says_what_a_remedy_kind_means(tmp_path):
    from covkb.engine.reference import policy

    words = {k[0]: w for k, w in policy().facts["remedy_words"]}
    out = run("check", written(tmp_path, organ_function_adequate=False)).stdout
    assert f"remedy (clinical): {words['clinical']}" in out


def test_before_the_first_version_the_reason_gives_the_policys_own_instruction():
    policy_words = ("For coverage criteria prior to August 21, 2024, for Idecabtagene Vicleucel (e.g., Abecma), "
                    "please email codespecificinquiry@arkbluecross.com for a hardcopy print of the coverage policy.")
    assert policy_words in POLICY.read_text(encoding="utf-8")
    assert policy_words in decide(case(date_of_service="2024-08-20")).reason


# --- 9. help and text polish -----------------------------------------------------------------------
def test_audit_help_names_head_and_report_in_its_summary():
    from covkb.surfaces.cli import audit_app

    summary = audit_app.info.help
    assert "head" in summary and "report" in summary


def test_check_help_says_it_reads_fhir():
    out = run("check", "--help").stdout
    assert "Bundle" in out and "QuestionnaireResponse" in out


def test_audit_text_views_give_the_time_to_the_second(tmp_path):
    log = tmp_path / "log.db"
    assert run("check", written(tmp_path), "--log", log).exit_code == 0
    listed = run("audit", "list", "--log", log).stdout
    shown = run("audit", "show", "1", "--log", log).stdout.splitlines()[0]
    for text in (listed, shown):
        assert re.search(r"\d\d:\d\d:\d\d", text) and not re.search(r"\d\d:\d\d:\d\d\.\d", text)


@pytest.mark.parametrize("typed, meant", [("lvef", "lvef_percent"), ("creatinine_clearance", "creatinine_clearance_ml_min")])
def test_a_field_written_without_its_unit_gets_a_did_you_mean(typed, meant):
    from covkb.input.case import InvalidCase, from_object

    data = case(lvef_percent=DROP, creatinine_clearance_ml_min=DROP)
    data[typed] = 50
    with pytest.raises(InvalidCase) as caught:
        from_object(data)
    assert f"did you mean `{meant}`?" in caught.value.message


@pytest.mark.slow  # starts a server process
def test_serve_answers_an_empty_post_body_with_empty_body():
    from test_serve import Served

    served = Served()
    try:
        status, _, answer = served.request("POST", "/v1/check", body=b"", headers={"Content-Length": "0",
                                                                                   "Content-Type": "application/json"})
    finally:
        assert served.stop() == 0
    assert status == 400 and "empty body" in json.dumps(answer)
