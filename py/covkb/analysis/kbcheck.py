"""A cheap self-check of the knowledge base, before any case is decided.

A rule that compares a field with a point no bound declares, or reads a predicate no
rule defines, would silently never fire; an atom shown outside the declared shown
vocabulary would be read by nothing; a criterion without one remedy kind could not say
what would change a denial, one met with time without its timed/3 could not say when,
one reading several fields without failed_by/3 could not say which failed it, and one a
later version drops without correspond/4 or no_counterpart/3 could not be compared; a
number a reason types beside its bound/5 could drift from it; a template naming a value
the writer has no rendering for would fail on the case that reaches it: the check names
each such statement instead.
Nothing here knows the policy; it reads kb/ as clingo parses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import re
import string

import clingo
from clingo import ast

from covkb.engine.kb import control as kb_control, kb_files
from covkb.engine.vocabulary import SHOWN
from covkb.results.result import compiled

# Predicates that compare field F (argument 2) with point T (argument 3).
COMPARING = {("compared", 4), ("bound_met", 4), ("bound_not_met", 4)}


def _template(kind: str, text: str) -> list[str]:
    """What is wrong with one template: a field the writer cannot fill. A sentence (and a
    field's basis) is read by the writer's own parser (covkb.results.result.compiled); a
    phrase names its arguments by number, or a field's path, value and origin."""
    if not kind.startswith("phrase"):
        try:
            compiled(text)
        except ValueError as error:
            return [f"{kind}: {error}"]
        return []
    out = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(text):
            if name is None:
                continue
            if spec or conversion:
                out.append(f"{kind}: the template {text!r} has a format or conversion, which the writer does not apply")
            elif not (name.isdigit() or name in {"path", "value", "origin"}):
                out.append(f"{kind}: the template {text!r} names {{{name}}}, which the writer cannot fill")
    except ValueError as error:
        return [f"{kind}: the template {text!r} does not parse ({error})"]
    return out


def _declared(directory: Optional[Path]) -> tuple[set[tuple[str, int]], list[tuple[str, str, int]], list[str]]:
    from covkb.engine.reference import internals, policy
    from covkb.engine.vocabulary import Undeclared

    found = internals(directory)
    points = {(field, point) for field, point in found["threshold"]}
    bounds = [(ident if isinstance(ident, str) else ident[0], field, point)
              for _, ident, field, _, point in found["bound"]]
    try:
        stated = policy(directory)
    except Undeclared:  # problems() names the #show; nothing else is read from such a kb
        return points, bounds, []
    criteria = [(version, ident) for version, rows in stated.criteria.items() for ident, _ in rows]
    stated_criteria = set(criteria)
    remedies: dict[tuple[str, str], list[str]] = {}
    for version, ident, kind in found["remedy_class"]:
        remedies.setdefault((version, ident), []).append(kind[0])
    timed = {(version, ident) for version, ident, _ in found["timed"]}
    named = {(version, ident if isinstance(ident, str) else ident[0]) for version, ident in found["failure_named"]}
    reads = {(version, ident): set(fields) for version, by in stated.reads.items() for ident, fields in by.items()}
    versions = {name: start for name, (start, _) in stated.versions.items()}
    correspondences = [tuple(row) for row in stated.facts.get("correspond", ())]
    moved = {(v1, i1, v2) for v1, i1, v2, _ in correspondences}
    dropped = set(found["no_counterpart"])
    templates = [(f"sentence({form[0]},{kind[0]})", text) for form, kind, text in stated.facts.get("sentence", ())]
    templates += [(f"phrase({_term(key)})", text) for key, text in stated.facts.get("phrase", ())]
    templates += [(f"field_basis({path})", text) for path, text in stated.facts.get("field_basis", ())]
    kinds = [f"criterion {ident} of version {version} has no remedy kind (remedy_class/3)"
             for version, ident in criteria if (version, ident) not in remedies]
    kinds += [f"criterion {ident} of version {version} has {len(found)} remedy kinds ({', '.join(sorted(found))})"
              for (version, ident), found in sorted(remedies.items()) if len(found) > 1]
    kinds += [f"criterion {ident} of version {version} is met with time (remedy kind on_date) "
              "but has no timed/3 saying from when"
              for (version, ident), found in sorted(remedies.items()) if "on_date" in found
              and (version, ident) not in timed]
    kinds += [f"criterion {ident} of version {version} reads {len(fields)} fields but names none that "
              "failed it (failed_by/3: a schema, a bound, fails_when/3 or failure_named/2)"
              for (version, ident), fields in sorted(reads.items())
              if len(fields) > 1 and (version, ident) in stated_criteria and (version, ident) not in named]
    order = sorted(versions, key=versions.get)
    for earlier, later in zip(order, order[1:]):
        # an id of the later version holds the earlier one of that id, unless it is said to
        # hold another (correspond/4: 2025's 5b is 2024's 5c, not 2024's 5b)
        taken = {i2 for v1, i1, v2, i2 in correspondences if (v1, v2) == (earlier, later) and i1 != i2}
        held = {ident for version, ident in criteria if version == later and ident not in taken}
        kinds += [f"criterion {ident} of version {earlier} has no counterpart in version {later}, and neither "
                  f"correspond/4 nor no_counterpart/3 says what became of it"
                  for version, ident in criteria if version == earlier and ident not in held
                  and (earlier, ident, later) not in moved and (earlier, ident, later) not in dropped]
    for kind, text in templates:
        kinds += _template(kind, text)
    return points, bounds, kinds


def _term(parsed) -> str:
    """A parsed constant or function term as clingo writes it: `and`, `place(line)`."""
    if isinstance(parsed, tuple):
        name, *args = parsed
        return name + (f"({','.join(_term(a) for a in args)})" if args else "")
    return f'"{parsed}"' if isinstance(parsed, str) else str(parsed)


def _nodes(node):
    """node and every AST node under it."""
    yield node
    for key in node.child_keys:
        child = getattr(node, key)
        for item in (child if isinstance(child, (list, ast.ASTSequence)) else [child]):
            if isinstance(item, ast.AST):
                yield from _nodes(item)


def _strings(node) -> list[str]:
    """Every string written under node."""
    return [n.symbol.string for n in _nodes(node)
            if n.ast_type == ast.ASTType.SymbolicTerm and n.symbol.type == clingo.SymbolType.String]


def _ground(term):
    if term.ast_type == ast.ASTType.SymbolicTerm:
        symbol = term.symbol
        return symbol.string if symbol.type == clingo.SymbolType.String else \
            symbol.number if symbol.type == clingo.SymbolType.Number else None
    return None


def problems(directory: Optional[Path] = None) -> list[str]:
    """What is wrong with kb/, one line each naming file and line; empty when sound."""
    files = kb_files(directory)
    points, bounds, kinds = _declared(directory)
    found: list = []
    undefined: list[str] = []

    def logger(code, message):
        if code == clingo.MessageCode.AtomUndefined:
            undefined.append(" ".join(message.split()))

    shows: dict[tuple[str, int], str] = {}

    def statement(node) -> None:
        if node.ast_type == ast.ASTType.ShowSignature:
            shows[node.name, node.arity] = f"{Path(node.location.begin.filename).name}:{node.location.begin.line}"
        found.extend((n.name, n.arguments, n.location) for n in _nodes(node)
                     if n.ast_type == ast.ASTType.Function)

    ast.parse_files([str(p) for p in files], statement)
    out = [f"{where}: #show {name}/{arity}, which the shown vocabulary (covkb.engine.vocabulary) "
           "does not declare" for (name, arity), where in sorted(shows.items()) if SHOWN.get(name) != arity]
    out += [f"kb/ shows no {name}/{arity}, which the shown vocabulary declares"
            for name, arity in sorted(SHOWN.items()) if (name, arity) not in shows]
    for name, args, where in found:
        if (name, len(args)) in COMPARING:
            field, point = _ground(args[1]), _ground(args[2])
            if isinstance(field, str) and isinstance(point, int) and (field, point) not in points:
                out.append(f"{Path(where.begin.filename).name}:{where.begin.line}: {name} compares "
                           f"{field} with {point}, which no bound/5 declares")
        if name == "because" and len(args) == 3:
            ident = _ground(args[1])
            typed = {int(n) for words in _strings(args[2]) for n in re.findall(r"(?<![\w.])\d+(?![\w.])", words)}
            for point in sorted({p for criterion, _, p in bounds if ident in (None, criterion)} & typed):
                out.append(f"{Path(where.begin.filename).name}:{where.begin.line}: a reason of "
                           f"{ident or 'a criterion'} types {point}, which bound/5 declares: "
                           "take the number from bound/5 (a phrase/2 writes it)")
    control = kb_control(directory, (), logger)
    control.ground([("base", [])])
    out += [f"kb/ reads an atom no rule defines: {message}" for message in undefined]
    out += kinds
    return out
