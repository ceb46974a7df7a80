"""Out: the DTR `Questionnaire` a clinician fills (built from the knowledge base's words and
the case schema, prepopulated over its launch context), and a case as the
`QuestionnaireResponse` that answers it. docs/fhir.md is the mapping. Plain dicts only."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Optional


from covkb.input.case import Case, InvalidCase
from covkb.fhir.codes import BASE, CONDITIONS, FINAL_OBSERVATION, ICD10CM, ITEM_CODES, LOINC, LOINC_DISPLAY, OBSERVATIONS, QUESTIONNAIRE_UNIT, UCUM


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
    """Every case field, in schema order, read from the msgspec structs of covkb.input.case."""
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


def coding(system: str, code: str, display: Optional[str] = None) -> dict:
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
# A Condition the reader would take (covkb.fhir.reading._read_condition), in FHIRPath.
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


def item_words() -> dict[str, str]:
    """Each case field's question, in the knowledge base's words."""
    from covkb.engine.reference import policy

    facts = policy().facts
    words = {field: text for field, text in facts.get("question_words", ())}
    words.update((field, text) for field, text in facts.get("field_words", ()))
    return words


def choice_system(path: str) -> str:
    """The code system of a choice field's answers (covkb's own)."""
    return f"{BASE}/CodeSystem/{path.replace('.', '-').replace('_', '-')}"


def _choices(path: str) -> dict[str, str]:
    from covkb.engine.reference import policy

    return {code: text for field, code, text in policy().facts.get("choice_words", ()) if field == path}


def _items(question: Question, required: bool = False) -> list[dict]:
    """The Questionnaire items asking for one case field, in the kb's words."""
    words = item_words()
    text = words.get(question.path, question.path)
    item: dict = {"linkId": question.path, "text": text[:1].upper() + text[1:], "type": question.type}
    code = ITEM_CODES.get(question.path)
    extensions = []
    if code:
        item["code"] = [coding(LOINC, code, LOINC_DISPLAY[code])]
        unit = OBSERVATIONS[code][1]
        extensions.append({"url": QUESTIONNAIRE_UNIT, "valueCoding": coding(UCUM, unit, unit)})
    if question.path in PREPOPULATE:
        extensions.append({"url": INITIAL_EXPRESSION, "valueExpression": {
            "language": "text/fhirpath", "expression": PREPOPULATE[question.path]}})
    if extensions:
        item["extension"] = extensions
    if required and question.type != "group":
        item["required"] = True
    if question.choices:
        shown = _choices(question.path)
        item["answerOption"] = [{"valueCoding": coding(choice_system(question.path), choice, shown.get(choice, choice))}
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
    from covkb.engine.reference import policy

    return f"{BASE}/Questionnaire/covkb-{policy().id}"


def questionnaire_canonical(version: Optional[str] = None) -> str:
    """The canonical reference to the form of one version: URL|version."""
    return f"{questionnaire_url()}|{_version(version)}"


def payer_fields() -> set[str]:
    """The payer's own facts (kb payer_field), never asked of a clinician."""
    from covkb.engine.reference import policy

    return {field for (field,) in policy().facts.get("payer_field", ())}


def _version(version: Optional[str]) -> str:
    from covkb.engine.reference import policy

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
    from covkb.engine.reference import policy as kb_policy

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
                {"url": "name", "valueCoding": coding("http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext",
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
        answer = {"valueCoding": coding(choice_system(question.path), value, _choices(question.path).get(value))}
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
    """The version in force on the case's date of service (kb/core.lp in_force/2)."""
    from covkb.engine.reference import in_force
    from covkb.engine.facts import day

    return in_force(day(case.date_of_service))


def questionnaire_response(case: Case, version: Optional[str] = None, ident: Optional[str] = None,
                           subject: Optional[dict] = None, author: Optional[dict] = None,
                           coverage: Optional[dict] = None) -> dict:
    """The case as a completed QuestionnaireResponse to questionnaire(version), by default
    the version in force on its date of service (the newest when none is). With a
    subject, author and coverage it carries what the DTR QuestionnaireResponse profile
    asks; the payer's plan facts, which the form does not ask, follow in a group `payer`."""
    from covkb.engine.facts import field

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
    response: dict = {"resourceType": "QuestionnaireResponse", "id": ident or safe_id(case.case_id)}
    if author is not None:
        response["meta"] = {"profile": [DTR + "dtr-questionnaireresponse"]}
        response["extension"] = [
            {"url": DTR + "qr-coverage", "valueReference": coverage or {"display": "the member's coverage"}},
            {"url": DTR + "intendedUse", "valueCodeableConcept": {"coding": [
                coding(CRD_CODES, "withpa", "Include with prior authorization request")]}}]
    response.update({"questionnaire": questionnaire_canonical(version), "status": "completed"})
    if subject is not None:
        response["subject"] = subject
    if author is not None:
        response["authored"] = f"{case.date_of_service.isoformat()}T00:00:00Z"
        response["author"] = author
    response["item"] = groups
    return response


def safe_id(text: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-." else "-" for c in text)
    return kept[:64] or "case"
