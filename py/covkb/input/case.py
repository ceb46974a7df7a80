"""The case: decoding and validating one prior-authorization request (reading 3).

File → validated `Case`. Nothing here knows the policy: only the fields, their
types and ranges, and the cross-field checks that make a case well formed.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Annotated, Any, Literal, Optional

import msgspec

# Limits of what one case may hold (documented in docs/case-format.md).
# A number's written form: at most this many significant digits and this exponent (reading 4).
MAX_DIGITS = 40
MAX_EXPONENT = 40
MAX_NUMBER = Decimal(1_000_000_000)
MAX_STRING = 512
MAX_ITEMS = 200
MAX_CASE_BYTES = 1_000_000
# Objects and lists inside one another: a case needs 3 (case, prior_lines, a line), a PAS
# Bundle holding a DTR QuestionnaireResponse 19 (a line of therapy's agent answered by a
# person, whose information-origin names its author).
MAX_DEPTH = 24
# YAML aliases: the case as expanded may hold at most this many nodes.
MAX_YAML_NODES = 10_000

PURPOSES = ("lymphodepletion", "bridging", "supportive", "anti_cancer")
NCCN_CATEGORIES = ("1", "2A", "2B", "3")
# NUL would end a string early inside clingo, other control characters can rewrite what a
# terminal shows, and a lone surrogate is no UTF-8 text: no string may hold any (reading 3).
# Tab is white space, which names fold.
NO_NUL = r"^[^\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]*$"
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING, pattern=NO_NUL)]


class InvalidCase(ValueError):
    """A case that cannot be decided as given; `path` names the field. `errors` holds every
    error the case has, this one first; `message` says them all on one line."""

    def __init__(self, path: str, value: Any, expected: str, case_id: Optional[str] = None,
                 hint: str = "", errors: Optional[list["InvalidCase"]] = None):
        self.path = path
        self.value = value
        self.expected = expected
        self.case_id = case_id
        self.hint = hint  # e.g. "did you mean `diagnosis.relapsed`?"
        self.errors = errors or [self]
        super().__init__(self.message)

    @property
    def one(self) -> str:
        shown = "" if self.value is ABSENT else f" = {_show(self.value)}"
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.path or '(case)'}{shown}: {self.expected}{hint}"

    @property
    def message(self) -> str:
        return "; ".join(error.one for error in self.errors)


ABSENT = object()


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        text = str(value)
    else:
        try:
            text = msgspec.json.encode(value).decode()
        except (TypeError, ValueError, msgspec.EncodeError):  # a lone surrogate cannot be encoded
            text = repr(value)
        except RecursionError:
            text = "[...]" if isinstance(value, list) else "{...}"
    return text if len(text) <= 80 else text[:77] + "..."


# Exact decimal numbers: JSON floats are decoded straight to Decimal, never to
# binary floating point, so 45.01 stays 45.01.
class Number(Decimal):
    """A non-negative decimal number, compared exactly."""

    low: Decimal = Decimal(0)
    high: Decimal = MAX_NUMBER
    low_open = False
    expected = "a number >= 0"


class Percent(Number):
    high = Decimal(100)
    expected = "a number from 0 to 100"


class Positive(Number):
    low_open = True
    expected = "a number > 0"


class Unwieldy(Decimal):
    """A number written with more digits or a larger exponent than a case may hold: kept
    only to be refused with its field's name."""


_WRITTEN = re.compile(r"[+-]?(?P<whole>[0-9_]*)(?:\.(?P<fraction>[0-9_]*))?(?:[eE](?P<exponent>[+-]?[0-9_]+))?")
_UNWIELDY = f"expected at most {MAX_DIGITS} significant digits and an exponent of at most ±{MAX_EXPONENT}"


def written_number(text: str) -> Decimal:
    """A number as JSON, YAML or .lp writes it, exactly; an Unwieldy one when its written
    form holds more than MAX_DIGITS significant digits or an exponent beyond ±MAX_EXPONENT."""
    form = _WRITTEN.fullmatch(text)
    if form is not None:
        digits = ((form["whole"] or "") + (form["fraction"] or "")).replace("_", "").lstrip("0")
        exponent = (form["exponent"] or "0").replace("_", "").lstrip("+-").lstrip("0")
        if len(digits) > MAX_DIGITS or len(exponent) > 2 or int(exponent or "0") > MAX_EXPONENT:
            return Unwieldy(text.replace("_", ""))
    return Decimal(text)


