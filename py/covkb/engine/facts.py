"""Validated case → clingo symbols (the case vocabulary of kb/core.lp).

Every string of a case becomes a clingo String symbol handed to the backend:
case data is never formatted into program text.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from decimal import Decimal
from functools import lru_cache
from typing import Iterator, Optional

from clingo import Function, Number, String, Symbol

from covkb.input.case import Case

# Boolean fields by their dotted path, read off the nested case objects.
BOOLEAN_FIELDS = (
    "plan.primary_coverage_criteria",
    "plan.group_specific_policy",
    "plan.walmart_associates_plan",
    "prescriber.specialist",
    "prescriber.approved_car_t_center",
    "diagnosis.multiple_myeloma",
    "diagnosis.relapsed",
    "diagnosis.refractory",
    "diagnosis.cns_involvement",
    "prior_allogeneic_transplant",
    "infections.hepatitis_b",
    "infections.hepatitis_c",
    "infections.hiv",
    "infections.uncontrolled",
    "organ_function_adequate",
    "compendium.fda_approved_indication",
)
NUMBER_FIELDS = (
    "member.age",
    "creatinine_clearance_ml_min",
    "lvef_percent",
    "dose_million_car_t_cells",
)
LIST_FIELDS = (
    "prior_lines",
    "prior_cell_therapies",
    "clinical_trials",
    "concurrent_therapies",
    "significant_cardiac_disease_dates",
)


class Symbols:
    """Builds the symbols of a fact's arguments: clingo.Symbol objects through the
    Python API, or clingo's symbol handles through covkb.engine.capi."""

    def __init__(self, number, string, constant):
        self.number = number
        # field paths and names recur across cases: build each string symbol once
        self.text = lru_cache(maxsize=1 << 16)(string)
        self.string = string
        self.constant = lru_cache(maxsize=256)(constant)
        # a name as written → the folded name's symbol
        self.name = lru_cache(maxsize=1 << 16)(lambda name: self.text(fold(name)))


def _by_part(paths: tuple[str, ...]) -> tuple[tuple[Optional[str], tuple[tuple[str, str], ...]], ...]:
    """Dotted paths grouped by the case part holding them (None: the case itself)."""
    groups: dict[Optional[str], list[tuple[str, str]]] = {}
    for path in paths:
        part, _, leaf = path.rpartition(".")
        groups.setdefault(part or None, []).append((leaf, path))
    return tuple((part, tuple(leaves)) for part, leaves in groups.items())


def _documented(case: Case, groups) -> Iterator[tuple[str, object]]:
    """(path, value) of each field in groups that the case documents."""
    for part, leaves in groups:
        node = case if part is None else getattr(case, part)
        if node is not None:
            for leaf, path in leaves:
                value = getattr(node, leaf)
                if value is not None:
                    yield path, value


_BOOLEANS = _by_part(BOOLEAN_FIELDS)
_NUMBERS = _by_part(NUMBER_FIELDS)


PUBLIC = Symbols(Number, String, Function)


def field(case: Case, path: str):
    """The value at a dotted path, or None when not documented."""
    node = case
    for part in _parts(path):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


@lru_cache(maxsize=1024)
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


_MARKS = str.maketrans("", "", "\u00ae\u2122")  # ® and ™
# Every Unicode dash a hyphen: U+2010–U+2015, minus sign, small and full-width hyphen-minus.
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"})
_SPACE = re.compile(r"\s+")
_PARTS = re.compile(r"^(?P<x>[^()]*[^\s()])\s*\((?P<y>[^()]+)\)$")
# What joins the parts of a name read compositionally: hyphens, spaces, `/`, `+`, commas.
_JOINS = re.compile(r"[\s\-/+,&]+")


def normalise(name: str) -> str:
    """A name as written, ® and ™ dropped (before NFKC, which spells ™ as "TM"),
    NFKC-normalised, every Unicode dash a hyphen, every Unicode space a space and white
    space collapsed; its letter case kept."""
    text = unicodedata.normalize("NFKC", name.translate(_MARKS)).translate(_MARKS).translate(_DASHES)
    return _SPACE.sub(" ", text).strip()


@lru_cache(maxsize=4096)  # names recur from case to case; bounded, whatever a server meets
def fold(name: str) -> str:
    """A name as the knowledge base matches it: normalised, then case-folded."""
    return normalise(name).casefold()


