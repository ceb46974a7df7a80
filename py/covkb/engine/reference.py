"""Facts → clingo → the atoms the knowledge base shows, per case: clingo's own solving,
the reference semantics every faster path is checked against.

Many cases are grounded together in one program, each under its own key; the
knowledge base is stratified, so grounding decides and the one model is read back.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import clingo

from covkb.engine import arith, capi, kb
from covkb.engine.facts import PUBLIC, Symbols, case_rows
from covkb.engine.kb import kb_dir, kb_sha256
from covkb.engine.terms import parse, parse_arguments
from covkb.engine.vocabulary import INTERNAL, Policy, Shown, read
from covkb.input.case import Case


def solve(cases: Iterable[tuple[int, Case, Optional[str]]],
          directory: Optional[Path] = None) -> tuple[Policy, dict[int, Shown]]:
    """Decide every (key, case, requested version) in one grounding: clingo's own solving."""
    fast = capi.enabled()
    control = kb.control(directory)
    keys: list[int] = []
    with control.backend() as backend:
        symbols, fact = (_C_SYMBOLS, capi.writer(backend)) if fast else (PUBLIC, _public_writer(backend))
        for key, case, version in cases:
            keys.append(key)
            for name, arguments in case_rows(key, case, version, symbols):
                fact(name, arguments)
    control.ground([("base", [])])
    shown = {key: Shown() for key in keys}
    policy = Policy(kb_sha256=kb_sha256(directory), directory=directory)
    with control.solve(yield_=True) as handle:
        model = next(iter(handle), None)
        if model is None:
            raise RuntimeError("the knowledge base has no model for these cases: kb/ is inconsistent")
        read(capi.atoms(model, parse_arguments) if fast else _public_atoms(model), shown, policy)
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
        parsed = cache.get(rest)
        if parsed is None:
            parsed = cache[rest] = (rest, parse_arguments(rest))
        yield name, key, parsed


def policy(directory: Optional[Path] = None) -> Policy:
    """The policy's id, versions and criteria, read from the knowledge base alone."""
    return _policy(directory or kb_dir())


@lru_cache(maxsize=8)
def _policy(directory: Path) -> Policy:
    return solve((), directory)[0]


def internals(directory: Optional[Path] = None) -> dict[str, list[tuple]]:
    """kb/'s own atoms the analysis commands read (covkb.engine.vocabulary.INTERNAL), each
    name's atoms as parsed argument tuples in clingo's order: the one reader of them."""
    return _internals(directory or kb_dir())


@lru_cache(maxsize=8)
def _internals(directory: Path) -> dict[str, list[tuple]]:
    control = kb.control(directory)
    control.add("base", [], " ".join(f"#show {name}/{arity}." for name, arity in INTERNAL.items()))
    control.ground([("base", [])])
    found: dict[str, list[tuple]] = {name: [] for name in INTERNAL}
    with control.solve(yield_=True) as handle:
        for symbol in next(iter(handle)).symbols(shown=True):
            if INTERNAL.get(symbol.name) == len(symbol.arguments):
                found[symbol.name].append(parse(str(symbol))[1:])
    return found


def in_force(day: int, directory: Optional[Path] = None) -> Optional[str]:
    """The version in force on a date no case gives (YYYYMMDD), such as the day a remedy
    meets a criterion, as kb/core.lp's in_force/2 selects it; None when none is. When kb/'s
    in_force/2 is covkb.engine.arith's IN_FORCE exactly (the rule the compiled engine holds
    it to), arith evaluates it over the versions kb/ shows; any other, clingo decides."""
    where = directory or kb_dir()
    if _selects_as_arith(where):
        return arith.in_force(day, policy(where).versions)
    return _in_force(day, where)


@lru_cache(maxsize=8)
def _selects_as_arith(directory: Path) -> bool:
    from clingo import ast

    rules: list[str] = []

    def statement(node) -> None:
        if node.ast_type == ast.ASTType.Rule and node.head.ast_type == ast.ASTType.Literal \
                and getattr(node.head.atom, "symbol", None) is not None \
                and getattr(node.head.atom.symbol, "name", None) == "in_force":
            rules.append(str(node))

    ast.parse_files([str(path) for path in kb.kb_files(directory)], statement)
    return rules == [arith.IN_FORCE]


@lru_cache(maxsize=1024)
def _in_force(day: int, directory: Path) -> Optional[str]:
    import datetime

    from covkb.input.case import Case

    service = datetime.date(day // 10000, day // 100 % 100, day % 100)
    return solve([(0, Case(case_id="in-force", date_of_service=service), None)], directory)[1][0].in_force