def _decode_number(kind: type, obj: Any) -> Number:
    if isinstance(obj, bool) or not isinstance(obj, (int, Decimal)):
        got = {"str": "a string", "bool": "true or false", "list": "a list", "dict": "an object",
               "NoneType": "null"}.get(type(obj).__name__, type(obj).__name__)
        raise ValueError(f"expected {kind.expected}, got {got}")
    if isinstance(obj, int) and obj.bit_length() > 4 * MAX_DIGITS:
        raise ValueError(_UNWIELDY)
    value = Decimal(obj)
    if not value.is_finite():
        raise ValueError(f"expected {kind.expected}")
    # a Decimal given directly, not written: the same bounds on its digits and exponent
    shape = value.as_tuple()
    if isinstance(obj, Unwieldy) or len(shape.digits) > MAX_DIGITS \
            or not -2 * MAX_EXPONENT <= shape.exponent <= MAX_EXPONENT:
        raise ValueError(_UNWIELDY)
    if value < kind.low or (kind.low_open and value == kind.low) or value > kind.high:
        raise ValueError(f"expected {kind.expected}"
                         + (f" and at most {kind.high}" if kind.high == MAX_NUMBER else ""))
    return kind(value)


def _dec_hook(kind: type, obj: Any) -> Any:
    if isinstance(kind, type) and issubclass(kind, Number):
        return _decode_number(kind, obj)
    raise NotImplementedError(kind)


def schema_hook(kind: type) -> dict:
    if isinstance(kind, type) and issubclass(kind, Number):
        schema: dict = {"type": "number", "description": kind.expected}
        schema["exclusiveMinimum" if kind.low_open else "minimum"] = float(kind.low)
        schema["maximum"] = float(kind.high)
        return schema
    raise NotImplementedError(kind)


