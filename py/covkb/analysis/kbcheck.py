"""A cheap self-check of the knowledge base, before any case is decided.

A rule that compares a field with a point no bound declares, or reads a predicate no
rule defines, would silently never fire; an atom shown outside the declared shown
vocabulary would be read by nothing; a criterion without one remedy kind could not say
what would change a denial, one met with time without its timed/3 could not say when,
one reading several fields without failed_by/3 could not say which failed it, and one
a later version drops without correspond/4 or no_counterpart/3 could not be compared; a number a reason types beside its bound/5 could drift from
it; a template naming a value the writer has no rendering for would fail on the case that
reaches it: the check names each such statement instead.
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

# Predicates that compare field F (argument 2) with point T (argument 3).
COMPARING = {("compared", 4), ("bound_met", 4), ("bound_not_met", 4)}


# What a template of kb/words.lp may name: an argument's renderings (covkb.results.result.Argument)
# and, by name, the criterion's id and words and the date of service.
RENDERINGS = frozenset({"", "stated", "measured", "label", "sendable", "value", "basis", "place", "day", "name"})
NAMED = frozenset({"ident", "text", "service"})


def _template(kind: str, text: str) -> list[str]:
    """What is wrong with one sentence or phrase template: a field it names that the writer
    cannot fill."""
    out = []
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as error:
        return [f"{kind}: the template {text!r} does not parse ({error})"]
    for name in fields:
        head, _, rest = name.partition(".")
        if kind.startswith("sentence") and head.isdigit() and rest in RENDERINGS:
            continue
        if kind.startswith("sentence") and head in NAMED and not rest:
            continue
        if kind.startswith("phrase") and (head.isdigit() or head in {"path", "value", "origin"}) and not rest:
            continue
        out.append(f"{kind}: the template {text!r} names {{{name}}}, which the writer cannot fill")
    return out


def _declared(directory: Optional[Path]) -> tuple[set[tuple[str, int]], list[tuple[str, str, int]], list[str]]:
    control = kb_control(directory)
    control.add("base", [], "#show threshold/2. #show bound/5. #show remedy_class/3. #show timed/3. "
                            "#show failure_named/2. #show no_counterpart/3.")
    control.ground([("base", [])])
    points, bounds, criteria, remedies, templates = set(), [], [], {}, []
    timed, named, reads, versions, moved, dropped = set(), set(), {}, {}, set(), set()
    with control.solve(yield_=True) as handle:
        for symbol in next(iter(handle)).symbols(shown=True):
            args = symbol.arguments
            if symbol.name == "threshold":
                points.add((args[0].string, args[1].number))
            elif symbol.name == "bound":
                bounds.append((str(args[1]).strip('"'), args[2].string, args[4].number))
            elif symbol.name == "criterion" and len(args) == 4:
                criteria.append((args[0].string, args[1].string))
            elif symbol.name == "remedy_class":
                remedies.setdefault((args[0].string, args[1].string), []).append(str(args[2]))
            elif symbol.name == "timed":
                timed.add((args[0].string, args[1].string))
            elif symbol.name == "failure_named":
                named.add((args[0].string, str(args[1]).strip('"')))
            elif symbol.name == "reads":
                reads.setdefault((args[0].string, args[1].string), set()).add(args[2].string)
            elif symbol.name == "version":
                versions[args[0].string] = args[1].number
            elif symbol.name == "correspond":
                moved.add((args[0].string, args[1].string, args[2].string))
            elif symbol.name == "no_counterpart":
                dropped.add((args[0].string, args[1].string, args[2].string))
            elif symbol.name == "sentence" and len(args) == 3:
                templates.append((f"sentence({args[0]},{args[1]})", args[2].string))
            elif symbol.name == "phrase" and len(args) == 2:
                templates.append((f"phrase({args[0]})", args[1].string))
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
              if len(fields) > 1 and (version, ident) in set(criteria) and (version, ident) not in named]
    order = sorted(versions, key=versions.get)
    for earlier, later in zip(order, order[1:]):
        held = {ident for version, ident in criteria if version == later}
        kinds += [f"criterion {ident} of version {earlier} is not in version {later}, and neither "
                  f"correspond/4 nor no_counterpart/3 says what became of it"
                  for version, ident in criteria if version == earlier and ident not in held
                  and (earlier, ident, later) not in moved and (earlier, ident, later) not in dropped]
    for kind, text in templates:
        kinds += _template(kind, text)
    return points, bounds, kinds


def _functions(node, found: list) -> None:
    """Every function term under node, as (name, arguments, location)."""
    if node.ast_type == ast.ASTType.Function:
        found.append((node.name, node.arguments, node.location))
    for key in node.child_keys:
        child = getattr(node, key)
        for item in (child if isinstance(child, (list, ast.ASTSequence)) else [child]):
            if isinstance(item, ast.AST):
                _functions(item, found)


def _strings(node) -> list[str]:
    """Every string written under node."""
    found: list[str] = []
    if node.ast_type == ast.ASTType.SymbolicTerm and node.symbol.type == clingo.SymbolType.String:
        found.append(node.symbol.string)
    for key in node.child_keys:
        child = getattr(node, key)
        for item in (child if isinstance(child, (list, ast.ASTSequence)) else [child]):
            if isinstance(item, ast.AST):
                found += _strings(item)
    return found


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
        _functions(node, found)

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
