"""FHIR R4 in and out (issue 15): the DTR Questionnaire built from the knowledge base, a
QuestionnaireResponse or a PAS-style Bundle read as a case, and the result as a PAS
ClaimResponse or the CRD coverage-information extension.

Expected values come from the issue and the published Da Vinci profiles (PAS ClaimResponse
and ReviewAction, CRD ext-coverage-information), LOINC and ICD-10-CM, and docs/case-format.md;
fhir.resources (R4B models) validates the resources' base structure."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given

from covkb.input import case as cases
from covkb.input import files
from covkb.input import text as texts
from covkb.fhir import codes as fhir_codes
from covkb.fhir import questionnaire as fhir_form
from covkb.fhir import responses
from covkb.fhir import reading as fhir_in
from covkb.api import check
from covkb.input.case import InvalidCase
from covkb.input.text import parse_json
from covkb.engine.reference import policy
from strategies import cases as any_case

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "facts"
EXAMPLES = FACTS / "fhir"
PAS_SD = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "covkb", *map(str, args)], capture_output=True,
                          text=True, input=stdin, cwd=ROOT)


def as_fhir_json(resource: dict) -> dict:
    """Through JSON text and back, as a client would send it (numbers exact)."""
    return parse_json(fhir_codes.encode(resource))


def schema_paths() -> set[str]:
    """Every case field path, from the case JSON Schema (reading 2), not from covkb.fhir."""
    schema = cases.case_schema()
    defs = schema["$defs"]
    paths = set()
    for name, spec in defs["Case"]["properties"].items():
        refs = [s.get("$ref") for s in spec.get("anyOf", [spec])]
        sub = next((r for r in refs if r and r.split("/")[-1] in defs and
                    "properties" in defs[r.split("/")[-1]] and spec.get("anyOf")), None)
        if sub and not any(s.get("type") == "array" for s in spec.get("anyOf", [])):
            paths.update(f"{name}.{field}" for field in defs[sub.split("/")[-1]]["properties"])
        else:
            paths.add(name)
    return paths


def walk(items):
    for item in items:
        yield item
        yield from walk(item.get("item", []))


def question_items(questionnaire: dict) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for item in walk(questionnaire["item"]):
        if item["type"] not in ("group", "display") or item.get("repeats"):
            assert item["linkId"] not in found, f"{item['linkId']} asked twice"
            found[item["linkId"]] = item
    return found


def every_example() -> list[Path]:
    return sorted(p for p in FACTS.rglob("*") if p.suffix in (".json", ".yaml", ".lp"))


def load_any(path: Path):
    raw = parse_json(path.read_bytes()) if path.suffix == ".json" else None
    if fhir_codes.is_fhir(raw):
        return fhir_in.case_from_fhir(raw).case
    return files.load(path)


# ---------------------------------------------------------------------------
# 1. The Questionnaire
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["2024-08-21", "2025-11-01"])
def test_questionnaire_asks_every_case_field_exactly_once_by_its_path(version):
    items = question_items(fhir_form.questionnaire(version))
    fields = {link for link in items if not link.endswith(".any") and link.count(".") < 2
              and link not in ("prior_lines.agent", "concurrent_therapies.agent", "concurrent_therapies.purpose")}
    # the plan.* flags are the payer's facts about the contract (reading 2), not a clinician's
    assert fields == {path for path in schema_paths() if not path.startswith("plan.")}


@pytest.mark.parametrize("version", ["2024-08-21", "2025-11-01"])
def test_questionnaire_has_one_group_per_criterion_with_the_policys_words(version):
    groups = [(g["prefix"], g["text"]) for g in fhir_form.questionnaire(version)["item"] if "prefix" in g]
    in_order = [criterion for criterion in policy().criteria[version] if criterion in groups]
    assert groups == in_order and len(groups) > 5
    assert all(g["type"] == "group" and g["item"] for g in fhir_form.questionnaire(version)["item"])


def test_questionnaire_places_each_field_under_the_first_criterion_that_reads_it():
    groups = {g.get("prefix"): [i["linkId"] for i in g["item"]] for g in fhir_form.questionnaire("2024-08-21")["item"]}
    assert "creatinine_clearance_ml_min" in groups["5d"]
    assert {"lvef_percent", "significant_cardiac_disease_dates"} <= set(groups["5e"])
    assert "prior_allogeneic_transplant" in groups["5b"]
    # 5c reads prior cell therapies, already asked under 4: no group of its own
    assert "prior_cell_therapies" in groups["4"] and "5c" not in groups


def test_questionnaire_2025_asks_guideline_values_outside_the_criteria():
    groups = {g["linkId"]: [i["linkId"] for i in g["item"]] for g in fhir_form.questionnaire("2025-11-01")["item"]}
    assert {"creatinine_clearance_ml_min", "lvef_percent", "prior_allogeneic_transplant"} <= set(groups["other"])


ITEM_TYPES = {  # issue 15: type from the case schema
    "case_id": "string", "date_of_service": "date", "member.birth_date": "date", "member.age": "integer",
    "diagnosis.relapsed": "boolean", "lvef_percent": "decimal", "creatinine_clearance_ml_min": "decimal",
    "dose_million_car_t_cells": "decimal", "compendium.nccn_category": "choice",
    "concurrent_therapies.purpose": "choice", "compendium.indication": "string",
    "prior_cell_therapies": "string", "significant_cardiac_disease_dates": "date",
}


@pytest.mark.parametrize("link, kind", sorted(ITEM_TYPES.items()))
def test_questionnaire_item_type_follows_the_case_schema(link, kind):
    assert question_items(fhir_form.questionnaire())[link]["type"] == kind


def test_every_question_and_answer_is_asked_in_words():
    """A reviewer filling the form reads words: no item's text is a field path (no `_` or
    `.`), and every answer option shows a display that is not its bare code."""
    for link, item in question_items(fhir_form.questionnaire()).items():
        text = item["text"]
        assert text.lower() != link.lower() and "_" not in text and "." not in text, (link, text)
        for option in item.get("answerOption", ()):
            coding = option["valueCoding"]
            assert coding.get("display") and coding["display"] != coding["code"], (link, coding)


def test_questionnaire_choices_are_the_spec_values():
    items = question_items(fhir_form.questionnaire())
    options = lambda link: {o["valueCoding"]["code"] for o in items[link]["answerOption"]}
    assert options("compendium.nccn_category") == {"1", "2A", "2B", "3"}
    assert options("concurrent_therapies.purpose") == {"lymphodepletion", "bridging", "supportive", "anti_cancer"}


def test_questionnaire_codes_lvef_and_creatinine_clearance_with_loinc():
    items = question_items(fhir_form.questionnaire("2024-08-21"))
    assert items["lvef_percent"]["code"][0]["system"] == "http://loinc.org"
    assert items["lvef_percent"]["code"][0]["code"] == "10230-1"
    assert items["creatinine_clearance_ml_min"]["code"][0]["code"] == "35591-7"


@pytest.mark.parametrize("link", ["prior_cell_therapies", "clinical_trials", "significant_cardiac_disease_dates",
                                  "prior_lines", "concurrent_therapies"])
def test_each_list_field_has_an_any_item_and_a_repeating_item_enabled_by_it(link):
    items = question_items(fhir_form.questionnaire("2024-08-21"))
    assert items[f"{link}.any"]["type"] == "boolean"
    assert items[link]["repeats"] is True
    assert items[link]["enableWhen"] == [{"question": f"{link}.any", "operator": "=", "answerBoolean": True}]


def test_prior_lines_is_a_repeating_group_of_repeating_agent_names():
    line = question_items(fhir_form.questionnaire())["prior_lines"]
    assert line["type"] == "group"
    assert [(i["linkId"], i["type"], i["repeats"]) for i in line["item"]] == [("prior_lines.agent", "string", True)]


def test_concurrent_therapies_is_a_repeating_group_of_agent_and_purpose():
    group = question_items(fhir_form.questionnaire())["concurrent_therapies"]
    assert group["type"] == "group"
    assert [i["linkId"] for i in group["item"]] == ["concurrent_therapies.agent", "concurrent_therapies.purpose"]


@pytest.mark.parametrize("version", ["2024-08-21", "2025-11-01"])
def test_questionnaire_is_a_valid_r4_questionnaire(version):
    from fhir.resources.R4B.questionnaire import Questionnaire

    Questionnaire.model_validate(fhir_form.questionnaire(version))


def test_questionnaire_command_prints_the_questionnaire_of_the_version_asked():
    result = run("questionnaire", "--policy-version", "2024-08-21")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["resourceType"] == "Questionnaire" and printed["version"] == "2024-08-21"
    assert run("questionnaire", "--policy-version", "1999-01-01").returncode == 2


# ---------------------------------------------------------------------------
# 2. QuestionnaireResponse → case, and the round trip
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", every_example(), ids=lambda p: str(p.relative_to(FACTS)))
def test_every_example_decides_the_same_through_a_questionnaire_response(path):
    original = load_any(path)
    response = as_fhir_json(fhir_form.questionnaire_response(original))
    back = fhir_in.case_from_fhir(response).case
    assert back == original
    assert check(back) == check(original)


@pytest.mark.parametrize("line", [l for l in (FACTS / "batch.jsonl").read_text().splitlines() if l.strip()])
def test_every_valid_batch_line_decides_the_same_through_a_questionnaire_response(line):
    try:
        original = texts.from_json(line)
    except InvalidCase:
        return  # the batch's deliberately invalid lines
    back = fhir_in.case_from_fhir(as_fhir_json(fhir_form.questionnaire_response(original))).case
    assert check(back) == check(original)


def response(*items: dict, ident: str = "qr-1") -> dict:
    return {"resourceType": "QuestionnaireResponse", "id": ident, "status": "completed", "item": list(items)}


def answer(link: str, **value) -> dict:
    return {"linkId": link, "answer": [value]}


REQUEST = [answer("case_id", valueString="QR-1"), answer("date_of_service", valueDate="2024-09-01")]


def test_response_items_are_found_at_any_depth_and_group_link_ids_are_ignored():
    deep = {"linkId": "criterion-5d", "item": [{"linkId": "anything", "item": [
        answer("creatinine_clearance_ml_min", valueDecimal=Decimal("72.5"))]}]}
    case = fhir_in.case_from_fhir(response(*REQUEST, deep)).case
    assert case.creatinine_clearance_ml_min == Decimal("72.5")


def test_a_decimal_item_accepts_value_integer():
    case = fhir_in.case_from_fhir(response(*REQUEST, answer("lvef_percent", valueInteger=45))).case
    assert case.lvef_percent == 45


def test_decimals_stay_exact_45_01_passes_5d():
    # reading 16: 45 fails 5d, 45.01 passes; the JSON number is read as an exact decimal
    text = ('{"resourceType": "QuestionnaireResponse", "status": "completed", "item": ['
            '{"linkId": "case_id", "answer": [{"valueString": "QR-1"}]},'
            '{"linkId": "date_of_service", "answer": [{"valueDate": "2024-09-01"}]},'
            '{"linkId": "creatinine_clearance_ml_min", "answer": [{"valueDecimal": 45.01}]}]}')
    case = fhir_in.case_from_fhir(parse_json(text)).case
    assert case.creatinine_clearance_ml_min == Decimal("45.01")
    assert {c.id: c.status for c in check(case).criteria}["5d"] == "met"


def test_any_false_means_an_empty_list_and_unanswered_means_not_documented():
    case = fhir_in.case_from_fhir(response(*REQUEST, answer("prior_cell_therapies.any", valueBoolean=False),
                                        {"linkId": "clinical_trials.any"})).case
    assert case.prior_cell_therapies == []
    assert case.clinical_trials is None
    assert "clinical_trials" in check(case).missing


def test_prior_lines_and_concurrent_therapies_read_from_group_repetitions():
    line = lambda *names: {"linkId": "prior_lines", "item": [
        {"linkId": "prior_lines.agent", "answer": [{"valueString": n} for n in names]}]}
    therapy = {"linkId": "concurrent_therapies", "item": [
        answer("concurrent_therapies.agent", valueString="fludarabine"),
        answer("concurrent_therapies.purpose", valueCoding={"code": "lymphodepletion"})]}
    case = fhir_in.case_from_fhir(response(*REQUEST, answer("prior_lines.any", valueBoolean=True),
                                        line("VRd"), line("Darzalex", "pomalidomide"), therapy)).case
    assert case.prior_lines == [["VRd"], ["Darzalex", "pomalidomide"]]
    assert [(t.agent, t.purpose) for t in case.concurrent_therapies] == [("fludarabine", "lymphodepletion")]


def check_fails(resource: dict, *words: str, tmp_path: Path) -> str:
    path = tmp_path / "input.json"
    path.write_text(fhir_codes.encode(resource))
    result = run("check", path)
    assert result.returncode == 2, result.stdout
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message
    return message


def test_an_answer_of_the_wrong_type_is_bad_input_naming_resource_and_item(tmp_path):
    check_fails(response(*REQUEST, answer("diagnosis.relapsed", valueString="yes")),
                "QuestionnaireResponse/qr-1", "diagnosis.relapsed", "valueBoolean", tmp_path=tmp_path)


def test_an_unknown_link_id_with_an_answer_is_bad_input_not_undocumented(tmp_path):
    check_fails(response(*REQUEST, answer("lvef", valueDecimal=58)), "QuestionnaireResponse/qr-1", "lvef",
                tmp_path=tmp_path)


def test_any_true_without_an_entry_is_bad_input(tmp_path):
    check_fails(response(*REQUEST, answer("prior_cell_therapies.any", valueBoolean=True)),
                "prior_cell_therapies", tmp_path=tmp_path)


def test_a_value_out_of_range_names_its_source(tmp_path):
    check_fails(response(*REQUEST, answer("lvef_percent", valueDecimal=120)),
                "lvef_percent", "QuestionnaireResponse/qr-1", tmp_path=tmp_path)


def test_a_resource_of_another_type_is_bad_input(tmp_path):
    check_fails({"resourceType": "Patient", "id": "p1"}, "resourceType", "Patient", tmp_path=tmp_path)


# ---------------------------------------------------------------------------
# 3. Bundle → case
# ---------------------------------------------------------------------------
def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


QR = response(*REQUEST, ident="dtr-1")
PATIENT = {"resourceType": "Patient", "id": "pat-1", "birthDate": "1961-04-30"}


def condition(code: str, ident: str = "mm-1") -> dict:
    return {"resourceType": "Condition", "id": ident,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]}}


def observation(code: str, value, unit: str, ident: str = "obs-1") -> dict:
    return {"resourceType": "Observation", "id": ident, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def test_patient_birth_date_is_the_member_birth_date():
    read = fhir_in.case_from_fhir(bundle(PATIENT, QR))
    assert read.case.member.birth_date.isoformat() == "1961-04-30"
    assert read.sources["member.birth_date"] == "Patient/pat-1"


@pytest.mark.parametrize("code, relapsed", [("C90.00", None), ("C90.01", None), ("C90.02", True)])
def test_icd10cm_multiple_myeloma_codes(code, relapsed):
    case = fhir_in.case_from_fhir(bundle(condition(code), QR)).case
    assert case.diagnosis.multiple_myeloma is True
    assert case.diagnosis.relapsed is relapsed


@pytest.mark.parametrize("code, unit, path", [("10230-1", "%", "lvef_percent"),
                                              ("35591-7", "mL/min", "creatinine_clearance_ml_min"),
                                              ("2164-2", "mL/min", "creatinine_clearance_ml_min")])
def test_loinc_observations_fill_their_fields_exactly(code, unit, path):
    read = fhir_in.case_from_fhir(as_fhir_json(bundle(observation(code, Decimal("45.01"), unit), QR)))
    assert getattr(read.case, path) == Decimal("45.01")
    assert read.sources[path] == "Observation/obs-1"


def test_creatinine_clearance_in_another_unit_is_bad_input_naming_the_resource(tmp_path):
    check_fails(bundle(observation("2164-2", 1.2, "mL/s"), QR), "Observation/obs-1", "mL/min", tmp_path=tmp_path)


def test_lvef_as_a_ratio_is_bad_input(tmp_path):
    check_fails(bundle(observation("10230-1", 0.58, "1"), QR), "Observation/obs-1", "%", tmp_path=tmp_path)


def test_a_bundle_with_two_patients_is_bad_input(tmp_path):
    check_fails(bundle(PATIENT, dict(PATIENT, id="pat-2"), QR), "Patient/pat-1", "Patient/pat-2",
                tmp_path=tmp_path)


def test_two_sources_that_disagree_are_named_both(tmp_path):
    disagreeing = response(*REQUEST, answer("lvef_percent", valueDecimal=40), ident="dtr-1")
    check_fails(bundle(observation("10230-1", 58, "%", "lvef-1"), disagreeing), "lvef_percent",
                "Observation/lvef-1", "QuestionnaireResponse/dtr-1", tmp_path=tmp_path)


def test_two_sources_that_agree_are_one_fact():
    agreeing = response(*REQUEST, answer("lvef_percent", valueDecimal=58), ident="dtr-1")
    assert fhir_in.case_from_fhir(bundle(observation("10230-1", 58, "%"), agreeing)).case.lvef_percent == 58


def test_explain_names_each_facts_source(tmp_path):
    path = tmp_path / "bundle.json"
    qr = response(*REQUEST, answer("prior_allogeneic_transplant", valueBoolean=False), ident="dtr-1")
    path.write_text(fhir_codes.encode(bundle(observation("10230-1", 58, "%", "lvef-1"), qr)))
    result = run("explain", path)
    assert result.returncode == 0, result.stderr
    assert "lvef_percent = 58, from Observation/lvef-1" in result.stdout
    assert "prior_allogeneic_transplant = false, from QuestionnaireResponse/dtr-1" in result.stdout


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.bundle.json")), ids=lambda p: p.name)
def test_each_pas_bundle_example_decides_as_the_case_it_is_named_for(path):
    plain = files.load(FACTS / path.name.replace(".bundle.json", ".json"))
    assert check(fhir_in.case_from_fhir(parse_json(path.read_bytes())).case) == check(plain)


def test_facts_hold_a_bundle_and_a_questionnaire_response_for_each_decision():
    decided = {}
    for path in EXAMPLES.glob("*.json"):
        kind = "bundle" if path.name.endswith(".bundle.json") else "response"
        result = check(fhir_in.case_from_fhir(parse_json(path.read_bytes())).case)
        decided.setdefault(result.decision, set()).add(kind)
    assert decided == {d: {"bundle", "response"} for d in ("covered", "not_covered", "pending", "not_applicable")}


# ---------------------------------------------------------------------------
# 4. ClaimResponse (PAS) and coverage information (CRD)
# ---------------------------------------------------------------------------
REVIEW_CODES = {"covered": "A1", "not_covered": "A3", "pending": "A4", "not_applicable": "CT"}


def decided_examples() -> list:
    examples = []
    for path in sorted(EXAMPLES.glob("*.bundle.json")):
        read = fhir_in.case_from_fhir(parse_json(path.read_bytes()))
        examples.append(pytest.param(read, check(read.case), id=path.name))
    return examples


@pytest.mark.parametrize("read, result", decided_examples())
def test_claim_response_meets_the_pas_profile(read, result):
    from fhir.resources.R4B.claimresponse import ClaimResponse

    response = responses.claim_response(result, read.context)
    ClaimResponse.model_validate(as_fhir_json(response))
    assert response["meta"]["profile"] == [PAS_SD + "profile-claimresponse"]
    assert (response["status"], response["use"], response["outcome"]) == ("active", "preauthorization", "complete")
    assert response["patient"] == {"reference": read.context["patient"]}
    assert response["request"] == {"reference": read.context["claim"]}
    reason = response["processNote"][0]
    assert reason["number"] == 1 and reason["text"] == response["disposition"]
    # the result's one-sentence reason (reading 30, second release) when it has one, else its decision
    assert reason["text"] == getattr(result, "reason", None) or result.decision in reason["text"]
    for item in response["item"]:
        [adjudication] = item["adjudication"]
        assert adjudication["category"]["coding"] == [
            {"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": "submitted"}]
        [review] = adjudication["extension"]
        assert review["url"] == PAS_SD + "extension-reviewAction"
        [code] = [e for e in review["extension"] if e["url"] == PAS_SD + "extension-reviewActionCode"]
        [coding] = code["valueCodeableConcept"]["coding"]
        assert coding["system"] == "https://codesystem.x12.org/005010/306"
        assert coding["code"] == REVIEW_CODES[result.decision]


def test_claim_response_of_a_plain_case_has_every_required_element():
    from fhir.resources.R4B.claimresponse import ClaimResponse

    result = check(files.load(FACTS / "covered-2025.json"))
    response = responses.claim_response(result)
    ClaimResponse.model_validate(as_fhir_json(response))
    assert response["preAuthRef"] == result.case_id


CRD_SUB = {"coverage", "covered", "pa-needed", "doc-needed", "doc-purpose", "info-needed", "billingCode",
           "reason", "detail", "dependency", "questionnaire", "response", "date", "coverage-assertion-id",
           "satisfied-pa-id", "contact"}
COVERED = {"covered": "covered", "not_covered": "not-covered", "pending": "conditional",
           "not_applicable": "conditional"}


@pytest.mark.parametrize("read, result", decided_examples())
def test_coverage_information_meets_the_crd_extension(read, result):
    from fhir.resources.R4B.extension import Extension

    extension = responses.coverage_information(result, read.context)
    Extension.model_validate(as_fhir_json(extension))
    assert extension["url"] == "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
    parts: dict[str, list] = {}
    for sub in extension["extension"]:
        assert sub["url"] in CRD_SUB
        parts.setdefault(sub["url"], []).append(sub)
    for required in ("coverage", "covered", "date", "coverage-assertion-id"):
        assert len(parts.get(required, [])) == 1, required
    for once in ("pa-needed", "satisfied-pa-id"):
        assert len(parts.get(once, [])) <= 1
    assert parts["covered"][0]["valueCode"] == COVERED[result.decision]
    assert "valueReference" in parts["coverage"][0]
    codes = lambda url: {p["valueCode"] for p in parts.get(url, [])}
    # crd-ci-q1: a questionnaire only when documentation is needed
    assert not parts.get("questionnaire") or codes("doc-needed") - {"no-doc"}
    # crd-ci-q2: pa-needed unless not covered
    assert bool(parts.get("pa-needed")) == (result.decision != "not_covered")
    # crd-ci-q3: info-needed only with something conditional
    assert not parts.get("info-needed") or "conditional" in codes("covered") | codes("pa-needed") | codes("doc-needed")
    # crd-ci-q5: satisfied-pa-id exactly when pa-needed is satisfied
    assert bool(parts.get("satisfied-pa-id")) == ("satisfied" in codes("pa-needed"))


def test_pending_coverage_information_asks_for_the_questionnaire():
    result = check(files.load(FACTS / "pending-2025.json"))
    parts = {p["url"]: p for p in responses.coverage_information(result)["extension"]}
    assert parts["doc-needed"]["valueCode"] == "clinical"
    form = fhir_form.questionnaire(result.version)
    assert parts["questionnaire"]["valueCanonical"] == f"{form['url']}|{form['version']}"


def test_missing_prescriber_facts_are_crd_info_needed():
    raw = parse_json((FACTS / "covered-2025.json").read_bytes())
    del raw["prescriber"]
    result = check(cases.from_object(raw))
    assert result.decision == "pending"
    info = {p["valueCode"] for p in responses.coverage_information(result)["extension"] if p["url"] == "info-needed"}
    assert info == {"performer", "location"}


@pytest.mark.parametrize("form, key", [("pas", "resourceType"), ("crd", "url")])
def test_check_answers_in_fhir_shapes(form, key):
    result = run("check", EXAMPLES / "pending-2025.bundle.json", "--format", form)
    assert result.returncode == 0, result.stderr
    assert key in json.loads(result.stdout)


# ---------------------------------------------------------------------------
# 5. Start-up: nothing FHIR-related unless a FHIR file is given
# ---------------------------------------------------------------------------
def test_check_on_a_plain_case_imports_nothing_fhir():
    code = ("import sys\nfrom covkb.surfaces.cli import main\nsys.argv = ['covkb', 'check', 'facts/covered-2025.json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED' if any('fhir' in m for m in sys.modules) else 'CLEAN', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stderr.strip().endswith("CLEAN"), result.stderr


def test_answers_nested_under_an_answer_are_read():
    nested = {"linkId": "prior_allogeneic_transplant", "answer": [
        {"valueBoolean": False, "item": [answer("lvef_percent", valueDecimal=58)]}]}
    case = fhir_in.case_from_fhir(response(*REQUEST, nested)).case
    assert (case.prior_allogeneic_transplant, case.lvef_percent) == (False, 58)


def test_docs_mapping_table_names_every_field_and_the_criteria_that_read_it():
    rows = [line.split("|")[1:-1] for line in (ROOT / "docs" / "fhir.md").read_text().splitlines()
            if line.startswith("| ") and line.count("|") == 5 and "`" in line.split("|")[2]]
    table = {cells[1].strip().strip("`"): [c.strip() for c in cells[2:]] for cells in rows}
    assert set(table) == schema_paths()
    reads = policy().reads
    for path, columns in table.items():
        for version, cell in zip(("2024-08-21", "2025-11-01"), columns):
            expected = {ident for ident, fields in reads[version].items() if path in fields}
            assert (set() if cell == "—" else set(cell.split(", "))) == expected, (path, version)


def test_an_observation_value_with_a_comparator_is_not_exact_and_is_bad_input(tmp_path):
    below = observation("35591-7", 45, "mL/min")
    below["valueQuantity"]["comparator"] = "<"
    check_fails(bundle(below, QR), "Observation/obs-1", "comparator", tmp_path=tmp_path)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_each_fhir_example_is_a_valid_r4_resource(path):
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    resource = parse_json(path.read_bytes())
    model = Bundle if resource["resourceType"] == "Bundle" else QuestionnaireResponse
    model.model_validate(resource)


@given(any_case())
def test_any_case_decides_the_same_as_a_questionnaire_response_and_as_a_pas_bundle(data):
    original = cases.from_object(data)
    expected = check(original)
    for resource in (fhir_form.questionnaire_response(original), responses.pas_bundle(original)):
        assert check(fhir_in.case_from_fhir(as_fhir_json(resource)).case) == expected


def test_a_response_without_case_id_says_where_to_give_it(tmp_path):
    check_fails(response(answer("date_of_service", valueDate="2024-09-01")), "case_id", "Claim.identifier",
                tmp_path=tmp_path)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def test_any_element_of_a_bundle_replaced_by_junk_is_bad_input_or_read_never_a_crash():
    example = parse_json((EXAMPLES / "pending-2025.bundle.json").read_bytes())
    for path in list(_paths(example))[1:]:
        for junk in (None, [], {}, "x", 1, [{"x": 1}]):
            mutated = copy.deepcopy(example)
            node = mutated
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = copy.deepcopy(junk)
            try:
                fhir_in.case_from_fhir(mutated)
            except InvalidCase:
                pass


def test_a_questionnaire_response_answers_the_questionnaire_of_the_version_in_force():
    # reading 5: 2024-08-21 to 2025-10-31 inclusive -> 2024-08-21; from 2025-11-01 -> 2025-11-01
    for day, version in (("2025-10-31", "2024-08-21"), ("2025-11-01", "2025-11-01")):
        one = cases.from_object({"case_id": "V", "date_of_service": day})
        form = fhir_form.questionnaire(version)
        assert fhir_form.questionnaire_response(one)["questionnaire"] == f"{form['url']}|{form['version']}"


def test_items_nested_beyond_any_questionnaire_are_bad_input_not_a_crash():
    item = answer("lvef_percent", valueDecimal=58)
    for _ in range(3000):
        item = {"linkId": "group", "item": [item]}
    with pytest.raises(InvalidCase, match="nested too deeply"):
        fhir_in.case_from_fhir(response(*REQUEST, item))


def test_resources_entered_in_error_are_not_read():
    withdrawn = dict(observation("10230-1", 30, "%", "lvef-old"), status="entered-in-error")
    old_response = dict(response(answer("lvef_percent", valueDecimal=20), ident="dtr-old"),
                        status="entered-in-error")
    assert fhir_in.case_from_fhir(bundle(withdrawn, old_response, QR)).case.lvef_percent is None
    with pytest.raises(InvalidCase, match="entered-in-error"):
        fhir_in.case_from_fhir(dict(QR, status="entered-in-error"))


def test_a_facts_source_is_named_in_the_criterion_not_inside_the_decisions_sentence():
    read = fhir_in.case_from_fhir(parse_json((EXAMPLES / "not-covered-crcl-45-2024.bundle.json").read_bytes()))
    with fhir_in.sourced(read) as case:
        result = check(case)
    [five_d] = [c for c in result.criteria if c.id == "5d"]
    assert five_d.because[0].startswith("creatinine_clearance_ml_min = 45, from Observation/")
    assert "from Observation" not in (getattr(result, "reason", None) or "")


def test_a_plain_case_read_after_a_fhir_one_in_the_same_process_names_no_fhir_source():
    # Each fact names the resource it came from only for the case that came from it:
    # a server or a library reading many cases in one thread must not carry sources over.
    from typer.testing import CliRunner

    from covkb.surfaces.cli import app

    runner = CliRunner()
    first = runner.invoke(app, ["check", "-f", "json", str(FACTS / "fhir" / "covered-2025.bundle.json")])
    assert first.exit_code == 0 and ", from " in first.stdout
    plain = runner.invoke(app, ["check", "-f", "json", str(FACTS / "covered-2025.json")])
    assert plain.exit_code == 0
    assert ", from " not in plain.stdout
