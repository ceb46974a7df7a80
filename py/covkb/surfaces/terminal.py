"""Text bound for a terminal: every character that is not printable is shown as its
escape (\\x1b, \\u202e), never sent raw, so no string from a case or a stored log row
can move the cursor, retitle the window or rewrite what a line says."""

from __future__ import annotations


def printable(text: str, lines: bool = True) -> str:
    """text with anything non-printable escaped; with lines, newlines are kept as the
    layout's own."""
    if (text.replace("\n", "") if lines else text).isprintable():
        return text
    return "".join(c if c.isprintable() or (lines and c == "\n") else _escape(c) for c in text)


def _escape(character: str) -> str:
    point = ord(character)
    if point < 0x100:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


def printable_values(value):
    """A decoded JSON value with each string made printable on one line (for a stored row
    rendered as text: its fields may hold anything an older covkb accepted)."""
    if isinstance(value, str):
        return printable(value, lines=False)
    if isinstance(value, list):
        return [printable_values(item) for item in value]
    if isinstance(value, dict):
        return {key: printable_values(item) for key, item in value.items()}
    return value


def to_the_second(stamp: str) -> str:
    """A logged ISO 8601 time as a person reads it, to the second: `2026-12-02 04:18:07 UTC`
    (the log keeps the full time; a value it cannot read is shown as it is)."""
    import datetime

    try:
        moment = datetime.datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return stamp
    if moment.utcoffset() == datetime.timedelta(0):
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.isoformat(sep=" ", timespec="seconds")