def compacted(folded: str) -> str:
    """A folded name without hyphens, spaces and `/`: the form regimen abbreviations match in."""
    return folded.replace("-", "").replace(" ", "").replace("/", "")


@lru_cache(maxsize=1 << 16)
def spellings(folded: str) -> tuple[tuple[str, str, str], ...]:
    """The forms of a folded name the knowledge base may match: (predicate, of, form) for
    its compacted form where it differs and, written `X (Y)`, each part and the part's."""
    names = [folded]
    forms = []
    written = _PARTS.match(folded)
    if written:
        names += [written["x"], written["y"].strip()]
        forms += [("part", folded, part) for part in names[1:]]
    forms += [("compact", name, compacted(name)) for name in names if compacted(name) != name]
    return tuple(forms)


class Vocabulary:
    """The words kb/names.lp declares for splitting a name: its tokens, the two whose letter
    case tells them apart, the qualifier words a name may be followed by, and the words
    that join a combination."""

    LIMIT = 32  # readings of one name beyond which it is read no way at all

    def __init__(self, tokens, cased, qualifiers, connectors):
        self.cased = frozenset(cased)
        self.qualifiers = frozenset(qualifiers)
        self.connectors = frozenset(connectors)
        self.tokens: dict[str, list[str]] = {}  # a token's compacted, folded form → the kb's tokens
        for token in tokens:
            self.tokens.setdefault(compacted(token.casefold()), []).append(token)
        self.longest = max((len(t) for t in self.tokens), default=0)

    def stripped(self, text: str) -> str:
        """The name less the qualifier words written after it ("Darzalex SC" → "Darzalex")."""
        words = text.split(" ")
        while len(words) > 1:
            for size in (2, 1):
                tail = " ".join(words[-size:]).casefold()
                if len(words) > size and tail in self.qualifiers:
                    words = words[:-size]
                    break
            else:
                break
        return " ".join(words)

    def readings(self, text: str) -> list[tuple[str, ...]]:
        """Every way of splitting a normalised name into declared tokens: pieces between
        joins, a piece that is a token whole read as that token, any other piece letter by
        letter. In a name written in one letter case, a cased token matches either case."""
        pieces = [p for p in _JOINS.split(text) if p and p.casefold() not in self.connectors]
        letters = [c for c in text if c.isalpha()]
        contrast = any(c.islower() for c in letters) and any(c.isupper() for c in letters)
        found: list[tuple[str, ...]] = []

        def pieces_from(index: int, sofar: tuple[str, ...]) -> bool:
            if len(found) > self.LIMIT:
                return False
            if index == len(pieces):
                found.append(sofar)
                return True
            whole = False
            for end in range(index + 1, len(pieces) + 1):
                run = compacted("".join(pieces[index:end]).casefold())
                for token in self.tokens.get(run, ()):
                    if token not in self.cased or not contrast or token == "".join(pieces[index:end]):
                        whole = whole or end == index + 1
                        pieces_from(end, sofar + (token,))
            if not whole:
                for split in self._letters(pieces[index], contrast):
                    pieces_from(index + 1, sofar + split)
            return True

        pieces_from(0, ())
        if len(found) > self.LIMIT:
            return []
        return sorted(set(r for r in found if len(r) >= 2))

    def _letters(self, piece: str, contrast: bool) -> list[tuple[str, ...]]:
        """Every split of one piece into tokens, character by character."""
        out: list[tuple[str, ...]] = []
        folded = piece.casefold()

        def walk(at: int, sofar: tuple[str, ...]) -> None:
            if len(out) > self.LIMIT:
                return
            if at == len(piece):
                out.append(sofar)
                return
            for size in range(1, min(self.longest, len(piece) - at) + 1):
                for token in self.tokens.get(folded[at:at + size], ()):
                    if token not in self.cased or not contrast or token == piece[at:at + size]:
                        walk(at + size, sofar + (token,))

        walk(0, ())
        return out


@lru_cache(maxsize=8)
def _vocabulary(directory) -> Vocabulary:
    import clingo

    control = clingo.Control(["--warn=none"])
    control.load(str(directory / "names.lp"))
    control.ground([("base", [])])

    def strings(name: str) -> list[str]:
        return [s.symbol.arguments[0].string for s in control.symbolic_atoms.by_signature(name, 1)]

    return Vocabulary(strings("token"), strings("cased"), strings("qualifier"), strings("connector"))


