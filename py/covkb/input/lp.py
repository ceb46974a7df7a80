"""A case written as ground facts (.lp) → the same object a JSON case decodes to.

Only facts of the case vocabulary below are read; a rule, constraint, directive
or any other predicate is refused with its line before anything is grounded.
The facts are read here, by this module's own tokenizer: the file is never
handed to clingo as program text.

    case_id("PA-1").
    date_of_service("2025-11-03").
    value("prescriber.specialist", true).          % any scalar field by dotted path
    value("creatinine_clearance_ml_min", "45.01"). % decimals as strings
    prior_line(1, "lenalidomide").                 % agent of prior line 1
    prior_cell_therapy("ide-cel").
    clinical_trial("cilta-cel").
    concurrent_therapy("fludarabine", lymphodepletion).
    cardiac_disease_date("2025-06-01").
    none("prior_cell_therapies").                  % a documented empty list
"""

from __future__ import annotations

import re
from decimal import InvalidOperation
from typing import Any

from covkb.input.case import InvalidCase, MAX_CASE_BYTES, MAX_DEPTH, Unwieldy, written_number

VOCABULARY = {
    "case_id": 1,
    "date_of_service": 1,
    "value": 2,
    "prior_line": 2,
    "prior_cell_therapy": 1,
    "clinical_trial": 1,
    "concurrent_therapy": 2,
    "cardiac_disease_date": 1,
    "none": 1,
}
LIST_OF = {
    "prior_cell_therapy": "prior_cell_therapies",
    "clinical_trial": "clinical_trials",
    "cardiac_disease_date": "significant_cardiac_disease_dates",
}

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r]+)
  | (?P<newline>\n)
  | (?P<comment>%[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?[0-9]+)
  | (?P<name>[a-z][A-Za-z0-9_]*)
  | (?P<punct>[(),.])
""", re.X | re.S)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}


def _block_comment(text: str, position: int, line: int) -> tuple[int, int]:
    """Where a block comment opened at position ends, and the line there, read as clingo
    reads it: block comments nest, and inside one a '%' not followed by '*' hides the rest
    of its line; one not closed is refused (clingo refuses it too)."""
    opened, depth = line, 0
    while position < len(text):
        if text.startswith("%*", position):
            depth += 1
            position += 2
        elif text.startswith("*%", position):
            depth -= 1
            position += 2
            if depth == 0:
                return position, line
        elif text[position] == "%":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
        else:
            line += text[position] == "\n"
            position += 1
    raise InvalidCase(f"line {opened}", "%*", "the block comment opened here is not closed with *%")


def _tokens(text: str):
    line, position = 1, 0
    while position < len(text):
        if text.startswith("%*", position):
            position, line = _block_comment(text, position, line)
            continue
        match = _TOKEN.match(text, position)
        if match is None:
            snippet = text[position:position + 20].split("\n")[0]
            raise InvalidCase(f"line {line}", snippet,
                              "not a fact of the case vocabulary (rules, directives and "
                              "other syntax are refused)")
        kind, token = match.lastgroup, match.group()
        if kind == "string":
            yield line, "string", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)),
                                         token[1:-1])
        elif kind in ("number", "name", "punct"):
            yield line, kind, token
        line += token.count("\n")
        position = match.end()


def _facts(text: str):
    tokens = list(_tokens(text))
    index = 0

    def take(*kinds):
        nonlocal index
        if index >= len(tokens):
            last = tokens[-1][0] if tokens else 1
            raise InvalidCase(f"line {last}", tokens[-1][2] if tokens else "",
                              "the fact is not finished with '.'")
        line, kind, token = tokens[index]
        if kind not in kinds and token not in kinds:
            raise InvalidCase(f"line {line}", token, f"expected {' or '.join(kinds)}")
        index += 1
        return line, kind, token

    while index < len(tokens):
        line, _, name = take("name")
        args: list[Any] = []
        if index < len(tokens) and tokens[index][2] == "(":
            take("(")
            while True:
                _, kind, token = take("string", "number", "name")
                args.append(_integer(token) if kind == "number" else
                            (_Constant(token) if kind == "name" else token))
                _, _, token = take(",", ")")
                if token == ")":
                    break
        take(".")
        if VOCABULARY.get(name) != len(args):
            known = ", ".join(f"{n}/{a}" for n, a in VOCABULARY.items())
            raise InvalidCase(f"line {line}", f"{name}/{len(args)}",
                              f"not in the case vocabulary ({known})")
        yield line, name, args


class _Constant(str):
    """A bare constant such as true or lymphodepletion."""


def _integer(token: str) -> Any:
    # more digits than a number may hold: refused by its field, never parsed whole
    number = written_number(token)
    return number if isinstance(number, Unwieldy) else int(token)


def _scalar(value: Any) -> Any:
    if isinstance(value, _Constant):
        return {"true": True, "false": False}.get(value, str(value))
    if isinstance(value, str):
        try:
            number = written_number(value)
        except InvalidOperation:
            return value
        return number if number.is_finite() else value
    return value


def parse_lp(text: str) -> dict:
    """The case object the facts describe (validated afterwards like any JSON case)."""
    if len(text) > MAX_CASE_BYTES:
        raise InvalidCase("", text[:20], f"a case may hold at most {MAX_CASE_BYTES} bytes")
    case: dict[str, Any] = {}
    lines: dict[int, list[str]] = {}
    given: dict[str, int] = {}  # each field once, as in JSON (reading 3)
    for line, name, args in _facts(text):
        once = {"case_id": name, "date_of_service": name, "value": str(args[0]),
                "none": f"none({args[0]})"}.get(name)
        if once is not None:
            if once in given:
                raise InvalidCase(f"line {line}", once, f"is given twice (first on line {given[once]}); "
                                                        "a case gives each field once")
            given[once] = line
        if name in ("case_id", "date_of_service"):
            case[name] = str(args[0])
        elif name == "value":
            path = str(args[0])
            node = case
            *parents, leaf = path.split(".")
            if len(parents) >= MAX_DEPTH:
                raise InvalidCase(f"line {line}", path, "not a field path of the case")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise InvalidCase(f"line {line}", path, "not a field path of the case")
            if path in ("case_id", "date_of_service", "compendium.nccn_category",
                        "compendium.indication", "member.birth_date"):
                node[leaf] = args[1] if not isinstance(args[1], _Constant) else str(args[1])
            else:
                node[leaf] = _scalar(args[1])
        elif name == "prior_line":
            if not isinstance(args[0], int) or args[0] < 1:
                raise InvalidCase(f"line {line}", args[0], "a prior line is numbered from 1")
            lines.setdefault(args[0], []).append(str(args[1]))
        elif name == "concurrent_therapy":
            case.setdefault("concurrent_therapies", []).append(
                {"agent": str(args[0]), "purpose": str(args[1])})
        elif name == "none":
            case.setdefault(str(args[0]), [])
        else:
            case.setdefault(LIST_OF[name], []).append(str(args[0]))
    if lines:
        case["prior_lines"] = [lines[number] for number in sorted(lines)]
    return case
