"""FHIR R4 in and out: the one place covkb's case and result meet HL7 Da Vinci shapes.

In: a DTR `QuestionnaireResponse`, or a `Bundle` (a PAS Claim bundle or a collection)
holding Patient, Condition, Observation, Claim and a QuestionnaireResponse → a Case,
each field with the resource it came from; only a final response, about one patient, to
covkb's form, in a prior-authorization request for the product kb/request.lp names. Out:
the `Questionnaire` a clinician fills (built from the knowledge base's words and the case
schema, prepopulated over its launch context), a PAS response `Bundle` holding the
`ClaimResponse`, and the CRD coverage-information extension. docs/fhir.md is the mapping
and the rules. Plain dicts only: no FHIR library is imported at run time.
"""

from __future__ import annotations

import datetime
from contextlib import contextmanager
from dataclasses import dataclass, field as dataclass_field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Iterable, Optional

import msgspec

from covkb.case import Case, InvalidCase, from_object

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

_encoder = msgspec.json.Encoder(decimal_format="number")


def encode(resource: dict) -> str:
    """FHIR JSON text; decimals written exactly as numbers."""
    return _encoder.encode(resource).decode()


def is_fhir(obj: Any) -> bool:
    """Whether a parsed JSON value is a FHIR resource rather than a covkb case."""
    return isinstance(obj, dict) and "resourceType" in obj


# ---------------------------------------------------------------------------
# The case schema as questions
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    """One case field as a question: its path, FHIR item type, and list shape."""

    path: str
    type: str                      # boolean | date | decimal | integer | string | choice
    shape: str = "one"             # one | list | lines | records
    choices: tuple = ()
    parts: tuple = ()              # records: the (name, Question) of each member


def _question(path: str, info) -> Question:
    kind, choices = _kind(info)
    return Question(path, kind, choices=choices)


def _kind(info) -> tuple[str, tuple]:
    import msgspec.inspect as mi

    if isinstance(info, mi.UnionType):
        info = next(t for t in info.types if not isinstance(t, mi.NoneType))
    if isinstance(info, mi.BoolType):
        return "boolean", ()
    if isinstance(info, mi.DateType):
        return "date", ()
    if isinstance(info, mi.IntType):
        return "integer", ()
    if isinstance(info, mi.CustomType):
        return "decimal", ()
    if isinstance(info, mi.LiteralType):
        return "choice", tuple(info.values)
    if isinstance(info, mi.StrType):
        return "string", ()
    raise TypeError(f"no FHIR item type for {info}")


@lru_cache(maxsize=1)
def questions() -> tuple[Question, ...]:
    """Every case field, in schema order, read from the msgspec structs of covkb.case."""
    import msgspec.inspect as mi

    found = []
    for top in mi.type_info(Case).fields:
        info = top.type
        if isinstance(info, mi.UnionType):
            info = next(t for t in info.types if not isinstance(t, mi.NoneType))
        if isinstance(info, mi.StructType):
            for sub in info.fields:
                found.append(_question(f"{top.name}.{sub.name}", sub.type))
        elif isinstance(info, mi.ListType):
            item = info.item_type
            if isinstance(item, mi.ListType):
                found.append(Question(top.name, "group", "lines",
                                      parts=(("agent", _question(f"{top.name}.agent", item.item_type)),)))
            elif isinstance(item, mi.StructType):
                parts = tuple((sub.name, _question(f"{top.name}.{sub.name}", sub.type)) for sub in item.fields)
                found.append(Question(top.name, "group", "records", parts=parts))
            else:
                found.append(Question(top.name, _kind(item)[0], "list"))
        else:
            found.append(_question(top.name, info))
    return tuple(found)