def vocabulary() -> Vocabulary:
    """The splitting words of the knowledge base in use (kb/names.lp), read once."""
    from covkb.engine.kb import kb_dir

    return _vocabulary(kb_dir().resolve())


@lru_cache(maxsize=1 << 16)
def name_forms(written: str) -> tuple[tuple, ...]:
    """The facts a name as written brings beyond its folded self: its compacted forms and
    parts (`X (Y)`, the name less its qualifier words) and its readings: ("compact", A, C),
    ("part", A, P), ("reading_size", A, R, N) and ("reading_token", A, R, I, T)."""
    words = vocabulary()
    text = normalise(written)
    folded = text.casefold()
    forms = set(spellings(folded))
    shapes = {text}
    less = words.stripped(text)
    if less != text:
        shapes.add(less)
        forms.add(("part", folded, less.casefold()))
    for shape in list(shapes):
        written_as = _PARTS.match(shape)
        if written_as and shape != text:
            for part in (written_as["x"], written_as["y"].strip()):
                shapes.add(part)
                forms.add(("part", folded, part.casefold()))
    for shape in shapes:
        fold_shape = shape.casefold()
        forms.update(spellings(fold_shape))
        if _PARTS.match(shape) or words.stripped(shape) != shape:
            continue  # read by its parts: a qualifier word is no token ("Dara IV" is no I and V)
        for number, reading in enumerate(words.readings(shape), start=1):
            forms.add(("reading_size", fold_shape, number, len(reading)))
            forms.update(("reading_token", fold_shape, number, index, token)
                         for index, token in enumerate(reading, start=1))
    return tuple(sorted(forms, key=repr))


def day(value: datetime.date) -> int:
    """A date as the integer YYYYMMDD."""
    return value.year * 10000 + value.month * 100 + value.day


def exact(value: Decimal) -> tuple[int, str]:
    """value as its integer part (floor) and "whole" or "fraction": exact against
    integer points, with no big integers whatever its number of decimal places."""
    value = Decimal(value)
    part = int(value)  # truncates exactly, whatever the context precision
    if part > value:
        part -= 1
    return part, "whole" if part == value else "fraction"


def case_facts(key: int, case: Case, version: Optional[str] = None) -> Iterator[Symbol]:
    """The facts of one case, keyed by `key`, as clingo symbols."""
    for name, arguments in case_rows(key, case, version, PUBLIC):
        yield Function(name, arguments)


def case_rows(key: int, case: Case, version: Optional[str], make: Symbols) -> Iterator[tuple[str, list]]:
    """The facts of one case, keyed by `key`: (predicate, argument symbols) built by `make`."""
    number, text, name = make.number, make.text, make.name
    k = number(key)
    true, false = make.constant("true"), make.constant("false")
    yield "case", [k]
    yield "case_id", [k, make.string(case.case_id)]
    yield "date_of_service", [k, number(day(case.date_of_service))]
    if version is not None:
        yield "version_requested", [k, text(version)]
    for path, value in _documented(case, _BOOLEANS):
        yield "bool", [k, text(path), true if value else false]
    for path, value in _documented(case, _NUMBERS):
        part, rest = exact(value)
        yield "number", [k, text(path), number(part), make.constant(rest)]
    if case.member is not None and case.member.birth_date is not None:
        yield "date", [k, text("member.birth_date"), number(day(case.member.birth_date))]
    for path in LIST_FIELDS:
        if getattr(case, path) is not None:
            yield "listed", [k, text(path)]
    names = set()
    for index, line in enumerate(case.prior_lines or (), start=1):
        i = number(index)
        yield "prior_line", [k, i]
        for agent in line:
            names.add(agent)
            yield "agent", [k, i, name(agent)]
    for product in case.prior_cell_therapies or ():
        names.add(product)
        yield "cell_therapy", [k, name(product)]
    for therapy in case.clinical_trials or ():
        names.add(therapy)
        yield "trial", [k, name(therapy)]
    for therapy in case.concurrent_therapies or ():
        names.add(therapy.agent)
        yield "concurrent", [k, name(therapy.agent), make.constant(therapy.purpose)]
    for fact in {f for written in names for f in name_forms(written)}:
        yield fact[0], [k] + [text(a) if isinstance(a, str) else number(a) for a in fact[1:]]
    for when in case.significant_cardiac_disease_dates or ():
        yield "cardiac", [k, number(day(when))]
    if case.compendium is not None and case.compendium.nccn_category is not None:
        yield "nccn", [k, text(case.compendium.nccn_category)]
