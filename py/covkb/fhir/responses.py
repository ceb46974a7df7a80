"""Out: a result as a Da Vinci PAS response `Bundle` holding the `ClaimResponse`, and as the
CRD coverage-information extension; a case as a PAS-style request `Bundle` (the examples
in facts/fhir/). docs/fhir.md is the mapping. Plain dicts only."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any, Iterable, Optional


from covkb.input.case import Case
from covkb.fhir.codes import BASE, CONDITIONS, CRD_COVERAGE_INFORMATION, HCPCS, ICD10CM, ITEM_CODES, LOINC, LOINC_DISPLAY, OBSERVATIONS, PAS, REVIEW_ACTIONS, UCUM, X12_306
from covkb.fhir.questionnaire import coding, item_words, questionnaire_canonical, questionnaire_response, safe_id


# ---------------------------------------------------------------------------
# Result → PAS ClaimResponse, CRD coverage information
# ---------------------------------------------------------------------------
def _reason(result) -> str:
    reason = getattr(result, "reason", None)
    if reason:
        return reason
    failing = [c.id for c in result.criteria if c.status == "not_met"]
    text = f"{result.decision} ({result.label})"
    if failing:
        text += "; not met: " + ", ".join(failing)
    if result.missing:
        text += "; documentation missing: " + ", ".join(result.missing)
    return text


def _reference(context: Optional[dict], key: str, display: str) -> dict:
    value = (context or {}).get(key)
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"reference": value}
    return {"display": display}


def review_action(decision: str, number: Optional[str] = None, reasons: Iterable[dict] = ()) -> dict:
    """The PAS reviewAction extension for a decision: the X12 306 code, the certification
    number (X12 HCR02) when certified, and the reasons (HCR03) when not certified or pended."""
    code, display = REVIEW_ACTIONS[decision]
    parts = [{"url": PAS + "extension-reviewActionCode",
              "valueCodeableConcept": {"coding": [coding(X12_306, code, display)]}}]
    if number:
        parts.append({"url": "number", "valueString": number})
    parts += [{"url": "reasonCode", "valueCodeableConcept": reason} for reason in reasons]
    return {"url": PAS + "extension-reviewAction", "extension": parts}


def _review_reasons(result) -> list[dict]:
    """Why a request was not certified (each criterion not met) or pended (each field
    whose documentation is missing), coded in covkb's own code systems."""
    words = item_words()
    if result.decision == "not_covered":
        return [{"coding": [coding(f"{BASE}/CodeSystem/criterion", c.id, f"{c.id} not met")],
                 "text": f"{c.id} not met: {c.text}"} for c in result.criteria if c.status == "not_met"]
    if result.decision == "pending":
        return [{"coding": [coding(f"{BASE}/CodeSystem/case-field", path, words.get(path, path))],
                 "text": f"documentation missing: {words.get(path, path)}"} for path in result.missing]
    return []


def claim_response(result, context: Optional[dict] = None,
                   created: Optional[datetime.datetime] = None) -> dict:
    """The result as a PAS ClaimResponse: outcome complete, the reason in processNote,
    each item adjudicated with the PAS reviewAction of the decision."""
    notes = [{"number": 1, "type": "display", "text": _reason(result)}]
    for criterion in result.criteria:
        if criterion.status != "met":
            because = "; ".join(criterion.because)
            notes.append({"number": len(notes) + 1, "type": "display",
                          "text": f"{criterion.id} {criterion.status}: {criterion.text}"
                                  + (f" ({because})" if because else "")})
    for advisory in result.advisories:
        notes.append({"number": len(notes) + 1, "type": "display", "text": advisory})
    sequences = [s for s in (context or {}).get("items", ()) if isinstance(s, int)] or [1]
    certified = result.case_id if result.decision == "covered" else None
    adjudication = [{"category": {"coding": [coding("http://terminology.hl7.org/CodeSystem/adjudication",
                                                     "submitted")]},
                     "extension": [review_action(result.decision, certified, _review_reasons(result))]}]
    response = {
        "resourceType": "ClaimResponse",
        "meta": {"profile": [PAS + "profile-claimresponse"]},
        "identifier": [{"system": "urn:covkb:case-id", "value": result.case_id}],
        "status": "active",
        "type": (context or {}).get("type") or {"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/claim-type", "institutional")]},
        "use": "preauthorization",
        "patient": _reference(context, "patient", f"the member of request {result.case_id}"),
        "created": (created or datetime.datetime.now(datetime.timezone.utc)).isoformat(timespec="seconds"),
        "insurer": _reference(context, "insurer", f"the payer applying policy {result.policy}"),
        "request": ({"reference": context["claim"]} if context and context.get("claim") else
                    {"identifier": {"system": "urn:covkb:case-id", "value": result.case_id}}),
        # PAS ClaimResponseOutcome is complete | error | partial: a pended item is told by
        # its reviewAction A4, the response itself complete (the PAS pended example).
        "outcome": "complete",
        "disposition": _reason(result),
        "item": [{"itemSequence": sequence, "noteNumber": [n["number"] for n in notes],
                  "adjudication": adjudication} for sequence in sequences],
        "processNote": notes,
    }
    if context and context.get("requestor"):
        response["requestor"] = context["requestor"]
    if certified:
        response["preAuthRef"] = certified
    return response