class _Part(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Plan(_Part):
    primary_coverage_criteria: Optional[bool] = None
    group_specific_policy: Optional[bool] = None
    walmart_associates_plan: Optional[bool] = None


class Member(_Part):
    birth_date: Optional[datetime.date] = None
    age: Optional[Annotated[int, msgspec.Meta(ge=0, le=130)]] = None


class Prescriber(_Part):
    specialist: Optional[bool] = None
    approved_car_t_center: Optional[bool] = None


class Diagnosis(_Part):
    multiple_myeloma: Optional[bool] = None
    relapsed: Optional[bool] = None
    refractory: Optional[bool] = None
    cns_involvement: Optional[bool] = None


class Infections(_Part):
    hepatitis_b: Optional[bool] = None
    hepatitis_c: Optional[bool] = None
    hiv: Optional[bool] = None
    uncontrolled: Optional[bool] = None


class ConcurrentTherapy(_Part):
    agent: NonEmpty
    purpose: Literal[PURPOSES]


class Compendium(_Part):
    fda_approved_indication: Optional[bool] = None
    nccn_category: Optional[Literal[NCCN_CATEGORIES]] = None
    indication: Optional[Annotated[str, msgspec.Meta(max_length=MAX_STRING, pattern=NO_NUL)]] = None


Items = Annotated[list, msgspec.Meta(max_length=MAX_ITEMS)]
Line = Annotated[list[NonEmpty], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]


class Case(_Part):
    case_id: NonEmpty
    date_of_service: datetime.date
    plan: Optional[Plan] = None
    member: Optional[Member] = None
    prescriber: Optional[Prescriber] = None
    diagnosis: Optional[Diagnosis] = None
    prior_lines: Optional[Annotated[list[Line], msgspec.Meta(max_length=MAX_ITEMS)]] = None
    prior_cell_therapies: Optional[Annotated[list[NonEmpty], msgspec.Meta(max_length=MAX_ITEMS)]] = None
    clinical_trials: Optional[Annotated[list[NonEmpty], msgspec.Meta(max_length=MAX_ITEMS)]] = None
    concurrent_therapies: Optional[Annotated[list[ConcurrentTherapy], msgspec.Meta(max_length=MAX_ITEMS)]] = None
    prior_allogeneic_transplant: Optional[bool] = None
    creatinine_clearance_ml_min: Optional[Number] = None
    lvef_percent: Optional[Percent] = None
    significant_cardiac_disease_dates: Optional[Annotated[list[datetime.date], msgspec.Meta(max_length=MAX_ITEMS)]] = None
    infections: Optional[Infections] = None
    organ_function_adequate: Optional[bool] = None
    dose_million_car_t_cells: Optional[Positive] = None
    compendium: Optional[Compendium] = None


def case_schema() -> dict:
    """The JSON Schema of a case."""
    return msgspec.json.schema(Case, schema_hook=schema_hook)


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------
JSON_DECODER = msgspec.json.Decoder(float_hook=written_number)
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_FIELD = re.compile(r"`([^`]*)`")


def _lookup(raw: Any, path: str) -> Any:
    node = raw
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, index = part
        try:
            node = node[key] if key else node[int(index)]
        except (KeyError, IndexError, TypeError, ValueError):
            return ABSENT
    return node


def dotted(path: str) -> str:
    return path[1:] if path.startswith(".") else path


def case_id_of(raw: Any) -> Optional[str]:
    if isinstance(raw, dict) and isinstance(raw.get("case_id"), str):
        return raw["case_id"]
    return None


def from_object(raw: Any) -> Case:
    """Validate an already parsed JSON/YAML value as a case."""
    case_id = case_id_of(raw)
    try:
        case = msgspec.convert(raw, Case, dec_hook=_dec_hook, strict=True)
    except msgspec.ValidationError as error:
        raise _every_error(raw, _explain(raw, str(error), case_id)) from None
    _check_dates(case)
    return case


def _explain(raw: Any, text: str, case_id: Optional[str]) -> InvalidCase:
    match = _AT.match(text)
    message, path = match.group("msg"), match.group("path") or ""
    name = _FIELD.search(message)
    if message.startswith("Object contains unknown field") and name:
        full = f"{path}.{name.group(1)}"
        return InvalidCase(dotted(full), _lookup(raw, full), "unknown field", case_id,
                           _did_you_mean(dotted(full)))
    if message.startswith("Object missing required field") and name:
        full = f"{path}.{name.group(1)}"
        return InvalidCase(dotted(full), ABSENT, "required field is missing", case_id)
    return InvalidCase(dotted(path), _lookup(raw, path), _plain(message, path), case_id)


_TYPE_WORDS = {
    "bool": "true or false", "str": "a string", "int": "an integer", "float": "a number",
    "array": "a list", "object": "an object", "date": "a date YYYY-MM-DD", "null": "null",
    "decimal": "a decimal number",
}


_CHOICES = {"purpose": PURPOSES, "nccn_category": NCCN_CATEGORIES}


def _plain(message: str, path: str = "") -> str:
    """msgspec's message in a reviewer's words."""
    if message.startswith("Invalid enum value"):
        choices = _CHOICES.get(path.rsplit(".", 1)[-1])
        if choices:
            return "expected one of " + ", ".join(choices)
    if "matching regex" in message:
        return "expected text without control characters (tab aside) or lone surrogates"
    message = (message.replace("`array` of length >= 1", "a non-empty list")
               .replace("`str` of length >= 1", "a non-empty string"))
    message = re.sub(r"`array` of length <= (\d+)", r"a list of at most \1 items", message)
    message = re.sub(r"`str` of length <= (\d+)", r"a string of at most \1 characters", message)
    if message.startswith("Invalid RFC3339 encoded date"):
        return "expected a calendar date YYYY-MM-DD that exists"
    typed = re.match(r"Expected `([^`]*)`, got `([^`]*)`$", message)
    if typed:
        wanted = [_TYPE_WORDS.get(t.strip(), t.strip()) for t in typed.group(1).split("|")]
        wanted = [w for w in wanted if w != "null"]
        got = _TYPE_WORDS.get(typed.group(2), typed.group(2))
        return f"expected {' or '.join(wanted)}, got {got}"
    return message[:1].lower() + message[1:] if message else "invalid value"


def _check_dates(case: Case) -> None:
    service = case.date_of_service
    found = []
    if case.member and case.member.birth_date and case.member.birth_date > service:
        found.append(InvalidCase("member.birth_date", case.member.birth_date.isoformat(),
                                 f"must not be after date_of_service {service.isoformat()}", case.case_id))
    for index, day in enumerate(case.significant_cardiac_disease_dates or ()):
        if day > service:
            found.append(InvalidCase(f"significant_cardiac_disease_dates[{index}]", day.isoformat(),
                                     f"must not be after date_of_service {service.isoformat()}", case.case_id))
    if found:
        raise _together(found)


# ---------------------------------------------------------------------------
# Every error at once: msgspec stops at the first, so an invalid case is walked field by
# field, each value converted alone, and every error reported.
# ---------------------------------------------------------------------------
def _together(found: list[InvalidCase]) -> InvalidCase:
    first = found[0]
    return InvalidCase(first.path, first.value, first.expected, first.case_id, first.hint, found)


def _every_error(raw: Any, first: InvalidCase) -> InvalidCase:
    found = [first]
    if isinstance(raw, dict):
        _walk(raw, Case, "", raw, first.case_id, found)
    paths, unique = set(), []
    for error in found:
        if error.path not in paths:
            paths.add(error.path)
            unique.append(error)
    return _together(unique)


def _part_of(kind: Any) -> Optional[type]:
    """The struct a field holds (through Optional and Annotated), if it holds one."""
    import typing

    while typing.get_origin(kind) in (typing.Union, typing.Annotated) or type(kind).__name__ == "UnionType":
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), None)
    return kind if isinstance(kind, type) and issubclass(kind, _Part) else None