def _coding(system: str, code: str, display: Optional[str] = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
INITIAL_EXPRESSION = SDC + "sdc-questionnaire-initialExpression"
LAUNCH_CONTEXT = SDC + "sdc-questionnaire-launchContext"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
# What the record already holds, fetched for prepopulation (x-fhir-query over the launch
# context's patient): the myeloma Conditions, and the newest LVEF and creatinine clearance.
_MYELOMA_CODES = ",".join(f"{ICD10CM}|{code}" for code in CONDITIONS)
RECORD_QUERIES = {
    "myeloma": f"Condition?patient={{{{%patient.id}}}}&code={_MYELOMA_CODES}",
    "lvef": f"Observation?patient={{{{%patient.id}}}}&code={LOINC}|10230-1"
            f"&status={','.join(FINAL_OBSERVATION)}&_sort=-date&_count=1",
    "crcl": f"Observation?patient={{{{%patient.id}}}}&code={LOINC}|35591-7,{LOINC}|2164-2"
            f"&status={','.join(FINAL_OBSERVATION)}&_sort=-date&_count=1",
}
# A Condition the reader would take (covkb.fhir._read_condition), in FHIRPath.
_CURRENT = ("(verificationStatus.empty() or verificationStatus.coding.code contains 'confirmed')"
            " and (clinicalStatus.coding.code contains 'resolved').not()"
            " and (clinicalStatus.coding.code contains 'inactive').not()")


def _has_code(codes) -> str:
    either = " or ".join(f"code = '{code}'" for code in codes)
    return (f"%myeloma.entry.resource.where({_CURRENT}).code.coding"
            f".where(system = '{ICD10CM}' and ({either}))"
            ".exists().where($this)")  # true when held; otherwise empty, never false


# case field -> FHIRPath giving its value from the launch context, where the record holds it
PREPOPULATE = {
    "member.birth_date": "%patient.birthDate",
    "diagnosis.multiple_myeloma": _has_code(CONDITIONS),
    "diagnosis.relapsed": _has_code(c for c, paths in CONDITIONS.items() if "diagnosis.relapsed" in paths),
    "lvef_percent": "%lvef.entry.resource.valueQuantity.where(code = '%').value.first()",
    "creatinine_clearance_ml_min": "%crcl.entry.resource.valueQuantity.where(code = 'mL/min').value.first()",
}


def _words() -> dict[str, str]:
    """Each case field's question, in the knowledge base's words."""
    from covkb.decide import policy

    facts = policy().facts
    words = {field: text for field, text in facts.get("question_words", ())}
    words.update((field, text) for field, text in facts.get("field_words", ()))
    return words


def choice_system(path: str) -> str:
    """The code system of a choice field's answers (covkb's own)."""
    return f"{BASE}/CodeSystem/{path.replace('.', '-').replace('_', '-')}"


def _choices(path: str) -> dict[str, str]:
    from covkb.decide import policy

    return {code: text for field, code, text in policy().facts.get("choice_words", ()) if field == path}


def _items(question: Question, required: bool = False) -> list[dict]:
    """The Questionnaire items asking for one case field, in the kb's words."""
    words = _words()
    text = words.get(question.path, question.path)
    item: dict = {"linkId": question.path, "text": text[:1].upper() + text[1:], "type": question.type}
    code = ITEM_CODES.get(question.path)
    extensions = []
    if code:
        item["code"] = [_coding(LOINC, code, LOINC_DISPLAY[code])]
        unit = OBSERVATIONS[code][1]
        extensions.append({"url": QUESTIONNAIRE_UNIT, "valueCoding": _coding(UCUM, unit, unit)})
    if question.path in PREPOPULATE:
        extensions.append({"url": INITIAL_EXPRESSION, "valueExpression": {
            "language": "text/fhirpath", "expression": PREPOPULATE[question.path]}})
    if extensions:
        item["extension"] = extensions
    if required and question.type != "group":
        item["required"] = True
    if question.choices:
        shown = _choices(question.path)
        item["answerOption"] = [{"valueCoding": _coding(choice_system(question.path), choice, shown.get(choice, choice))}
                                for choice in question.choices]
    if question.shape == "one":
        return [item]
    item["repeats"] = True
    item["enableWhen"] = [{"question": f"{question.path}.any", "operator": "=", "answerBoolean": True}]
    if question.parts:
        item["item"] = [_items(part, required=True)[0] for _, part in question.parts]
        if question.shape == "lines":  # a line of therapy holds one or more agents
            item["item"][0]["repeats"] = True
    ask_any = {"linkId": f"{question.path}.any", "text": f"Any {text}?", "type": "boolean"}
    return [ask_any, item]


def questionnaire_url() -> str:
    """The Questionnaire's canonical URL; each policy version is a version of it."""
    from covkb.decide import policy

    return f"{BASE}/Questionnaire/covkb-{policy().id}"


def questionnaire_canonical(version: Optional[str] = None) -> str:
    """The canonical reference to the form of one version: URL|version."""
    return f"{questionnaire_url()}|{_version(version)}"


def payer_fields() -> set[str]:
    """The payer's own facts (kb payer_field), never asked of a clinician."""
    from covkb.decide import policy

    return {field for (field,) in policy().facts.get("payer_field", ())}


def _version(version: Optional[str]) -> str:
    from covkb.decide import policy

    known = sorted(policy().versions)
    if version is None:
        return known[-1]
    if version not in known:
        raise InvalidCase("version", version, f"expected one of {', '.join(known)}")
    return version


def questionnaire(version: Optional[str] = None) -> dict:
    """The R4 Questionnaire a clinician fills for a policy version (default: the newest):
    the request, then one group per criterion (the policy's words) holding the fields that
    criterion is the first to read, then the fields no criterion of the version reads.
    Every case field but the payer's own plan facts is asked exactly once, its linkId
    the field's path; what the record holds is prepopulated over the launch context."""
    from covkb.decide import policy as kb_policy

    policy = kb_policy()
    version = _version(version)
    by_path = {q.path: q for q in questions()}
    placed: dict[str, str] = {path: "payer" for path in payer_fields()}
    groups = [{"linkId": "request", "text": "The request", "type": "group",
               "item": _items(by_path["case_id"], True) + _items(by_path["date_of_service"], True)}]
    placed.update(case_id="request", date_of_service="request")
    reads = policy.reads.get(version, {})
    for ident, text in policy.criteria[version]:
        new = [q.path for q in questions() if q.path in reads.get(ident, ()) and q.path not in placed]
        placed.update((path, ident) for path in new)
        if new:
            groups.append({"linkId": f"criterion-{ident}", "prefix": ident, "text": text, "type": "group",
                           "item": [item for path in new for item in _items(by_path[path])]})
    rest = [item for q in questions() if q.path not in placed for item in _items(q)]
    if rest:
        groups.append({"linkId": "other", "type": "group", "item": rest,
                       "text": f"Also documented (no criterion of version {version} reads these)"})
    return {
        "resourceType": "Questionnaire",
        "id": f"covkb-{policy.id}-{version}",
        "meta": {"profile": ["http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-pop-exp"]},
        "extension": [
            {"url": LAUNCH_CONTEXT, "extension": [
                {"url": "name", "valueCoding": _coding("http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext",
                                                       "patient", "Patient")},
                {"url": "type", "valueCode": "Patient"},
                {"url": "description", "valueString": "The member the request is for"}]},
            *({"url": VARIABLE, "valueExpression": {"name": name, "language": "application/x-fhir-query",
                                                   "expression": query}}
              for name, query in RECORD_QUERIES.items())],
        "url": questionnaire_url(),
        "version": version,
        "name": f"Covkb{policy.id}",
        "title": f"Documentation for policy {policy.id}, version {version}",
        "status": "active",
        "subjectType": ["Patient"],
        "item": groups,
    }


# ---------------------------------------------------------------------------
# Case → QuestionnaireResponse (the examples and the round trip)
# ---------------------------------------------------------------------------
_VALUE = {"boolean": "valueBoolean", "date": "valueDate", "decimal": "valueDecimal",
          "integer": "valueInteger", "string": "valueString"}


DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/"
CRD_CODES = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/coverage-information-codes"


def _answer(question: Question, value: Any, origin: Optional[dict] = None) -> dict:
    if question.type == "choice":
        answer = {"valueCoding": _coding(choice_system(question.path), value, _choices(question.path).get(value))}
    else:
        if isinstance(value, datetime.date):
            value = value.isoformat()
        if isinstance(value, Decimal):
            value = Decimal(value)  # the plain Decimal, not covkb's subclass
        answer = {_VALUE[question.type]: value}
    if origin:
        answer["extension"] = [origin]
    return answer


def _answered(question: Question, value: Any, origin: Optional[dict] = None) -> list[dict]:
    if value is None:
        return []
    if question.shape == "one":
        return [{"linkId": question.path, "answer": [_answer(question, value, origin)]}]
    items = [{"linkId": f"{question.path}.any", "answer": [_answer(Question("any", "boolean"), bool(value), origin)]}]
    if question.shape == "list" and value:
        items.append({"linkId": question.path, "answer": [_answer(question, v, origin) for v in value]})
    for element in value if question.parts else ():
        members = []
        for name, part in question.parts:
            member = element if question.shape == "lines" else getattr(element, name)
            values = member if question.shape == "lines" else [member]
            members.append({"linkId": part.path, "answer": [_answer(part, v, origin) for v in values]})
        items.append({"linkId": question.path, "item": members})
    return items


def _information_origin(author: Optional[dict]) -> Optional[dict]:
    """DTR information-origin of an answer a person entered (dtrx-1: with its author)."""
    if author is None:
        return None
    return {"url": DTR + "information-origin", "extension": [
        {"url": "source", "valueCode": "manual"},
        {"url": "author", "extension": [{"url": "practitioner", "valueReference": author}]}]}


def version_in_force(case: Case) -> Optional[str]:
    from covkb.decide import policy
    from covkb.facts import day

    return next((v for v, (start, end) in policy().versions.items()
                 if start <= day(case.date_of_service) <= end), None)


def questionnaire_response(case: Case, version: Optional[str] = None, ident: Optional[str] = None,
                           subject: Optional[dict] = None, author: Optional[dict] = None,
                           coverage: Optional[dict] = None) -> dict:
    """The case as a completed QuestionnaireResponse to questionnaire(version), by default
    the version in force on its date of service (the newest when none is). With a
    subject, author and coverage it carries what the DTR QuestionnaireResponse profile
    asks; the payer's plan facts, which the form does not ask, follow in a group `payer`."""
    from covkb.facts import field

    version = _version(version or version_in_force(case))
    by_path = {q.path: q for q in questions()}
    origin = _information_origin(author)
    groups = []
    asked = [(group["linkId"], [item["linkId"] for item in group["item"]]) for group in questionnaire(version)["item"]]
    asked.append(("payer", sorted(payer_fields())))
    for link, paths in asked:
        items = []
        for path in paths:
            question = by_path.get(path)
            if question is not None:
                items += _answered(question, field(case, question.path), origin)
        if items:
            groups.append({"linkId": link, "item": items})
    response: dict = {"resourceType": "QuestionnaireResponse", "id": ident or _safe_id(case.case_id)}
    if author is not None:
        response["meta"] = {"profile": [DTR + "dtr-questionnaireresponse"]}
        response["extension"] = [
            {"url": DTR + "qr-coverage", "valueReference": coverage or {"display": "the member's coverage"}},
            {"url": DTR + "intendedUse", "valueCodeableConcept": {"coding": [
                _coding(CRD_CODES, "withpa", "Include with prior authorization request")]}}]
    response.update({"questionnaire": questionnaire_canonical(version), "status": "completed"})
    if subject is not None:
        response["subject"] = subject
    if author is not None:
        response["authored"] = f"{case.date_of_service.isoformat()}T00:00:00Z"
        response["author"] = author
    response["item"] = groups
    return response


def _safe_id(text: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-." else "-" for c in text)
    return kept[:64] or "case"


# ---------------------------------------------------------------------------
# FHIR → case
# ---------------------------------------------------------------------------
@dataclass
class FhirCase:
    """A case read from FHIR: the Case, where each field came from, and the references
    a response points back to (patient, claim, insurer, requestor, coverage, items)."""

    case: Case
    sources: dict[str, str] = dataclass_field(default_factory=dict)
    context: dict[str, Any] = dataclass_field(default_factory=dict)

    def named_sources(self) -> dict[str, str]:
        """The sources worth naming in a reason: none when one resource gave everything."""
        return self.sources if len(set(self.sources.values())) > 1 else {}


class _Reading:
    """Field values gathered from several resources; two that disagree are an error.
    Also what must agree across resources: whose record each is about (subject), and
    which form each response answers."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.full_urls: dict[str, str] = {}       # Bundle entry fullUrl -> resource name
        self.patient: Optional[tuple[str, str]] = None   # (who, named where)
        self.forms: list[tuple[str, str]] = []    # (named where, version answered)

    def subject(self, where: str, reference: Any) -> None:
        """One more resource says whose record it is: all must name the same patient."""
        if reference is None:
            return
        target = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(target, str) or not target:
            return  # an identifier or a display only: nothing to compare
        who = self.full_urls.get(target) or _patient_key(target)
        if self.patient is None:
            self.patient = (who, where)
        elif self.patient[0] != who:
            raise _bad(where, target, f"expected the patient of {self.patient[1]} ({self.patient[0]}): "
                                      "a resource about another patient")

    def check_forms(self) -> None:
        """Each response answers the form of the version in force on the date of service."""
        from covkb.decide import policy

        served = self.values.get("date_of_service")
        if not self.forms or not isinstance(served, str):
            return
        in_force = [v for v, (start, end) in policy().versions.items()
                    if _day_text(start) <= served <= _day_text(end)]
        for where, version in self.forms:
            if in_force and version not in in_force:
                raise _bad(f"{where} questionnaire", f"{questionnaire_url()}|{version}",
                           f"expected the form of version {in_force[0]}, in force on {served}")

    def put(self, path: str, value: Any, source: str) -> None:
        if path in self.values and self.values[path] != value:
            raise InvalidCase(path, value, f"{source} disagrees with {self.sources[path]}, "
                                           f"which gives {_shown(self.values[path])}")
        if path not in self.values:
            self.values[path], self.sources[path] = value, source

    def raw_case(self) -> dict:
        raw: dict = {}
        for path, value in self.values.items():
            node = raw
            *parents, last = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return raw


def _shown(value: Any) -> str:
    return str(value) if isinstance(value, Decimal) else _encoder.encode(value).decode()


def _patient_key(reference: str) -> str:
    """A reference to a Patient as `Patient/id`, however written (relative, absolute,
    versioned); any other reference as given."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient":
        return f"Patient/{parts[-1]}"
    return reference


def _day_text(day: int) -> str:
    """covkb.facts.day's YYYYMMDD integer as YYYY-MM-DD."""
    return f"{day // 10000:04d}-{day // 100 % 100:02d}-{day % 100:02d}"


def _name(resource: dict, index: Optional[int] = None) -> str:
    kind = resource.get("resourceType")
    ident = resource.get("id")
    if isinstance(ident, str) and ident:
        return f"{kind}/{ident}"
    return f"{kind} (entry {index})" if index is not None else str(kind)


def _bad(where: str, value: Any, expected: str) -> InvalidCase:
    from covkb.case import _ABSENT

    return InvalidCase(where, _ABSENT if value is None else value, expected)


def case_from_fhir(obj: dict) -> FhirCase:
    """A QuestionnaireResponse or a Bundle as a validated Case with its sources.
    Raises InvalidCase naming the resource and element on bad FHIR."""
    kind = obj.get("resourceType") if isinstance(obj, dict) else None
    reading = _Reading()
    context: dict[str, Any] = {}
    if kind not in ("QuestionnaireResponse", "Bundle"):
        raise _bad("resourceType", kind, "expected a QuestionnaireResponse or a Bundle")
    try:
        if kind == "QuestionnaireResponse":
            _read_response(obj, _name(obj), reading)
        else:
            _read_bundle(obj, reading, context)
    except RecursionError:
        raise _bad(_name(obj), None, "items nested too deeply") from None
    reading.check_forms()
    try:
        case = from_object(reading.raw_case())
    except InvalidCase as error:
        source = _source_of(error.path, reading.sources)
        where = f" (from {source})" if source else ""
        given_by = REQUIRED_FROM.get(error.path) if not source else None
        missing = f": give it as {given_by}" if given_by else ""
        raise InvalidCase(error.path, error.value, f"{error.expected}{missing}{where}", error.case_id) from None
    return FhirCase(case, reading.sources, context)


@contextmanager
def sourced(fhir_case: FhirCase):
    """While inside, results and explanations name each fact's source resource."""
    from covkb.result import SOURCES

    token = SOURCES.set(fhir_case.named_sources())
    try:
        yield fhir_case.case
    finally:
        SOURCES.reset(token)


def _source_of(path: str, sources: dict[str, str]) -> Optional[str]:
    plain = path.split("[", 1)[0]
    while plain:
        if plain in sources:
            return sources[plain]
        plain = plain.rpartition(".")[0]
    return None


def _read_bundle(bundle: dict, reading: _Reading, context: dict) -> None:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise _bad("Bundle.entry", entries, "expected a list of entries")
    seen: dict[str, list[str]] = {}
    resources = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise _bad(f"Bundle.entry[{index}].resource", None, "expected a resource with a resourceType")
        resources.append((index, resource))
        name = _name(resource, index)
        seen.setdefault(resource["resourceType"], []).append(name)
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            reading.full_urls[full_url] = name
            context.setdefault("full_urls", {})[name] = full_url
            context.setdefault("entries", {})[name] = resource
    for kind in ("Patient", "Claim"):
        if len(seen.get(kind, ())) > 1:
            raise _bad(f"Bundle.entry ({', '.join(seen[kind])})", None,
                       f"expected at most one {kind}, found {len(seen[kind])}")
    if isinstance(bundle.get("identifier"), dict):
        context["bundle_identifier"] = bundle["identifier"]
    later = []
    for index, resource in resources:
        kind, name = resource["resourceType"], _name(resource, index)
        if kind == "Patient":
            context["patient"] = name
            reading.subject(name, {"reference": name})
            if "birthDate" in resource:
                birth = resource["birthDate"]
                if not isinstance(birth, str) or len(birth) != 10:
                    raise _bad(f"{name} birthDate", birth, "expected a full date YYYY-MM-DD")
                reading.put("member.birth_date", birth, name)
        elif kind == "Condition":
            reading.subject(f"{name} subject", resource.get("subject"))
            _read_condition(resource, name, reading)
        elif kind == "Observation":
            reading.subject(f"{name} subject", resource.get("subject"))
            later.append((resource, name))
        elif kind == "QuestionnaireResponse" and not _status_ignored(resource):
            _read_response(resource, name, reading)
        elif kind == "Claim":
            reading.subject(f"{name} patient", resource.get("patient"))
            _read_claim(resource, name, reading, context)
        elif kind == "Coverage":
            context.setdefault("coverage", name)
    for resource, name in later:  # once the date of service is known
        _read_observation(resource, name, reading)


def _codings(resource: dict, element: str, name: str) -> list[tuple[str, str]]:
    concept = resource.get(element)
    if concept is None:
        return []
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list) or not all(isinstance(c, dict) for c in codings):
        raise _bad(f"{name} {element}", concept, "expected a CodeableConcept with a coding list")
    pairs = [(c.get("system"), c.get("code")) for c in codings]
    for system, code in pairs:
        if not isinstance(system, (str, type(None))) or not isinstance(code, (str, type(None))):
            raise _bad(f"{name} {element}.coding", None, "expected system and code as strings")
    return pairs


def _list(node: dict, key: str, where: str) -> list:
    """node[key] as a list (absent: empty), or bad input naming where."""
    value = node.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"{where}.{key}", value, "expected a list")
    return value