def pas_response(result, context: Optional[dict] = None,
                 created: Optional[datetime.datetime] = None) -> dict:
    """The result as a PAS response Bundle: the ClaimResponse first, then every resource of
    the request it references, and those they reference, each once. Every fullUrl is a
    urn:uuid (the request's own when it gave one) and every reference one of them."""
    import copy

    context = context or {}
    response = claim_response(result, context, created)
    entries: dict[str, dict] = context.get("entries", {})
    given = context.get("full_urls", {})
    by_url = {url: name for name, url in given.items()}
    urls: dict[str, str] = {}

    def url_of(reference: Any) -> Optional[str]:
        """The urn:uuid of a request resource a reference names, including it."""
        name = by_url.get(reference, reference if reference in entries else None)
        if name is None:
            return None
        if name not in urls:
            own = given.get(name, "")
            urls[name] = own if own.startswith("urn:uuid:") else uuid_of(result.case_id, name)
        return urls[name]

    def point(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str) and url_of(node["reference"]):
                node["reference"] = url_of(node["reference"])
            for value in node.values():
                point(value)
        elif isinstance(node, list):
            for value in node:
                point(value)

    point(response)
    included: list[tuple[str, dict]] = []
    done: set[str] = set()
    while len(done) < len(urls):  # each resource referenced, then what it references
        for name in [n for n in urls if n not in done]:
            done.add(name)
            echoed = copy.deepcopy(entries[name])
            point(echoed)
            included.append((urls[name], echoed))
    response["id"] = uuid_of(result.case_id, "ClaimResponse", encode_result(result)).rsplit(":", 1)[-1]
    return {"resourceType": "Bundle", "meta": {"profile": [PAS + "profile-pas-response-bundle"]},
            "identifier": context.get("bundle_identifier") or {"system": "urn:covkb:case-id",
                                                                 "value": result.case_id},
            "type": "collection", "timestamp": response["created"],
            "entry": [{"fullUrl": f"urn:uuid:{response['id']}", "resource": response}]
                     + [{"fullUrl": url, "resource": resource} for url, resource in included]}


def encode_result(result) -> str:
    from covkb.results.render import as_json

    return as_json(result)


# Fields whose absence CRD names as info-needed rather than documentation.
INFO_NEEDED = {"prescriber.specialist": "performer", "prescriber.approved_car_t_center": "location"}


def coverage_information(result, context: Optional[dict] = None,
                         date: Optional[datetime.date] = None) -> dict:
    """The result as the CRD coverage-information extension."""
    def sub(url: str, **value) -> dict:
        return {"url": url, **value}

    context = context or {}
    coverage = context.get("coverage_reference")  # the request's own reference, as the Claim gave it
    if not coverage and context.get("coverage"):
        name = context["coverage"]
        coverage = {"reference": context.get("full_urls", {}).get(name, name)}
    coverage = coverage or {"display": f"the coverage of request {result.case_id}"}
    parts = [sub("coverage", valueReference=coverage)]
    decision = result.decision
    if decision == "covered":
        parts += [sub("covered", valueCode="covered"), sub("pa-needed", valueCode="satisfied")]
    elif decision == "not_covered":
        parts.append(sub("covered", valueCode="not-covered"))
    elif decision == "pending":
        parts += [sub("covered", valueCode="conditional"), sub("pa-needed", valueCode="auth-needed")]
        documents = [m for m in result.missing if m not in INFO_NEEDED]
        if documents or not result.missing:
            parts += [sub("doc-needed", valueCode="clinical"), sub("doc-purpose", valueCode="withpa")]
        parts += [sub("info-needed", valueCode=INFO_NEEDED[m]) for m in result.missing if m in INFO_NEEDED]
        if documents or not result.missing:
            parts.append(sub("questionnaire", valueCanonical=questionnaire_canonical(result.version)))
    else:
        parts += [sub("covered", valueCode="conditional"), sub("pa-needed", valueCode="conditional")]
    parts.append(sub("reason", valueCodeableConcept={"text": _reason(result)}))
    parts.append(sub("date", valueDate=(date or datetime.date.today()).isoformat()))
    made = (date or datetime.date.today()).isoformat()
    # unique per answer: the same result on the same day is the same assertion
    parts.append(sub("coverage-assertion-id", valueString=uuid_of("coverage-assertion", encode_result(result), made)
                     .rsplit(":", 1)[-1]))
    if decision == "covered":
        parts.append(sub("satisfied-pa-id", valueString=result.case_id))
    return {"url": CRD_COVERAGE_INFORMATION, "extension": parts}


