"""Reading clingo's text form of a ground term into Python values.

A model is read back one `str(symbol)` per atom (two calls into clingo) rather than one
call per argument; the parts after the case key repeat across cases and are parsed once.
Function terms become tuples `(name, *arguments)`, strings `str`, numbers `int`.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+)|(?P<name>[_a-z][A-Za-z0-9_\']*)|(?P<punct>[(),]))')
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), text)


def parse(text: str) -> Any:
    """The value of one ground term in clingo's text form."""
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text)]
    value, index = _term(tokens, 0)
    if index != len(tokens):
        raise ValueError(f"unexpected text after term: {text!r}")
    return value


def parse_arguments(text: str) -> tuple:
    """The arguments of a term's text after its opening parenthesis, e.g. `"3a",met)`."""
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text)]
    arguments, index = _arguments(tokens, 0)
    return tuple(arguments)


def _term(tokens, index):
    kind, token = tokens[index]
    if kind == "string":
        return _unescape(token[1:-1]), index + 1
    if kind == "number":
        return int(token), index + 1
    if kind == "name":
        if index + 1 < len(tokens) and tokens[index + 1][1] == "(":
            arguments, index = _arguments(tokens, index + 2)
            return (token, *arguments), index
        return (token,), index + 1
    if token == "(":
        arguments, index = _arguments(tokens, index + 1)
        return ("", *arguments), index
    raise ValueError(f"unexpected {token!r}")


def _arguments(tokens, index):
    arguments = []
    if tokens[index][1] == ")":
        return arguments, index + 1
    while True:
        value, index = _term(tokens, index)
        arguments.append(value)
        token = tokens[index][1]
        index += 1
        if token == ")":
            return arguments, index
        if token != ",":
            raise ValueError(f"expected ',' or ')', got {token!r}")
