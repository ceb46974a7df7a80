"""FHIR as real systems send and expect it: what a PAS intermediary and a DTR client check.

Expected values come from the policy (its CPT/HCPCS section, Q2055), the FDA NDC Directory
(Abecma, NDC 59572-515-01/-02/-03), FHIR R4 (QuestionnaireResponse.status, Observation.status,
Condition clinical and verification status, Quantity.code), and the Da Vinci guides: PAS 2.2
(response Bundle profile, ClaimResponse and ReviewAction, the pended example, §spec-16/30/33),
CRD 2.2 (coverage-information: coverage-assertion-id unique per assertion), DTR 2.2 (the
DTR QuestionnaireResponse profile and information-origin, dtrx-1) and SDC (launchContext,
initialExpression). fhir.resources (R4B) checks the base structure."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from covkb.fhir import codes as fhir_codes
from covkb.fhir import questionnaire as fhir_form
from covkb.fhir import responses
from covkb.fhir import reading as fhir_in
from covkb.api import check
from covkb.input.case import InvalidCase
from covkb.input.text import parse_json

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "facts"
EXAMPLES = FACTS / "fhir"
PAS_SD = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
DTR_SD = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
NDC = "http://hl7.org/fhir/sid/ndc"


def load(name: str) -> dict:
    return parse_json((EXAMPLES / name).read_bytes())


def entries(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def read(resource: dict):
    return fhir_in.case_from_fhir(parse_json(fhir_codes.encode(resource)))


def refused(resource: dict, *words: str) -> str:
    with pytest.raises(InvalidCase) as caught:
        read(resource)
    for word in words:
        assert word in caught.value.message, caught.value.message
    return caught.value.message


COVERED = "covered-2025.bundle.json"


# ---------------------------------------------------------------------------
# 1. Only a final response is decided
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["in-progress", "stopped"])
def test_a_response_that_is_not_final_is_refused(status):
    response = dict(load("covered-2025.questionnaire-response.json"), status=status)
    refused(response, "status", status, "not final")
    bundle = load(COVERED)
    entries(bundle, "QuestionnaireResponse")[0]["status"] = status
    refused(bundle, "status", "not final")


def test_an_amended_response_is_final():
    response = dict(load("covered-2025.questionnaire-response.json"), status="amended")
    assert check(read(response).case).decision == "covered"


# ---------------------------------------------------------------------------
# 2. Only a prior-authorization request for idecabtagene vicleucel
# ---------------------------------------------------------------------------
def test_the_kb_requires_the_policys_hcpcs_code_or_an_abecma_ndc():
    # the policy's CPT/HCPCS section: "Q2055 Idecabtagene vicleucel, up to 510 million ..."
    codes = fhir_in.requested_codes()
    assert (HCPCS, "Q2055") in codes
    # the label's three NDCs, written 5-3-2 and in HIPAA's 11-digit 5-4-2 form
    assert {(NDC, ndc) for n in (1, 2, 3) for ndc in (f"59572-515-0{n}", f"59572-0515-0{n}")} <= set(codes)
    assert (HCPCS, "Q2041") not in codes


def test_a_claim_for_another_product_is_refused():
    bundle = load(COVERED)
    claim = entries(bundle, "Claim")[0]
    claim["item"][0]["productOrService"] = {"coding": [{"system": HCPCS, "code": "Q2041"}],
                                            "text": "axicabtagene ciloleucel"}
    message = refused(bundle, "productOrService", "Q2041", "idecabtagene vicleucel", "Q2055")
    assert "59572-0515-01" in message


def test_a_claim_item_without_a_product_is_refused():
    bundle = load(COVERED)
    del entries(bundle, "Claim")[0]["item"][0]["productOrService"]
    refused(bundle, "productOrService", "Q2055")


@pytest.mark.parametrize("ndc", ["59572-515-01", "59572-0515-02", "59572-515-03"])
def test_a_claim_for_an_abecma_ndc_is_decided(ndc):
    bundle = load(COVERED)
    entries(bundle, "Claim")[0]["item"][0]["productOrService"] = {"coding": [{"system": NDC, "code": ndc}]}
    assert check(read(bundle).case).decision == "covered"


@pytest.mark.parametrize("use", ["claim", "predetermination", None])
def test_a_claim_of_another_use_is_refused(use):
    bundle = load(COVERED)
    claim = entries(bundle, "Claim")[0]
    claim.pop("use")
    if use:
        claim["use"] = use
    refused(bundle, "use", "preauthorization")


# ---------------------------------------------------------------------------
# 3. Identity: one patient, the record at the date of service, the right form
# ---------------------------------------------------------------------------
def test_a_response_about_another_patient_is_refused():
    bundle = load(COVERED)
    entries(bundle, "QuestionnaireResponse")[0]["subject"] = {"reference": "Patient/someone-else"}
    refused(bundle, "subject", "Patient/someone-else", "another patient")


def test_an_observation_of_another_patient_is_refused():
    bundle = load("not-covered-crcl-45-2024.bundle.json")
    observation = crcl(bundle)
    observation["subject"] = {"reference": "http://ehr.example/fhir/Patient/other"}
    refused(bundle, "Observation/", "subject", "another patient")


def test_the_same_patient_named_by_its_id_or_its_full_url_is_one_patient():
    bundle = load(COVERED)
    [patient] = entries(bundle, "Patient")
    entries(bundle, "QuestionnaireResponse")[0]["subject"] = {"reference": f"Patient/{patient['id']}"}
    assert check(read(bundle).case).decision == "covered"


def crcl(bundle: dict) -> dict:
    [observation] = [o for o in entries(bundle, "Observation") if o["code"]["coding"][0]["code"] == "35591-7"]
    return observation


def crcl_bundle(**changes) -> dict:
    bundle = load("not-covered-crcl-45-2024.bundle.json")
    crcl(bundle).update(changes)
    return bundle


def test_an_observation_after_the_date_of_service_documents_nothing():
    # creatinine clearance 45 fails 5d (reading 16); measured after the service it is not documented
    assert read(crcl_bundle()).case.creatinine_clearance_ml_min == 45
    later = crcl_bundle(effectiveDateTime="2099-01-01T08:00:00Z")
    assert read(later).case.creatinine_clearance_ml_min is None
    assert "creatinine_clearance_ml_min" in check(read(later).case).missing


@pytest.mark.parametrize("status", ["preliminary", "cancelled", "registered"])
def test_an_observation_not_final_documents_nothing(status):
    assert read(crcl_bundle(status=status)).case.creatinine_clearance_ml_min is None


@pytest.mark.parametrize("element, code", [("clinicalStatus", "resolved"), ("verificationStatus", "unconfirmed"),
                                           ("verificationStatus", "provisional")])
def test_a_resolved_or_unconfirmed_condition_asserts_no_myeloma(element, code):
    bundle = load(COVERED)
    [condition] = entries(bundle, "Condition")
    condition[element] = {"coding": [{"code": code}]}
    assert read(bundle).case.diagnosis.multiple_myeloma is None


def test_a_response_to_another_form_is_refused():
    response = load("covered-2025.questionnaire-response.json")
    response["questionnaire"] = "http://payer.example/Questionnaire/other|1"
    refused(response, "questionnaire", "payer.example")


def test_a_response_to_the_form_of_another_version_is_refused():
    # covered-2025 is served 2025-11-12: version 2025-11-01 is in force (reading 5)
    response = load("covered-2025.questionnaire-response.json")
    response["questionnaire"] = fhir_form.questionnaire_url() + "|2024-08-21"
    refused(response, "questionnaire", "2025-11-01")


# ---------------------------------------------------------------------------
# 4. One answer per question; the coded unit decides
# ---------------------------------------------------------------------------
def test_a_list_any_answered_twice_is_refused():
    response = {"resourceType": "QuestionnaireResponse", "id": "twice", "status": "completed", "item": [
        {"linkId": "case_id", "answer": [{"valueString": "T"}]},
        {"linkId": "date_of_service", "answer": [{"valueDate": "2025-11-12"}]},
        {"linkId": "prior_cell_therapies.any", "answer": [{"valueBoolean": True}]},
        {"linkId": "prior_cell_therapies", "answer": [{"valueString": "cilta-cel"}]},
        {"linkId": "prior_cell_therapies.any", "answer": [{"valueBoolean": False}]}]}
    refused(response, "prior_cell_therapies.any", "answered twice")


def test_the_ucum_code_wins_over_the_unit_text():
    bundle = load("not-covered-crcl-45-2024.bundle.json")
    observation = crcl(bundle)
    observation["valueQuantity"] = {"value": 45, "unit": "mL/min", "code": "mL/s"}
    refused(bundle, "valueQuantity.code", "mL/s", "mL/min")
    observation["valueQuantity"] = {"value": 45, "unit": "millilitres a minute",
                                    "system": "http://unitsofmeasure.org", "code": "mL/min"}
    assert read(bundle).case.creatinine_clearance_ml_min == 45


# ---------------------------------------------------------------------------
# 5. PAS: a response Bundle whose references resolve inside it
# ---------------------------------------------------------------------------
def pas(name: str) -> tuple[dict, dict, object]:
    request = load(name)
    got = read(request)
    result = check(got.case)
    return request, responses.pas_response(result, got.context), result


def references(node):
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


BUNDLES = sorted(p.name for p in EXAMPLES.glob("*.bundle.json"))


@pytest.mark.parametrize("name", BUNDLES)
def test_pas_answers_a_response_bundle_whose_references_resolve_inside_it(name):
    from fhir.resources.R4B.bundle import Bundle

    request, response, result = pas(name)
    Bundle.model_validate(parse_json(fhir_codes.encode(response)))
    assert response["meta"]["profile"] == [PAS_SD + "profile-pas-response-bundle"]
    assert response["type"] == "collection" and response["timestamp"] and response["identifier"]
    first = response["entry"][0]["resource"]
    assert first["resourceType"] == "ClaimResponse"  # PAS §spec-30
    urls = [e["fullUrl"] for e in response["entry"]]
    assert len(set(urls)) == len(urls)
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", url) for url in urls)
    for reference in references(response):
        assert reference in urls, reference
    for key in ("patient", "request", "insurer"):
        assert first[key]["reference"] in urls, key
    # echoed resources keep the request's own fullUrls (PAS §spec-33)
    given = {e["resource"]["resourceType"] + "/" + e["resource"]["id"]: e["fullUrl"] for e in request["entry"]}
    for entry in response["entry"][1:]:
        resource = entry["resource"]
        assert given[f"{resource['resourceType']}/{resource['id']}"] == entry["fullUrl"]


def review(response: dict) -> dict[str, list]:
    [item] = response["entry"][0]["resource"]["item"]
    [adjudication] = item["adjudication"]
    [action] = adjudication["extension"]
    parts: dict[str, list] = {}
    for part in action["extension"]:
        parts.setdefault(part["url"], []).append(part)
    return parts


def test_a_certified_request_carries_its_certification_number():
    _, response, result = pas(COVERED)
    parts = review(response)
    assert parts[PAS_SD + "extension-reviewActionCode"][0]["valueCodeableConcept"]["coding"][0]["code"] == "A1"
    [number] = parts["number"]
    assert number["valueString"] == response["entry"][0]["resource"]["preAuthRef"]
    assert "reasonCode" not in parts


def test_a_request_not_certified_carries_a_reason_per_criterion_not_met():
    _, response, result = pas("not-covered-crcl-45-2024.bundle.json")
    parts = review(response)
    assert parts[PAS_SD + "extension-reviewActionCode"][0]["valueCodeableConcept"]["coding"][0]["code"] == "A3"
    codes = [p["valueCodeableConcept"]["coding"][0]["code"] for p in parts["reasonCode"]]
    assert codes == ["5d"]  # "d. Creatinine clearance less than or equal to 45 mL/min"
    assert "number" not in parts


def test_a_pended_request_carries_what_is_missing_and_outcome_complete():
    _, response, result = pas("pending-2025.bundle.json")
    parts = review(response)
    assert parts[PAS_SD + "extension-reviewActionCode"][0]["valueCodeableConcept"]["coding"][0]["code"] == "A4"
    codes = {p["valueCodeableConcept"]["coding"][0]["code"] for p in parts["reasonCode"]}
    assert codes == set(result.missing) and codes
    # PAS ClaimResponseOutcome: complete | error | partial; the PAS pended example is complete
    assert response["entry"][0]["resource"]["outcome"] == "complete"


def test_pas_of_a_lone_response_names_the_request_by_identifier():
    response = load("pending-2025.questionnaire-response.json")
    got = read(response)
    bundle = responses.pas_response(check(got.case), got.context)
    [entry] = bundle["entry"]
    assert entry["resource"]["request"] == {"identifier": {"system": "urn:covkb:case-id", "value": got.case.case_id}}


# ---------------------------------------------------------------------------
# 6. CRD: a unique assertion id, a coverage reference that resolves
# ---------------------------------------------------------------------------
def crd(name: str, date=None) -> tuple[dict, dict]:
    request = load(name)
    got = read(request)
    extension = responses.coverage_information(check(got.case), got.context, date)
    return request, {p["url"]: p for p in extension["extension"]}


def test_each_coverage_assertion_has_its_own_id():
    ids = set()
    for name in BUNDLES:
        _, parts = crd(name)
        ident = parts["coverage-assertion-id"]["valueString"]
        assert ident != read(load(name)).case.case_id
        ids.add(ident)
    _, later = crd(COVERED, datetime.date(2030, 1, 1))
    ids.add(later["coverage-assertion-id"]["valueString"])
    assert len(ids) == len(BUNDLES) + 1


@pytest.mark.parametrize("name", BUNDLES)
def test_the_coverage_reference_resolves_in_the_request(name):
    request, parts = crd(name)
    assert parts["coverage"]["valueReference"]["reference"] in {e["fullUrl"] for e in request["entry"]
                                                                if e["resource"]["resourceType"] == "Coverage"}


# ---------------------------------------------------------------------------
# 7. The form a clinician fills
# ---------------------------------------------------------------------------
def walk(items):
    for item in items:
        yield item
        yield from walk(item.get("item", []))


@pytest.mark.parametrize("version", ["2024-08-21", "2025-11-01"])
def test_the_form_asks_in_words_with_coded_options_and_no_payer_questions(version):
    form = fhir_form.questionnaire(version)
    items = list(walk(form["item"]))
    for item in items:
        assert item["text"] and item["text"] != item["linkId"] and not re.fullmatch(r"[a-z_.]+(: any\?)?", item["text"])
        assert not item["linkId"].startswith("plan."), item["linkId"]
        assert item["type"] != "display" and "Also reads" not in item["text"]
        if item["type"] == "group":
            assert "required" not in item, item["linkId"]
        for option in item.get("answerOption", ()):
            assert option["valueCoding"]["system"].startswith("http") and option["valueCoding"]["display"]
    # the reviewer's words of kb/words.lp for a field a criterion reads
    assert {i["linkId"]: i["text"] for i in items}["lvef_percent"].lower() == "left ventricular ejection fraction"


def test_the_form_is_named_by_an_http_canonical_with_its_version_everywhere():
    form = fhir_form.questionnaire("2025-11-01")
    assert form["url"].startswith("http://") and form["version"] == "2025-11-01"
    canonical = f"{form['url']}|{form['version']}"
    assert load("pending-2025.questionnaire-response.json")["questionnaire"] == canonical
    _, parts = crd("pending-2025.bundle.json")
    assert parts["questionnaire"]["valueCanonical"] == canonical


# ---------------------------------------------------------------------------
# 8. Prepopulation from the launch context
# ---------------------------------------------------------------------------
INITIAL = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression"


def test_the_form_prepopulates_what_the_record_holds():
    form = fhir_form.questionnaire("2024-08-21")
    [context] = [e for e in form["extension"] if e["url"].endswith("sdc-questionnaire-launchContext")]
    assert {"url": "type", "valueCode": "Patient"} in context["extension"]
    expressions = {i["linkId"]: e["valueExpression"] for i in walk(form["item"])
                   for e in i.get("extension", ()) if e["url"] == INITIAL}
    assert set(expressions) >= {"member.birth_date", "diagnosis.multiple_myeloma", "lvef_percent",
                                "creatinine_clearance_ml_min"}
    assert all(e["language"] == "text/fhirpath" for e in expressions.values())
    assert expressions["member.birth_date"]["expression"] == "%patient.birthDate"
    variables = {e["valueExpression"]["name"]: e["valueExpression"]["expression"] for e in form["extension"]
                 if e["url"] == "http://hl7.org/fhir/StructureDefinition/variable"}
    assert "10230-1" in variables["lvef"] and "35591-7" in variables["crcl"] and "C90.02" in variables["myeloma"]


# ---------------------------------------------------------------------------
# 9. The example responses carry what the DTR profile requires
# ---------------------------------------------------------------------------
def example_responses():
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = parse_json(path.read_bytes())
        found = [resource] if resource["resourceType"] == "QuestionnaireResponse" else entries(
            resource, "QuestionnaireResponse")
        for one in found:
            yield pytest.param(one, id=path.name)


def answers(items):
    for item in items:
        for answer in item.get("answer", ()):
            yield answer
            yield from answers(answer.get("item", ()))
        yield from answers(item.get("item", ()))


@pytest.mark.parametrize("response", list(example_responses()))
def test_each_example_response_meets_the_dtr_profile(response):
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    QuestionnaireResponse.model_validate(response)
    assert response["meta"]["profile"] == [DTR_SD + "dtr-questionnaireresponse"]
    assert response["subject"]["reference"] and response["author"]["reference"]
    datetime.datetime.fromisoformat(response["authored"].replace("Z", "+00:00"))
    urls = [e["url"] for e in response["extension"]]
    assert DTR_SD + "qr-coverage" in urls and DTR_SD + "intendedUse" in urls
    found = list(answers(response["item"]))
    assert found
    for answer in found:
        [origin] = [e for e in answer["extension"] if e["url"] == DTR_SD + "information-origin"]
        parts = {p["url"]: p for p in origin["extension"]}
        assert parts["source"]["valueCode"] in ("auto-client", "auto-server", "override", "manual")
        # dtrx-1: an author exactly when a person entered or overrode the answer
        assert ("author" in parts) == (parts["source"]["valueCode"] in ("override", "manual"))
