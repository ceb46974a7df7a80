"""In: FHIR R4 → a case. A DTR `QuestionnaireResponse`, or a `Bundle` (a PAS Claim bundle or a
collection) holding Patient, Condition, Observation, Claim and a QuestionnaireResponse,
becomes a Case, each field with the resource it came from; only a final response, about
one patient, to covkb's form, in a prior-authorization request for the product
kb/request.lp names. docs/fhir.md is the mapping and the rules. Plain dicts only: no FHIR
library is imported at run time."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field as dataclass_field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Optional


from covkb.input.case import Case, InvalidCase, from_object
from covkb.fhir.codes import CODE_SYSTEMS, CONDITIONS, CONFIRMED, FINAL_OBSERVATION, FINAL_RESPONSE, ICD10CM, IGNORED_STATUS, LOINC, NOT_CURRENT, OBSERVATIONS, REQUIRED_FROM, UCUM, encoder
from covkb.fhir.questionnaire import Question, questionnaire_url, questions


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
        import datetime

        from covkb.engine.facts import day as yyyymmdd
        from covkb.engine.reference import in_force

        served = self.values.get("date_of_service")
        if not self.forms or not isinstance(served, str):
            return
        try:
            day = datetime.date.fromisoformat(served) if len(served) == 10 else None
        except ValueError:
            day = None
        if day is None:  # the case's own validation names the date
            return
        current = in_force(yyyymmdd(day))
        for where, version in self.forms:
            if current is not None and version != current:
                raise _bad(f"{where} questionnaire", f"{questionnaire_url()}|{version}",
                           f"expected the form of version {current}, in force on {served}")

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
    return str(value) if isinstance(value, Decimal) else encoder.encode(value).decode()


def _patient_key(reference: str) -> str:
    """A reference to a Patient as `Patient/id`, however written (relative, absolute,
    versioned); any other reference as given."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient":
        return f"Patient/{parts[-1]}"
    return reference


def _name(resource: dict, index: Optional[int] = None) -> str:
    kind = resource.get("resourceType")
    ident = resource.get("id")
    if isinstance(ident, str) and ident:
        return f"{kind}/{ident}"
    return f"{kind} (entry {index})" if index is not None else str(kind)


def _bad(where: str, value: Any, expected: str) -> InvalidCase:
    from covkb.input.case import ABSENT

    return InvalidCase(where, ABSENT if value is None else value, expected)


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
    from covkb.results.result import SOURCES

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
    from covkb.engine.reference import policy

    return {(uri, code): system for (system,), code in policy().facts.get("requested_code", ())
            for uri in CODE_SYSTEMS[system]}


def _product_expected() -> str:
    from covkb.engine.reference import policy

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
            if role in ("any", "one"):
                # "any": the boolean gate of a list (is there any?); "one": a single answer
                said, asked = (said_any, Question(link, "boolean")) if role == "any" else (values, question)
                got = answers(item, asked)
                if len(got) > 1:
                    raise _bad(where, None, "expected one answer")
                if got:
                    if question.path in said:
                        raise _bad(where, None, "answered twice")
                    said[question.path] = got[0]
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
        from covkb.engine.reference import policy

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
