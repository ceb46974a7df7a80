"""The FHIR systems, codes and constants covkb speaks in, and FHIR JSON text."""

from __future__ import annotations

from typing import Any

import msgspec


LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
X12_306 = "https://codesystem.x12.org/005010/306"
PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
CRD_COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
QUESTIONNAIRE_UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
NDC = "http://hl7.org/fhir/sid/ndc"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
# kb/request.lp names code systems; these are their FHIR system URIs (HCPCS also as some
# systems write it, with https).
CODE_SYSTEMS = {"hcpcs": (HCPCS, "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"), "ndc": (NDC,)}
# covkb's own canonical namespace: the Questionnaire and the code systems of its answers.
BASE = "http://covkb.org/fhir"

# Observation codes → (case field, the UCUM unit the field is in).
OBSERVATIONS = {
    "10230-1": ("lvef_percent", "%"),
    "35591-7": ("creatinine_clearance_ml_min", "mL/min"),
    "2164-2": ("creatinine_clearance_ml_min", "mL/min"),
}
LOINC_DISPLAY = {
    "10230-1": "Left ventricular Ejection fraction",
    "35591-7": "Creatinine renal clearance predicted by Cockcroft-Gault formula",
    "2164-2": "Creatinine renal clearance in 24 hour Urine and Serum or Plasma",
}
# The LOINC code a Questionnaire item carries for a field (the first of OBSERVATIONS).
ITEM_CODES = {"lvef_percent": "10230-1", "creatinine_clearance_ml_min": "35591-7"}
# ICD-10-CM multiple myeloma codes → the diagnosis fields each asserts true.
CONDITIONS = {
    "C90.00": ("diagnosis.multiple_myeloma",),
    "C90.01": ("diagnosis.multiple_myeloma",),
    "C90.02": ("diagnosis.multiple_myeloma", "diagnosis.relapsed"),
}
# The decision → X12 306 review action code (PAS reviewAction), display.
REVIEW_ACTIONS = {
    "covered": ("A1", "Certified in total"),
    "not_covered": ("A3", "Not Certified"),
    "pending": ("A4", "Pended"),
    "not_applicable": ("CT", "Contact Payer"),
}
IGNORED_STATUS = {"entered-in-error", "refuted", "cancelled"}
# A QuestionnaireResponse is read only when final; an Observation only when its result is.
FINAL_RESPONSE = ("completed", "amended")
FINAL_OBSERVATION = ("final", "amended", "corrected")
# A Condition asserts myeloma only when confirmed (or not qualified) and not resolved.
CONFIRMED = "confirmed"
NOT_CURRENT = {"resolved", "inactive"}
# Where a FHIR input may give the fields every case requires.
REQUIRED_FROM = {"case_id": "a QuestionnaireResponse item case_id or Claim.identifier",
                 "date_of_service": "a QuestionnaireResponse item date_of_service or Claim.item.servicedDate"}

encoder = msgspec.json.Encoder(decimal_format="number")


def encode(resource: dict) -> str:
    """FHIR JSON text; decimals written exactly as numbers."""
    return encoder.encode(resource).decode()


def is_fhir(obj: Any) -> bool:
    """Whether a parsed JSON value is a FHIR resource rather than a covkb case."""
    return isinstance(obj, dict) and "resourceType" in obj