def _status_ignored(resource: dict) -> bool:
    codes = [resource.get("status")]
    for element in ("clinicalStatus", "verificationStatus"):
        concept = resource.get(element)
        if isinstance(concept, dict) and isinstance(concept.get("coding"), list):
            codes += [c.get("code") for c in concept["coding"] if isinstance(c, dict)]
    return any(isinstance(code, str) and code in IGNORED_STATUS for code in codes)


def _concept_codes(resource: dict, element: str) -> set[str]:
    concept = resource.get(element)
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return {c.get("code") for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)} \
        if isinstance(codings, list) else set()


def _read_condition(resource: dict, name: str, reading: _Reading) -> None:
    if _status_ignored(resource):
        return
    verified = _concept_codes(resource, "verificationStatus")
    if verified and CONFIRMED not in verified or _concept_codes(resource, "clinicalStatus") & NOT_CURRENT:
        return  # unconfirmed, provisional, differential; resolved or inactive: asserts nothing
    for system, code in _codings(resource, "code", name):
        if system == ICD10CM and code in CONDITIONS:
            for path in CONDITIONS[code]:
                reading.put(path, True, name)


def _effective_day(resource: dict) -> Optional[str]:
    """The date an Observation is of (effective[x], else issued), as YYYY-MM-DD."""
    for key in ("effectiveDateTime", "effectiveInstant", "issued"):
        if isinstance(resource.get(key), str):
            return resource[key][:10]
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return period["start"][:10]
    return None


