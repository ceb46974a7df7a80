"""Facts → clingo → the atoms the knowledge base shows, per case.

Many cases are grounded together in one program, each under its own key; the
knowledge base is stratified, so grounding decides and the one model is read back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import clingo

from covkb import capi
from covkb.case import Case
from covkb.facts import PUBLIC, Symbols, case_rows
from covkb.terms import parse_arguments


def kb_dir() -> Path:
    """The knowledge base: $COVKB_KB, the copy installed with the package, or the source tree's kb/."""
    if "COVKB_KB" in os.environ:
        return Path(os.environ["COVKB_KB"])
    here = Path(__file__).resolve().parent
    for candidate in (here / "kb", here.parents[1] / "kb"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("knowledge base kb/ not found; set COVKB_KB")


def kb_files(directory: Optional[Path] = None) -> list[Path]:
    return sorted((directory or kb_dir()).glob("*.lp"))


def kb_sha256(directory: Optional[Path] = None) -> str:
    """SHA-256 over every kb/ file, name and content: the knowledge base a result came from."""
    return _kb_sha256((directory or kb_dir()).resolve())


@lru_cache(maxsize=8)
def _kb_sha256(directory: Path) -> str:
    digest = _sha256()
    for path in kb_files(directory):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _sha256():
    """A SHA-256 hash object. CPython's own implementation gives the digest hashlib gives
    without loading OpenSSL, which costs `covkb check` about 5 ms; hashlib where it is absent."""
    try:
        from _sha2 import sha256  # CPython 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    return sha256()


@dataclass
class Shown:
    """What the knowledge base shows about one case."""

    version: Optional[str] = None
    decision: Optional[str] = None
    label: Optional[str] = None
    rule: Optional[str] = None
    contract: Optional[str] = None
    asserted: list[str] = field(default_factory=list)  # the compendium pathway's assertions
    status: dict[str, str] = field(default_factory=dict)
    # reason terms as (clingo's text, parsed term); the text orders them
    because: dict[str, list[tuple[str, tuple]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    requested: Optional[str] = None  # the version forced with --policy-version
    document: dict[str, list[str]] = field(default_factory=dict)
    advisories: list[tuple[str, tuple]] = field(default_factory=list)
    # a not-met criterion's remedy kind, and for one met with time what its date is from
    remedy: dict[str, str] = field(default_factory=dict)
    on_date: dict[str, list[tuple]] = field(default_factory=dict)
    fails: dict[str, set[str]] = field(default_factory=dict)
    # fields still open once a criterion's remedy is applied
    remedy_open: dict[str, list[str]] = field(default_factory=dict)
    # the rule whose words give the reason (kb/core.lp: the decided rule's, or other words)
    reason_rule: Optional[str] = None
    # unknown criteria whose settling could change the decision, and the names they name
    can_change: set[str] = field(default_factory=set)
    decisive_names: set[str] = field(default_factory=set)
    for_resubmission: set[str] = field(default_factory=set)  # fields that cannot change it
    all_of: set[str] = field(default_factory=set)  # one_of groups needing every field
    unasserted: list[str] = field(default_factory=list)  # NCCN categories that are no pathway


@dataclass
class Policy:
    """The policy as the knowledge base states it: its id, versions and criteria."""

    id: str = ""
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)
    criteria: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # words for explanations: decision rules, contracts, labels, remedies
    words: dict[tuple[str, str], str] = field(default_factory=dict)
    remedies: dict[tuple[str, str], str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    # version -> criterion -> the case fields it reads (kb reads/3)
    reads: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    kb_sha256: str = ""
    # the explanation vocabulary of kb/words.lp: predicate name → its atoms' arguments
    facts: dict[str, list[tuple]] = field(default_factory=dict)
    # tables the result writer derives from the above, built once (covkb.result.tables)
    derived: dict = field(default_factory=dict, repr=False, compare=False)


def _control(directory: Optional[Path]) -> clingo.Control:
    control = clingo.Control(["--warn=none"])
    for path in kb_files(directory):
        control.load(str(path))
    return control


# Fewer cases than this are decided by clingo unless COVKB_ENGINE=compiled: compiling
# kb/ takes seconds once per process, which one `covkb check` must not pay.
COMPILED_FROM = 200


ENGINES = ("auto", "compiled", "clingo")


class EngineChoice(Exception):
    """COVKB_ENGINE names no engine: a usage error."""


def engine_name() -> str:
    """COVKB_ENGINE: clingo (clingo solves everything), compiled, or auto (the default:
    compiled for batches of COMPILED_FROM cases or more). Anything else is EngineChoice."""
    name = os.environ.get("COVKB_ENGINE", "auto")
    if name not in ENGINES:
        raise EngineChoice(f"COVKB_ENGINE={name!r} names no engine; use one of {', '.join(ENGINES)} "
                           "(auto, the default: compiled for big batches, clingo for a few cases)")
    return name


@dataclass(frozen=True)
class Choice:
    """Which engine decides `count` cases at a time, why, and the compiler's refusal of kb/."""

    engine: str  # "compiled" or "clingo"
    why: str
    refused: Optional[str] = None


def choose(count: int, directory: Optional[Path] = None) -> Choice:
    """Build the compiled engine now (before batch workers fork) when deciding `count`
    cases at a time will use it; which engine decides and why."""
    name = engine_name()
    if name == "clingo":
        return Choice("clingo", "clingo decides (COVKB_ENGINE=clingo)")
    if name != "compiled" and count < COMPILED_FROM:
        return Choice("clingo", f"clingo decides: {count} case(s) at a time, fewer than the {COMPILED_FROM} "
                      "from which the compiled engine pays for compiling kb/")
    from covkb import engine

    where = directory or kb_dir()
    if engine.compiled(where) is None:
        refused = engine.refusal(where)
        return Choice("clingo", f"clingo decides: the compiled engine refuses kb/ ({refused})", refused)
    return Choice("compiled", "the compiled engine decides (kb/ ground once); clingo decides any case "
                  "beyond its slots for prior lines, names and dates")


def prepare(count: int, directory: Optional[Path] = None) -> str:
    """choose(), said in a sentence."""
    return choose(count, directory).why


def solve(cases: Iterable[tuple[int, Case, Optional[str]]],
          directory: Optional[Path] = None) -> tuple[Policy, dict[int, Shown]]:
    """Decide every (key, case, requested version): compiled when the engine allows and
    kb/ compiles exactly, else by clingo in one grounding."""
    name = engine_name()
    cases = list(cases)
    decided = None
    if name != "clingo" and (name == "compiled" or len(cases) >= COMPILED_FROM):
        from covkb import engine

        where = directory or kb_dir()
        compiled = engine.compiled(where)
        if compiled is not None:
            decided = policy(where), compiled.solve(cases, lambda rest: solve_clingo(rest, where)[1])
    decided = decided or solve_clingo(cases, directory)
    for key, _, version in cases:
        decided[1][key].requested = version
    return decided


def solve_clingo(cases: Iterable[tuple[int, Case, Optional[str]]],
                 directory: Optional[Path] = None) -> tuple[Policy, dict[int, Shown]]:
    """Decide every (key, case, requested version) in one grounding: clingo's own solving."""
    fast = capi.enabled()
    control = _control(directory)
    keys: list[int] = []
    with control.backend() as backend:
        symbols, fact = (_C_SYMBOLS, capi.writer(backend)) if fast else (PUBLIC, _public_writer(backend))
        for key, case, version in cases:
            keys.append(key)
            for name, arguments in case_rows(key, case, version, symbols):
                fact(name, arguments)
    control.ground([("base", [])])
    shown = {key: Shown() for key in keys}
    policy = Policy(kb_sha256=kb_sha256(directory))
    with control.solve(yield_=True) as handle:
        model = next(iter(handle), None)
        if model is None:
            raise RuntimeError("the knowledge base has no model for these cases: kb/ is inconsistent")
        _read(capi.atoms(model, parse_arguments) if fast else _public_atoms(model), shown, policy)
    return policy, shown


_C_SYMBOLS = Symbols(capi.number, capi.string, capi.constant) if capi.AVAILABLE else PUBLIC


def _public_writer(backend: clingo.Backend):
    """As capi.writer, through clingo's Python API."""
    def fact(name: str, arguments: list) -> None:
        backend.add_rule([backend.add_atom(clingo.Function(name, arguments))])

    return fact


def _public_atoms(model: clingo.Model):
    """As capi.atoms, through clingo's Python API."""
    cache: dict[str, tuple[str, tuple]] = {}
    for symbol in model.symbols(shown=True):
        name, _, rest = str(symbol).partition("(")
        key, _, after = rest.partition(",")
        if key.isdigit():
            key, rest = int(key), after
        elif key.endswith(")") and key[:-1].isdigit():  # a key alone: name(K)
            key, rest = int(key[:-1]), ")"
        else:
            key = None
        read = cache.get(rest)
        if read is None:
            read = cache[rest] = (rest, parse_arguments(rest))
        yield name, key, read


def policy(directory: Optional[Path] = None) -> Policy:
    """The policy's id, versions and criteria, read from the knowledge base alone."""
    return _policy(directory or kb_dir())


@lru_cache(maxsize=8)
def _policy(directory: Path) -> Policy:
    return solve_clingo((), directory)[0]


EXPLANATION_WORDS = {"field_words", "field_unit", "one_of", "remedy_words", "correspond", "plausible",
                     # kb/request.lp: the product a request asks for, the form's words
                     "requested_code", "requested_product", "question_words", "choice_words", "payer_field",
                     "typo_edits", "drug_stem", "hint_words", "treatment", "group_words",
                     "unasserted_words",
                     # kb/words.lp: criterion readings, counts in words, how reasons cite requirements
                     "reading", "count_words", "cite_words"}


def _status(one: Shown, rest: str, args: tuple) -> None:
    one.status[args[0]] = args[1][0]


def _because(one: Shown, rest: str, args: tuple) -> None:
    one.because.setdefault(args[0], []).append((rest, args[1]))


def _decision(one: Shown, rest: str, args: tuple) -> None:
    one.decision, one.label = args[0][0], args[1][0]


def _applies(one: Shown, rest: str, args: tuple) -> None:
    one.version = args[0]


def _document(one: Shown, rest: str, args: tuple) -> None:
    one.document.setdefault(args[0], []).append(args[1])


def _decided(one: Shown, rest: str, args: tuple) -> None:
    one.rule = args[0][0]


def _contract(one: Shown, rest: str, args: tuple) -> None:
    one.contract = args[0][0]


def _asserted(one: Shown, rest: str, args: tuple) -> None:
    one.asserted.append(args[0][0])


def _missing(one: Shown, rest: str, args: tuple) -> None:
    one.missing.append(args[0])


def _advisory(one: Shown, rest: str, args: tuple) -> None:
    one.advisories.append((rest, args[0]))


def _remedy_kind(one: Shown, rest: str, args: tuple) -> None:
    one.remedy[args[0]] = args[1][0]


def _on_date(one: Shown, rest: str, args: tuple) -> None:
    one.on_date.setdefault(args[0], []).append(args[1])


def _reason_rule(one: Shown, rest: str, args: tuple) -> None:
    one.reason_rule = args[0][0]


def _can_change(one: Shown, rest: str, args: tuple) -> None:
    one.can_change.add(args[0])


def _decisive_name(one: Shown, rest: str, args: tuple) -> None:
    one.decisive_names.add(args[0])


def _for_resubmission(one: Shown, rest: str, args: tuple) -> None:
    one.for_resubmission.add(args[0])


def _all_of(one: Shown, rest: str, args: tuple) -> None:
    one.all_of.add(args[0][0])


def _unasserted(one: Shown, rest: str, args: tuple) -> None:
    one.unasserted.append(args[0])


def _remedy_open(one: Shown, rest: str, args: tuple) -> None:
    one.remedy_open.setdefault(args[0], []).append(args[1])


def _failed_by(one: Shown, rest: str, args: tuple) -> None:
    one.fails.setdefault(args[0], set()).add(args[1])


# A case's shown atom → what it sets in that case's Shown: (Shown, clingo's text of the
# arguments after the key, the parsed arguments). A keyed atom of another name is not read.
KEYED = {
    "status": _status, "because": _because, "decision": _decision, "applies": _applies,
    "document": _document, "decided": _decided, "contract": _contract, "asserted": _asserted,
    "missing": _missing, "advisory": _advisory, "remedy_kind": _remedy_kind, "on_date": _on_date,
    "reason_rule": _reason_rule, "can_change": _can_change, "decisive_name": _decisive_name,
    "for_resubmission": _for_resubmission, "all_of": _all_of, "unasserted": _unasserted,
    "remedy_open": _remedy_open, "failed_by": _failed_by,
}


def _read(atoms, shown: dict[int, Shown], policy: Policy) -> None:
    criteria: dict[str, list[tuple[int, str, str]]] = {}
    keyed = KEYED
    for name, key, (rest, args) in atoms:
        if key is None:
            if name == "criterion":
                criteria.setdefault(args[0], []).append((args[2], args[1], args[3]))
            elif name == "version":
                policy.versions[args[0]] = (args[1], args[2])
            elif name == "policy":
                policy.id = args[0]
            elif name == "remedy":
                policy.remedies[args[0], args[1]] = args[2]
            elif name == "known":
                policy.names.add(args[0])
            elif name == "reads":
                policy.reads.setdefault(args[0], {}).setdefault(args[1], []).append(args[2])
            elif name in EXPLANATION_WORDS:
                policy.facts.setdefault(name, []).append(args)
            else:
                policy.words[name, args[0][0]] = args[1]
            continue
        act = keyed.get(name)
        if act is not None:
            act(shown[key], rest, args)
    for version, rows in criteria.items():
        orders = [order for order, _, _ in rows]
        if len(set(orders)) != len(orders):
            raise RuntimeError(f"kb/: two criteria of version {version} share a place in policy order")
        policy.criteria[version] = [(ident, text) for _, ident, text in sorted(rows)]