# ---------------------------------------------------------------------------
# Case → PAS-style request Bundle (the examples in facts/fhir/)
# ---------------------------------------------------------------------------
def uuid_of(*parts: str) -> str:
    """A urn:uuid the same parts always give (name-based, RFC 4122 version 5)."""
    import uuid

    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join((BASE,) + parts))}"


def pas_bundle(case: Case) -> dict:
    """The case as a PAS request Bundle: the Claim first, then the resources it and they
    reference (Patient, Coverage, insurer, the ordering Practitioner), a Condition and
    Observations for what the record carries, and a DTR QuestionnaireResponse for the
    rest. Every fullUrl is a urn:uuid and every reference one of them."""
    from covkb.engine.facts import field

    ident = safe_id(case.case_id)
    url = {kind: uuid_of(case.case_id, kind) for kind in
           ("Claim", "Patient", "Coverage", "Organization", "Practitioner", "Condition",
            "lvef", "creatinine", "QuestionnaireResponse")}
    patient = {"resourceType": "Patient", "id": f"{ident}-patient"}
    birth = field(case, "member.birth_date")
    if birth is not None:
        patient["birthDate"] = birth.isoformat()
    structured = {"case_id", "date_of_service", "member.birth_date"}
    to_patient = {"reference": url["Patient"]}
    prescriber = {"reference": url["Practitioner"]}
    resources = [
        {"resourceType": "Claim", "id": f"{ident}-claim",
         "identifier": [{"system": "urn:covkb:case-id", "value": case.case_id}],
         "status": "active", "use": "preauthorization",
         "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/claim-type", "institutional")]},
         "patient": to_patient,
         "created": f"{case.date_of_service.isoformat()}T00:00:00Z",
         "insurer": {"reference": url["Organization"]},
         "provider": prescriber,
         "priority": {"coding": [coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal")]},
         "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": url["Coverage"]}}],
         "item": [{"sequence": 1, "servicedDate": case.date_of_service.isoformat(),
                   "productOrService": {"coding": [coding(HCPCS, "Q2055")], "text": "idecabtagene vicleucel"}}]},
        patient,
        {"resourceType": "Coverage", "id": f"{ident}-coverage", "status": "active",
         "beneficiary": to_patient, "payor": [{"reference": url["Organization"]}]},
        {"resourceType": "Organization", "id": f"{ident}-insurer", "name": "payer"},
        {"resourceType": "Practitioner", "id": f"{ident}-prescriber", "name": [{"text": "ordering physician"}]},
    ]
    urls = [url["Claim"], url["Patient"], url["Coverage"], url["Organization"], url["Practitioner"]]
    if field(case, "diagnosis.multiple_myeloma"):
        code = "C90.02" if field(case, "diagnosis.relapsed") else "C90.00"
        structured.update(CONDITIONS[code])
        resources.append({"resourceType": "Condition", "id": f"{ident}-myeloma",
                          "clinicalStatus": {"coding": [coding(
                              "http://terminology.hl7.org/CodeSystem/condition-clinical", "active")]},
                          "verificationStatus": {"coding": [coding(
                              "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed")]},
                          "subject": to_patient, "code": {"coding": [coding(ICD10CM, code)]}})
        urls.append(url["Condition"])
    for path, code in ITEM_CODES.items():
        value = field(case, path)
        if value is not None:
            structured.add(path)
            unit = OBSERVATIONS[code][1]
            kind = path.split("_")[0]
            resources.append({"resourceType": "Observation", "id": f"{ident}-{kind}", "status": "final",
                              "code": {"coding": [coding(LOINC, code, LOINC_DISPLAY[code])]},
                              "subject": to_patient,
                              "effectiveDateTime": case.date_of_service.isoformat(),
                              "valueQuantity": {"value": Decimal(value), "unit": unit, "system": UCUM, "code": unit}})
            urls.append(url[kind])
    response = questionnaire_response(case, ident=f"{ident}-dtr", subject=to_patient, author=prescriber,
                                      coverage={"reference": url["Coverage"]})
    for group in response["item"]:
        group["item"] = [item for item in group["item"] if item["linkId"] not in structured]
    response["item"] = [group for group in response["item"] if group["item"]]
    resources.append(response)
    urls.append(url["QuestionnaireResponse"])
    return {"resourceType": "Bundle", "id": f"{ident}-request",
            "meta": {"profile": [PAS + "profile-pas-request-bundle"]},
            "identifier": {"system": "urn:covkb:case-id", "value": case.case_id}, "type": "collection",
            "timestamp": f"{case.date_of_service.isoformat()}T00:00:00Z",
            "entry": [{"fullUrl": full, "resource": r} for full, r in zip(urls, resources)]}