def _read_observation(resource: dict, name: str, reading: _Reading) -> None:
    if _status_ignored(resource) or resource.get("status") not in FINAL_OBSERVATION:
        return  # registered, preliminary, cancelled, unknown: no result to read
    served = reading.values.get("date_of_service")
    taken = _effective_day(resource)
    if taken and isinstance(served, str) and taken > served:
        return  # after the date of service: it cannot document the member then
    for system, code in _codings(resource, "code", name):
        if system != LOINC or code not in OBSERVATIONS:
            continue
        path, unit = OBSERVATIONS[code]
        quantity = resource.get("valueQuantity")
        if not isinstance(quantity, dict):
            raise _bad(f"{name} value[x]", None, f"expected a valueQuantity in {unit} for LOINC {code} ({path})")
        if "comparator" in quantity:
            raise _bad(f"{name} valueQuantity.comparator", quantity["comparator"], "expected an exact value")
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise _bad(f"{name} valueQuantity.value", value, "expected a number")
        system = quantity.get("system")
        if quantity.get("code") is not None:  # the coded unit, not its display text
            if system not in (UCUM, None):
                raise _bad(f"{name} valueQuantity.system", system, f"expected UCUM ({UCUM})")
            element, given = "code", quantity["code"]
        else:
            element, given = "unit", quantity.get("unit")
        if given != unit:
            raise _bad(f"{name} valueQuantity.{element}", given, f"expected {unit} for LOINC {code} ({path})")
        reading.put(path, value, name)
        return