def _walk(node: dict, kind: type, prefix: str, raw: Any, case_id: Optional[str],
          found: list[InvalidCase]) -> None:
    fields = {f.name: f for f in msgspec.structs.fields(kind)}
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            found.append(InvalidCase(path, value, "unknown field", case_id, _did_you_mean(path, list(fields))))
            continue
        part = _part_of(fields[key].type)
        if part is not None and isinstance(value, dict):
            _walk(value, part, path, raw, case_id, found)
            continue
        try:
            msgspec.convert(value, fields[key].type, dec_hook=_dec_hook, strict=True)
        except msgspec.ValidationError as error:
            text = str(error)
            at = f"$.{path}"
            text = text.replace(" - at `$", f" - at `{at}", 1) if " - at `$" in text else f"{text} - at `{at}`"
            found.append(_explain(raw, text, case_id))
    for name, info in fields.items():
        if info.required and name not in node:
            path = f"{prefix}.{name}" if prefix else name
            found.append(InvalidCase(path, ABSENT, "required field is missing", case_id))


def _known_paths() -> list[str]:
    paths = []

    def walk(kind: type, prefix: str) -> None:
        for info in msgspec.structs.fields(kind):
            path = f"{prefix}{info.name}"
            part = _part_of(info.type)
            if part is not None:
                walk(part, path + ".")
            else:
                paths.append(path)

    walk(Case, "")
    return paths


def _did_you_mean(path: str, siblings: Optional[list[str]] = None) -> str:
    """A known field close to an unknown one: a sibling first (one the unknown name opens,
    as `lvef` opens `lvef_percent`, or one spelled nearly alike), else a field anywhere of
    (nearly) that name (`relapsed` given at the top is `diagnosis.relapsed`)."""
    import difflib

    prefix, _, leaf = path.rpartition(".")
    if siblings is None:
        siblings = [p.rpartition(".")[2] for p in _known_paths() if p.rpartition(".")[0] == _indexless(prefix)]
    # a field written without its unit or qualifier: `lvef` is `lvef_percent`
    near = [s for s in siblings if s.startswith(leaf.lower() + "_")]
    if len(near) != 1:
        near = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.7)
    if near:
        return f"did you mean `{prefix + '.' if prefix else ''}{near[0]}`?"
    leaves = {p.rpartition(".")[2]: p for p in _known_paths()}
    near = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.8)
    return f"did you mean `{leaves[near[0]]}`?" if near else ""


def _indexless(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)
