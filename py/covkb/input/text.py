"""Case text, read within bounds: JSON with every number exact and each key once, YAML
through the safe loader with exact decimals, capped nesting and bounded aliases."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

import msgspec

from covkb.input.case import ABSENT, JSON_DECODER, MAX_CASE_BYTES, MAX_DEPTH, MAX_YAML_NODES, Case, InvalidCase, Unwieldy, case_id_of, dotted, from_object, written_number


def parse_json(text: bytes | str) -> Any:
    """Parse JSON text, keeping every number exact."""
    if len(text) > MAX_CASE_BYTES:
        raise InvalidCase("", ABSENT, f"a case may hold at most {MAX_CASE_BYTES} bytes")
    if isinstance(text, bytes) and text.startswith(b"\xef\xbb\xbf"):
        text = text[3:]
    try:
        raw = JSON_DECODER.decode(text)
    except msgspec.DecodeError as error:
        raise InvalidCase("", ABSENT, f"not valid JSON ({error})") from None
    except UnicodeDecodeError:
        raise InvalidCase("", ABSENT, "the text is not valid UTF-8") from None
    except RecursionError:
        raise InvalidCase("", ABSENT, f"objects and lists may be nested at most {MAX_DEPTH} deep") from None
    if _strings_written(text) != _strings_held(raw):
        _refuse_repeated_key(text, case_id_of(raw))
    return raw


def _strings_written(text: bytes | str) -> int:
    """How many strings (keys too) the JSON text writes; exact unless it holds a '\\\\'."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    if b"\\\\" in text:  # '\\"' would be miscounted as an escaped quote: count exactly
        return sum(1 for _ in _STRING.finditer(text))
    return (text.count(b'"') - text.count(b'\\"')) // 2


# A JSON string; scanned from the start, every '"' outside a string opens one.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def _strings_held(raw: Any) -> int:
    """How many strings (keys too) a decoded value holds: fewer than written when an object
    gives a key twice, the fast decoder keeping only the last. Refuses deep nesting."""
    count, level, depth = 0, [raw], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise InvalidCase("", ABSENT, f"objects and lists may be nested at most {MAX_DEPTH} deep",
                              case_id_of(raw))
        inner = []
        for node in level:
            if isinstance(node, dict):
                count += len(node)
                node = node.values()
            elif not isinstance(node, list):
                continue
            for value in node:
                if isinstance(value, str):
                    count += 1
                elif isinstance(value, (dict, list)):
                    inner.append(value)
        level = inner
    return count


class _Pairs(list):
    """An object's (key, value) pairs as written, repeats and all."""


def _refuse_repeated_key(text: bytes | str, case_id: Optional[str]) -> None:
    """Name the first key an object gives twice (the fast decoder keeps only the last)."""
    import json

    def walk(node: Any, path: str) -> None:
        if isinstance(node, _Pairs):
            seen = set()
            for key, value in node:
                if key in seen:
                    raise InvalidCase(dotted(f"{path}.{key}"), ABSENT,
                                      "the key is given twice; a case gives each field once", case_id)
                seen.add(key)
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")

    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs, parse_float=str, parse_int=str, parse_constant=str)
    except (ValueError, RecursionError):  # read by the fast decoder, so only a miscount
        return
    walk(pairs, "")


def from_json(text: bytes | str) -> Case:
    return from_object(parse_json(text))


def _yaml_loader():
    import yaml

    class ExactLoader(yaml.SafeLoader):
        """YAML's safe loader with floats kept as exact decimals, dates kept as their text,
        nesting capped, aliases held to a small expansion and each key given once."""

        def compose_node(self, parent, index):
            self.depth = getattr(self, "depth", 0) + 1
            try:
                if self.depth > MAX_DEPTH:
                    raise InvalidCase("", ABSENT, f"objects and lists may be nested at most {MAX_DEPTH} deep")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def compose_document(self):
            node = super().compose_document()
            _expanded(node, {})  # before anything is built from it
            return node

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, bool)) and key in seen:
                    raise InvalidCase(str(key), ABSENT, "the key is given twice (lines "
                                      f"{seen[key] + 1} and {key_node.start_mark.line + 1}); "
                                      "a case gives each field once")
                if isinstance(key, (str, int, bool)):
                    seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    def exact_float(loader, node):
        text = loader.construct_scalar(node)
        try:
            return written_number(text)
        except InvalidOperation:
            return Decimal(str(loader.construct_yaml_float(node)))

    def bounded_int(loader, node):
        # more digits than a number may hold: refused by its field, never parsed whole
        number = written_number(loader.construct_scalar(node)) if loader.construct_scalar(node).isdigit() else None
        return number if isinstance(number, Unwieldy) else loader.construct_yaml_int(node)

    ExactLoader.add_constructor("tag:yaml.org,2002:float", exact_float)
    # the case wants the date's text, as JSON gives it, and checks it exists itself
    ExactLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)
    ExactLoader.add_constructor("tag:yaml.org,2002:int", bounded_int)
    # YAML 1.1 reads 1e41 and 4.5e1 as text; a number with an exponent is a number, as in JSON
    ExactLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                      re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                      list("-+0123456789"))
    return yaml, ExactLoader


def from_yaml(text: bytes | str) -> Case:
    yaml, loader = _yaml_loader()
    if len(text) > MAX_CASE_BYTES:
        raise InvalidCase("", ABSENT, f"a case may hold at most {MAX_CASE_BYTES} bytes")
    try:
        raw = yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        raise InvalidCase("", ABSENT, f"not valid YAML ({str(error).splitlines()[0]})") from None
    return from_object(raw)


def _expanded(node, sizes: dict) -> tuple[int, int]:
    """(nodes, depth) of a YAML node with every alias expanded, each shared node counted
    once per use; refused beyond MAX_YAML_NODES or MAX_DEPTH (an alias bomb)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    nodes, depth = 1, 0
    if isinstance(node.value, list):
        for item in node.value:
            for part in (item if isinstance(item, tuple) else (item,)):
                size, inner = _expanded(part, sizes)
                nodes, depth = nodes + size, max(depth, inner)
        depth += 1
    if nodes > MAX_YAML_NODES:
        raise InvalidCase("", ABSENT, f"the YAML expands (aliases included) to more than "
                                       f"{MAX_YAML_NODES} values")
    if depth > MAX_DEPTH:
        raise InvalidCase("", ABSENT, f"objects and lists may be nested at most {MAX_DEPTH} deep")
    sizes[id(node)] = (nodes, depth)
    return nodes, depth