def requested_codes() -> dict[tuple[str, str], str]:
    """(FHIR system, code) of every code kb/request.lp says asks for this policy's product,
    each with its kb system name."""
    from covkb.decide import policy

    return {(uri, code): system for (system,), code in policy().facts.get("requested_code", ())
            for uri in CODE_SYSTEMS[system]}


def _product_expected() -> str:
    from covkb.decide import policy

    facts = policy().facts
    [(product,)] = facts["requested_product"]
    codes = {}
    for (system,), code in facts["requested_code"]:
        codes.setdefault(system.upper(), []).append(code)
    return f"expected {product}: " + " or ".join(f"{system} {', '.join(c)}" for system, c in codes.items())


def _read_claim(resource: dict, name: str, reading: _Reading, context: dict) -> None:
    context["claim"] = name
    if resource.get("use") != "preauthorization":
        raise _bad(f"{name} use", resource.get("use"),
                   "expected preauthorization: this policy decides prior-authorization requests")
    wanted = requested_codes()
    for index, item in enumerate(_list(resource, "item", name)):
        where = f"{name} item[{index}].productOrService"
        codings = _codings(item, "productOrService", f"{name} item[{index}]") if isinstance(item, dict) else []
        if not any(pair in wanted for pair in codings):
            given = ", ".join(f"{system}|{code}" for system, code in codings) or None
            raise _bad(where, given, _product_expected())
    for element, key in (("insurer", "insurer"), ("provider", "requestor")):
        reference = resource.get(element)
        if isinstance(reference, dict):
            context[key] = reference
    if isinstance(resource.get("type"), dict):
        context["type"] = resource["type"]
    identifiers = resource.get("identifier")
    if isinstance(identifiers, list) and identifiers and isinstance(identifiers[0], dict):
        value = identifiers[0].get("value")
        if value is not None:
            reading.put("case_id", value, name)
    items = _list(resource, "item", name)
    context["items"] = [item.get("sequence") for item in items if isinstance(item, dict)]
    for index, item in enumerate(items):
        if isinstance(item, dict) and "servicedDate" in item:
            reading.put("date_of_service", item["servicedDate"], f"{name} item[{index}]")
    for insurance in _list(resource, "insurance", name):
        if isinstance(insurance, dict) and isinstance(insurance.get("coverage"), dict):
            context.setdefault("coverage_reference", insurance["coverage"])


