"""FHIR R4 in and out: the one place covkb's case and result meet HL7 Da Vinci shapes.

In: a DTR `QuestionnaireResponse`, or a `Bundle` (a PAS Claim bundle or a collection)
holding Patient, Condition, Observation, Claim and a QuestionnaireResponse → a Case,
each field with the resource it came from. Out: the `Questionnaire` built from the
knowledge base's criteria and the case schema, a PAS `ClaimResponse`, and the CRD
coverage-information extension. docs/fhir.md is the mapping table. Plain dicts only:
no FHIR library is imported at run time.
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


def _items(question: Question, required: bool = False) -> list[dict]:
    """The Questionnaire items asking for one case field."""
    item: dict = {"linkId": question.path, "text": question.path, "type": question.type}
    code = ITEM_CODES.get(question.path)
    if code:
        item["code"] = [_coding(LOINC, code, LOINC_DISPLAY[code])]
        unit = OBSERVATIONS[code][1]
        item["extension"] = [{"url": QUESTIONNAIRE_UNIT, "valueCoding": _coding(UCUM, unit, unit)}]
    if required:
        item["required"] = True
    if question.choices:
        item["answerOption"] = [{"valueCoding": {"code": choice}} for choice in question.choices]
    if question.shape == "one":
        return [item]
    item["repeats"] = True
    item["enableWhen"] = [{"question": f"{question.path}.any", "operator": "=", "answerBoolean": True}]
    if question.parts:
        item["item"] = [_items(part, required=True)[0] for _, part in question.parts]
        if question.shape == "lines":  # a line of therapy holds one or more agents
            item["item"][0]["repeats"] = True
    ask_any = {"linkId": f"{question.path}.any", "text": f"{question.path}: any?", "type": "boolean"}
    return [ask_any, item]


def questionnaire_url(version: str) -> str:
    from covkb.decide import policy

    return f"urn:covkb:questionnaire:{policy().id}:{version}"


def _version(version: Optional[str]) -> str:
    from covkb.decide import policy

    known = sorted(policy().versions)
    if version is None:
        return known[-1]
    if version not in known:
        raise InvalidCase("version", version, f"expected one of {', '.join(known)}")
    return version


def questionnaire(version: Optional[str] = None) -> dict:
    """The R4 Questionnaire for a policy version (default: the newest): one group per
    criterion with the policy's words, every case field exactly once as an item whose
    linkId is the field's path, placed under the first criterion that reads it."""
    from covkb.decide import policy as kb_policy

    policy = kb_policy()
    version = _version(version)
    by_path = {q.path: q for q in questions()}
    placed: dict[str, str] = {}
    groups = [{"linkId": "request", "text": "The request", "type": "group", "required": True,
               "item": _items(by_path["case_id"], True) + _items(by_path["date_of_service"], True)}]
    placed.update(case_id="request", date_of_service="request")
    reads = policy.reads.get(version, {})
    for ident, text in policy.criteria[version]:
        wanted = [q.path for q in questions() if q.path in reads.get(ident, ())]
        new = [path for path in wanted if path not in placed]
        items = [item for path in new for item in _items(by_path[path])]
        elsewhere = [f"{path} (criterion {placed[path]})" for path in wanted if path in placed]
        if elsewhere:
            items.append({"linkId": f"criterion-{ident}.also", "type": "display",
                          "text": "Also reads " + ", ".join(elsewhere)})
        placed.update((path, ident) for path in new)
        groups.append({"linkId": f"criterion-{ident}", "prefix": ident, "text": text,
                       "type": "group", "item": items})
    rest = [item for q in questions() if q.path not in placed for item in _items(q)]
    if rest:
        groups.append({"linkId": "other", "type": "group", "item": rest,
                       "text": f"Read by no criterion of version {version}: plan, compendium, "
                               "Policy Guidelines values and history"})
    return {
        "resourceType": "Questionnaire",
        "id": f"covkb-{policy.id}-{version}",
        "url": questionnaire_url(version),
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


def _answer(question: Question, value: Any) -> dict:
    if question.type == "choice":
        return {"valueCoding": {"code": value}}
    if isinstance(value, datetime.date):
        value = value.isoformat()
    if isinstance(value, Decimal):
        value = Decimal(value)  # the plain Decimal, not covkb's subclass
    return {_VALUE[question.type]: value}


def _answered(question: Question, value: Any) -> list[dict]:
    if value is None:
        return []
    if question.shape == "one":
        return [{"linkId": question.path, "answer": [_answer(question, value)]}]
    items = [{"linkId": f"{question.path}.any", "answer": [{"valueBoolean": bool(value)}]}]
    if question.shape == "list" and value:
        items.append({"linkId": question.path, "answer": [_answer(question, v) for v in value]})
    for element in value if question.parts else ():
        members = []
        for name, part in question.parts:
            member = element if question.shape == "lines" else getattr(element, name)
            answers = [_answer(part, v) for v in member] if question.shape == "lines" else [_answer(part, member)]
            members.append({"linkId": part.path, "answer": answers})
        items.append({"linkId": question.path, "item": members})
    return items


def questionnaire_response(case: Case, version: Optional[str] = None, ident: Optional[str] = None) -> dict:
    """The case as a completed QuestionnaireResponse to questionnaire(version), by default
    the version in force on its date of service (the newest when none is)."""
    from covkb.decide import policy
    from covkb.facts import day, field

    if version is None:
        version = next((v for v, (start, end) in policy().versions.items()
                        if start <= day(case.date_of_service) <= end), None)

    by_path = {q.path: q for q in questions()}
    groups = []
    for group in questionnaire(version)["item"]:
        items = []
        for item in group["item"]:
            question = by_path.get(item["linkId"])
            if question is not None:
                items += _answered(question, field(case, question.path))
        if items:
            groups.append({"linkId": group["linkId"], "item": items})
    return {"resourceType": "QuestionnaireResponse", "id": ident or _safe_id(case.case_id),
            "questionnaire": questionnaire_url(_version(version)), "status": "completed",
            "item": groups}


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
    """Field values gathered from several resources; two that disagree are an error."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

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
        seen.setdefault(resource["resourceType"], []).append(_name(resource, index))
    for kind in ("Patient", "Claim"):
        if len(seen.get(kind, ())) > 1:
            raise _bad(f"Bundle.entry ({', '.join(seen[kind])})", None,
                       f"expected at most one {kind}, found {len(seen[kind])}")
    for index, resource in resources:
        kind, name = resource["resourceType"], _name(resource, index)
        if kind == "Patient":
            context["patient"] = name
            if "birthDate" in resource:
                birth = resource["birthDate"]
                if not isinstance(birth, str) or len(birth) != 10:
                    raise _bad(f"{name} birthDate", birth, "expected a full date YYYY-MM-DD")
                reading.put("member.birth_date", birth, name)
        elif kind == "Condition":
            _read_condition(resource, name, reading)
        elif kind == "Observation":
            _read_observation(resource, name, reading)
        elif kind == "QuestionnaireResponse" and not _status_ignored(resource):
            _read_response(resource, name, reading)
        elif kind == "Claim":
            _read_claim(resource, name, reading, context)
        elif kind == "Coverage":
            context.setdefault("coverage", name)


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


def _read_condition(resource: dict, name: str, reading: _Reading) -> None:
    if _status_ignored(resource):
        return
    for system, code in _codings(resource, "code", name):
        if system == ICD10CM and code in CONDITIONS:
            for path in CONDITIONS[code]:
                reading.put(path, True, name)


def _read_observation(resource: dict, name: str, reading: _Reading) -> None:
    if _status_ignored(resource):
        return
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
        given = quantity.get("code") if quantity.get("system") == UCUM else quantity.get("unit")
        if given is None:
            given = quantity.get("unit")
        if given != unit:
            raise _bad(f"{name} valueQuantity.unit", given, f"expected {unit} for LOINC {code} ({path})")
        reading.put(path, value, name)
        return


def _read_claim(resource: dict, name: str, reading: _Reading, context: dict) -> None:
    context["claim"] = name
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
    if resource.get("status") == "entered-in-error":
        raise _bad(f"{name} status", "entered-in-error", "expected a response that stands")
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


def review_action(decision: str) -> dict:
    """The PAS reviewAction extension for a decision (X12 306 code)."""
    code, display = REVIEW_ACTIONS[decision]
    return {"url": PAS + "extension-reviewAction",
            "extension": [{"url": PAS + "extension-reviewActionCode",
                           "valueCodeableConcept": {"coding": [_coding(X12_306, code, display)]}}]}


def claim_response(result, context: Optional[dict] = None,
                   created: Optional[datetime.datetime] = None) -> dict:
    """The result as a PAS ClaimResponse: outcome complete, the reason in processNote,
    each item adjudicated with the PAS reviewAction code of the decision."""
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
    adjudication = [{"category": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/adjudication",
                                                     "submitted")]},
                     "extension": [review_action(result.decision)]}]
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
        "outcome": "complete",
        "disposition": _reason(result),
        "item": [{"itemSequence": sequence, "noteNumber": [n["number"] for n in notes],
                  "adjudication": adjudication} for sequence in sequences],
        "processNote": notes,
    }
    if context and context.get("claim"):
        response["request"] = {"reference": context["claim"]}
    if context and context.get("requestor"):
        response["requestor"] = context["requestor"]
    if result.decision == "covered":
        response["preAuthRef"] = result.case_id
    return response


# Fields whose absence CRD names as info-needed rather than documentation.
INFO_NEEDED = {"prescriber.specialist": "performer", "prescriber.approved_car_t_center": "location"}


def coverage_information(result, context: Optional[dict] = None,
                         date: Optional[datetime.date] = None) -> dict:
    """The result as the CRD coverage-information extension."""
    def sub(url: str, **value) -> dict:
        return {"url": url, **value}

    coverage = _reference(context, "coverage", "") if (context or {}).get("coverage") else \
        _reference(context, "coverage_reference", f"the coverage of request {result.case_id}")
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
            parts.append(sub("questionnaire", valueCanonical=questionnaire_url(result.version or _version(None))))
    else:
        parts += [sub("covered", valueCode="conditional"), sub("pa-needed", valueCode="conditional")]
    parts.append(sub("reason", valueCodeableConcept={"text": _reason(result)}))
    parts.append(sub("date", valueDate=(date or datetime.date.today()).isoformat()))
    parts.append(sub("coverage-assertion-id", valueString=result.case_id))
    if decision == "covered":
        parts.append(sub("satisfied-pa-id", valueString=result.case_id))
    return {"url": CRD_COVERAGE_INFORMATION, "extension": parts}



# ---------------------------------------------------------------------------
# Case → PAS-style request Bundle (the examples in facts/fhir/)
# ---------------------------------------------------------------------------
def pas_bundle(case: Case) -> dict:
    """The case as a PAS-style request Bundle: Claim, Patient, Coverage, insurer,
    Condition and Observations for what they carry, a QuestionnaireResponse for the rest."""
    from covkb.facts import field

    ident = _safe_id(case.case_id)
    patient = {"resourceType": "Patient", "id": f"{ident}-patient"}
    birth = field(case, "member.birth_date")
    if birth is not None:
        patient["birthDate"] = birth.isoformat()
    structured = {"case_id", "date_of_service", "member.birth_date"}
    resources = [
        {"resourceType": "Claim", "id": f"{ident}-claim",
         "identifier": [{"system": "urn:covkb:case-id", "value": case.case_id}],
         "status": "active", "use": "preauthorization",
         "type": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/claim-type", "institutional")]},
         "patient": {"reference": f"Patient/{ident}-patient"},
         "created": f"{case.date_of_service.isoformat()}T00:00:00Z",
         "insurer": {"reference": f"Organization/{ident}-insurer"},
         "provider": {"display": "ordering provider"},
         "priority": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal")]},
         "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/{ident}-coverage"}}],
         "item": [{"sequence": 1, "servicedDate": case.date_of_service.isoformat(),
                   "productOrService": {"coding": [_coding("https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
                                                           "Q2055")],
                                        "text": "idecabtagene vicleucel"}}]},
        patient,
        {"resourceType": "Coverage", "id": f"{ident}-coverage", "status": "active",
         "beneficiary": {"reference": f"Patient/{ident}-patient"},
         "payor": [{"reference": f"Organization/{ident}-insurer"}]},
        {"resourceType": "Organization", "id": f"{ident}-insurer", "name": "payer"},
    ]
    if field(case, "diagnosis.multiple_myeloma"):
        code = "C90.02" if field(case, "diagnosis.relapsed") else "C90.00"
        structured.update(CONDITIONS[code])
        resources.append({"resourceType": "Condition", "id": f"{ident}-myeloma",
                          "subject": {"reference": f"Patient/{ident}-patient"},
                          "code": {"coding": [_coding(ICD10CM, code)]}})
    for path, code in ITEM_CODES.items():
        value = field(case, path)
        if value is not None:
            structured.add(path)
            unit = OBSERVATIONS[code][1]
            resources.append({"resourceType": "Observation", "id": f"{ident}-{path.split('_')[0]}", "status": "final",
                              "code": {"coding": [_coding(LOINC, code, LOINC_DISPLAY[code])]},
                              "subject": {"reference": f"Patient/{ident}-patient"},
                              "valueQuantity": {"value": Decimal(value), "unit": unit, "system": UCUM, "code": unit}})
    response = questionnaire_response(case, ident=f"{ident}-dtr")
    for group in response["item"]:
        group["item"] = [item for item in group["item"] if item["linkId"] not in structured]
    response["item"] = [group for group in response["item"] if group["item"]]
    resources.append(response)
    return {"resourceType": "Bundle", "id": f"{ident}-request", "type": "collection",
            "timestamp": f"{case.date_of_service.isoformat()}T00:00:00Z",
            "entry": [{"fullUrl": f"urn:covkb:{r['resourceType']}/{r['id']}", "resource": r} for r in resources]}
