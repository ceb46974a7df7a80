"""A case file: its bytes read within the size limit, then read by its suffix."""

from __future__ import annotations

from pathlib import Path

from covkb.input.case import ABSENT, MAX_CASE_BYTES, Case, InvalidCase, from_object
from covkb.input.lp import parse_lp
from covkb.input.text import from_json, from_yaml


def load(path: Path) -> Case:
    """Read one case from a .json, .yaml/.yml or .lp file (- for JSON on standard input)."""
    data = read_limited(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return from_yaml(_text(data))
    if suffix == ".lp":
        return from_object(parse_lp(_text(data)))
    return from_json(data)


def read_limited(path: Path) -> bytes:
    """A case file's bytes (- for standard input), never reading more than one byte past
    the limit: /dev/zero or an endless pipe is refused, not read."""
    import sys

    if str(path) == "-":
        data = sys.stdin.buffer.read(MAX_CASE_BYTES + 1)
    else:
        with open(path, "rb") as source:
            data = source.read(MAX_CASE_BYTES + 1)
    if len(data) > MAX_CASE_BYTES:
        raise InvalidCase("", ABSENT, f"a case may hold at most {MAX_CASE_BYTES} bytes")
    return data


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidCase("", ABSENT, f"the file is not UTF-8 text (byte {error.start})") from None