# linkId → (question, role) for every question item of the Questionnaire
@lru_cache(maxsize=1)
def _link_ids() -> dict[str, tuple[Question, str]]:
    links: dict[str, tuple[Question, str]] = {}
    for question in questions():
        links[question.path] = (question, question.shape)
        if question.shape != "one":
            links[f"{question.path}.any"] = (question, "any")
        for _, part in question.parts:
            links[part.path] = (part, "part")
    return links


_ACCEPTED = {"boolean": ("valueBoolean",), "date": ("valueDate",),
             "decimal": ("valueDecimal", "valueInteger"), "integer": ("valueInteger",),
             "string": ("valueString",), "choice": ("valueCoding", "valueString")}


def _value(answer: Any, question: Question, where: str) -> Any:
    if not isinstance(answer, dict):
        raise _bad(where, answer, "expected an answer object")
    keys = [k for k in answer if k.startswith("value")]
    allowed = _ACCEPTED[question.type]
    if len(keys) != 1 or keys[0] not in allowed:
        raise _bad(f"{where}.answer", None, f"expected {' or '.join(allowed)} for a {question.type} item, "
                                            f"got {', '.join(keys) or 'no value'}")
    value = answer[keys[0]]
    if keys[0] == "valueCoding":
        value = value.get("code") if isinstance(value, dict) else None
    checks = {"valueBoolean": bool, "valueDate": str, "valueString": str, "valueCoding": str,
              "valueInteger": int, "valueDecimal": (int, Decimal)}
    if isinstance(value, bool) != (keys[0] == "valueBoolean") or not isinstance(value, checks[keys[0]]):
        raise _bad(f"{where}.{keys[0]}", value, f"not a valid {keys[0]}")
    return value


def _read_response(resource: dict, name: str, reading: _Reading) -> None:
    status = resource.get("status")
    if status == "entered-in-error":
        raise _bad(f"{name} status", "entered-in-error", "expected a response that stands")
    if status not in FINAL_RESPONSE:
        raise _bad(f"{name} status", status, f"expected {' or '.join(FINAL_RESPONSE)}: the response is not final")
    _read_form(resource, name, reading)
    reading.subject(f"{name} subject", resource.get("subject"))
    values: dict[str, Any] = {}
    said_any: dict[str, bool] = {}

    def answers(item: dict, question: Question) -> list:
        where = f"{name} item {item.get('linkId')}"
        return [_value(a, question, where) for a in _list(item, "answer", where)]

    def nested(item: dict) -> list[dict]:
        where = f"{name} item {item.get('linkId')}"
        inner = list(_list(item, "item", where))
        for answer in _list(item, "answer", where):
            if isinstance(answer, dict):
                inner += _list(answer, "item", f"{where}.answer")
        return inner

    def walk(items: Any) -> None:
        if not isinstance(items, list):
            raise _bad(f"{name} item", items, "expected a list of items")
        for item in items:
            if not isinstance(item, dict):
                raise _bad(f"{name} item", item, "expected an item object")
            link = item.get("linkId")
            if not isinstance(link, str):
                raise _bad(f"{name} item.linkId", link, "expected a string")
            known = _link_ids().get(link)
            if known is None:
                if item.get("answer"):
                    raise _bad(f"{name} item {link}", None, "not a question of the covkb questionnaire")
                walk(nested(item))
                continue
            question, role = known
            where = f"{name} item {link}"
            if role == "part":
                raise _bad(where, None, "expected inside a repetition of its group")
            if role == "any":
                got = answers(item, Question(link, "boolean"))
                if len(got) > 1:
                    raise _bad(where, None, "expected one answer")
                if got:
                    if question.path in said_any:
                        raise _bad(where, None, "answered twice")
                    said_any[question.path] = got[0]
                walk(nested(item))
            elif role == "one":
                got = answers(item, question)
                if len(got) > 1:
                    raise _bad(where, None, "expected one answer")
                if got:
                    if question.path in values:
                        raise _bad(where, None, "answered twice")
                    values[question.path] = got[0]
                walk(nested(item))
            elif role == "list":
                values.setdefault(question.path, []).extend(answers(item, question))
                walk(nested(item))
            else:
                values.setdefault(question.path, []).append(_repetition(item, question, name, nested))

    walk(_list(resource, "item", name))
    for path, value in values.items():
        if said_any.get(path) is False and value:
            raise _bad(f"{name} item {path}.any", False, f"but {path} has answers")
    for path, any_given in said_any.items():
        if not any_given and path not in values:
            values[path] = []
        elif any_given and not values.get(path):
            raise _bad(f"{name} item {path}.any", True, f"but no {path} is given")
    for path, value in values.items():
        reading.put(path, value, name)


def _read_form(resource: dict, name: str, reading: _Reading) -> None:
    """The form a response answers must be covkb's, of a version it publishes; which
    version the date of service wants is checked once the date is known."""
    form = resource.get("questionnaire")
    if form is None:
        return
    if not isinstance(form, str):
        raise _bad(f"{name} questionnaire", form, "expected a canonical URL")
    url, _, version = form.partition("|")
    if url != questionnaire_url():
        raise _bad(f"{name} questionnaire", form, f"expected covkb's form {questionnaire_url()}|<version>")
    if version:
        from covkb.decide import policy

        if version not in policy().versions:
            raise _bad(f"{name} questionnaire", form, f"expected a version of {', '.join(sorted(policy().versions))}")
        reading.forms.append((name, version))


def _repetition(item: dict, question: Question, name: str, nested) -> Any:
    """One repetition of a repeating group: a line of therapy's agents, or a record."""
    where = f"{name} item {question.path}"
    parts = dict((part.path, (member, part)) for member, part in question.parts)
    found: dict[str, list] = {}
    for inner in nested(item):
        link = inner.get("linkId") if isinstance(inner, dict) else None
        if not isinstance(link, str) or link not in parts:
            raise _bad(f"{where} item", link, f"expected one of {', '.join(parts)}")
        member, part = parts[link]
        found.setdefault(member, []).extend(_value(a, part, f"{where} item {link}")
                                            for a in _list(inner, "answer", f"{where} item {link}"))
    if question.shape == "lines":
        return found.get("agent", [])
    record = {}
    for member, values in found.items():
        if not values:
            continue
        if len(values) > 1:
            raise _bad(f"{where} item {question.path}.{member}", None, "expected one answer")
        record[member] = values[0]
    return record


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
              "valueCodeableConcept": {"coding": [_coding(X12_306, code, display)]}}]
    if number:
        parts.append({"url": "number", "valueString": number})
    parts += [{"url": "reasonCode", "valueCodeableConcept": reason} for reason in reasons]
    return {"url": PAS + "extension-reviewAction", "extension": parts}


def _review_reasons(result) -> list[dict]:
    """Why a request was not certified (each criterion not met) or pended (each field
    whose documentation is missing), coded in covkb's own code systems."""
    words = _words()
    if result.decision == "not_covered":
        return [{"coding": [_coding(f"{BASE}/CodeSystem/criterion", c.id, f"{c.id} not met")],
                 "text": f"{c.id} not met: {c.text}"} for c in result.criteria if c.status == "not_met"]
    if result.decision == "pending":
        return [{"coding": [_coding(f"{BASE}/CodeSystem/case-field", path, words.get(path, path))],
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
    adjudication = [{"category": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/adjudication",
                                                     "submitted")]},
                     "extension": [review_action(result.decision, certified, _review_reasons(result))]}]
    response = {
        "resourceType": "ClaimResponse",
        "meta": {"profile": [PAS + "profile-claimresponse"]},
        "identifier": [{"system": "urn:covkb:case-id", "value": result.case_id}],
        "status": "active",
        "type": (context or {}).get("type") or {"coding": [_coding(
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
            urls[name] = own if own.startswith("urn:uuid:") else _uuid(result.case_id, name)
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
    response["id"] = _uuid(result.case_id, "ClaimResponse", encode_result(result)).rsplit(":", 1)[-1]
    return {"resourceType": "Bundle", "meta": {"profile": [PAS + "profile-pas-response-bundle"]},
            "identifier": context.get("bundle_identifier") or {"system": "urn:covkb:case-id",
                                                                 "value": result.case_id},
            "type": "collection", "timestamp": response["created"],
            "entry": [{"fullUrl": f"urn:uuid:{response['id']}", "resource": response}]
                     + [{"fullUrl": url, "resource": resource} for url, resource in included]}


def encode_result(result) -> str:
    from covkb.render import as_json

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
    parts.append(sub("coverage-assertion-id", valueString=_uuid("coverage-assertion", encode_result(result), made)
                     .rsplit(":", 1)[-1]))
    if decision == "covered":
        parts.append(sub("satisfied-pa-id", valueString=result.case_id))
    return {"url": CRD_COVERAGE_INFORMATION, "extension": parts}



# ---------------------------------------------------------------------------
# Case → PAS-style request Bundle (the examples in facts/fhir/)
# ---------------------------------------------------------------------------
def _uuid(*parts: str) -> str:
    """A urn:uuid the same parts always give (name-based, RFC 4122 version 5)."""
    import uuid

    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join((BASE,) + parts))}"


def pas_bundle(case: Case) -> dict:
    """The case as a PAS request Bundle: the Claim first, then the resources it and they
    reference (Patient, Coverage, insurer, the ordering Practitioner), a Condition and
    Observations for what the record carries, and a DTR QuestionnaireResponse for the
    rest. Every fullUrl is a urn:uuid and every reference one of them."""
    from covkb.facts import field

    ident = _safe_id(case.case_id)
    url = {kind: _uuid(case.case_id, kind) for kind in
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
         "type": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/claim-type", "institutional")]},
         "patient": to_patient,
         "created": f"{case.date_of_service.isoformat()}T00:00:00Z",
         "insurer": {"reference": url["Organization"]},
         "provider": prescriber,
         "priority": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal")]},
         "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": url["Coverage"]}}],
         "item": [{"sequence": 1, "servicedDate": case.date_of_service.isoformat(),
                   "productOrService": {"coding": [_coding(HCPCS, "Q2055")], "text": "idecabtagene vicleucel"}}]},
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
                          "clinicalStatus": {"coding": [_coding(
                              "http://terminology.hl7.org/CodeSystem/condition-clinical", "active")]},
                          "verificationStatus": {"coding": [_coding(
                              "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed")]},
                          "subject": to_patient, "code": {"coding": [_coding(ICD10CM, code)]}})
        urls.append(url["Condition"])
    for path, code in ITEM_CODES.items():
        value = field(case, path)
        if value is not None:
            structured.add(path)
            unit = OBSERVATIONS[code][1]
            kind = path.split("_")[0]
            resources.append({"resourceType": "Observation", "id": f"{ident}-{kind}", "status": "final",
                              "code": {"coding": [_coding(LOINC, code, LOINC_DISPLAY[code])]},
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
