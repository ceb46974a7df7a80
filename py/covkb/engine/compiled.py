"""The compiled engine: kb/ grounded once, evaluated for many cases at once.

clingo grounds the knowledge base one time for one abstract case whose facts are
`#external` atoms over finite domains: booleans, documented fields, each line slot's
names, and for values the rules may only pass on or compare, stand-ins (a placeholder
per distinct name outside kb/, per date rank, for the age). The arithmetic clingo would
do on a case's values (covkb.engine.arith) is fed as its result. A clingo Observer captures the
ground program; when it is a stratified normal program (weight rules allowed) it is
compiled into plain data - steps over ints, one bit per case, only the rules the shown
atoms depend on - that _evaluate runs, and the shown atoms that come out true are read
back exactly as covkb.engine.vocabulary reads clingo's model, the case's own values put back for
the stand-ins.

Building takes seconds, so the build is kept in a cache file for the next process. It
is data, never code: nothing is unpickled, unmarshalled or executed from it. Its header
carries the format, covkb's version, the kb digest, the hash of everything the build
read, and the SHA-256 of the body; a file owned by another user, writable by group or
others, or failing any check is rebuilt and replaced, never used.

Why the stand-ins are safe (what _flow checks). Let σ map each stand-in of a compiled case
to the value it stands for: a distinct name outside kb/ to a distinct stand-in, the
dates (cardiac dates, window starts) to stand-ins numbered in their order, the age and
the case id to one stand-in each. σ is a bijection between the stand-ins a case uses and
its values, it keeps order among dates, and no stand-in equals a string of kb/ (they
open with a private-use character kb/ never writes; _read_kb refuses a kb/ that does),
while a name that is a string of kb/ is kept as itself. Grounding over the stand-ins
then gives, through σ, exactly the rule instances grounding over the values gives, as
long as every rule does with a case value only what σ preserves:
- passes it on, unchanged, into a head argument (every kind): the head then carries the
  same kind at that argument path, to a fixpoint over all rules, and a path holding two
  kinds is refused, so each consumer sees one kind;
- joins or compares it for (in)equality with another name or a kb/ string (names only):
  σ is injective and fixes kb/'s strings, so = and != and a join with a kb/ table come
  out the same; a date, the age or the case id joined with kb/ data is refused;
- compares two dates with < <= > >= = != (dates only, variable against variable): σ
  keeps their order; a date against a constant is refused (a constant has no rank);
- nothing else: arithmetic, any other comparison, a case value inside an aggregate
  (#sum skips a weight that is not a number, #min/#max order strings after numbers), a
  computed term matched against a case argument, a rule reading a raw number or date
  (only covkb.engine.arith's rules may, and their results are fed in) or the date of service
  (only the version selection may; a representative date in the same versions is fed),
  and a rule deriving the case vocabulary are refused, so kb/ is then decided by clingo.
A case whose values outnumber the stand-ins is decided by clingo. The shown atoms read
back have σ applied (their stand-ins replaced by the values' clingo text), so they are
clingo's shown atoms for that case; tests/test_engine.py compares the two on every
bundled example and generated batches, tests/test_engine_flow.py each rule shape above.

Anything this cannot evaluate exactly - a knowledge base with choice rules, disjunction,
constraints, unstratified negation, theory atoms, arithmetic other than covkb.engine.arith's,
a stand-in used otherwise than passed on or compared as allowed - is refused as a whole
and clingo decides; a single case outside the domains (more prior lines, names or dates
than the slots) is decided by clingo with the others compiled.
"""

from __future__ import annotations

import re
import sys
from array import array
from dataclasses import dataclass, field
from functools import reduce
from operator import and_, itemgetter
from pathlib import Path
from typing import Optional

import clingo
from clingo import ast

from covkb import __version__
from covkb.engine import arith, facts
from covkb.input.case import Case, NCCN_CATEGORIES, PURPOSES
from covkb.engine.facts import BOOLEAN_FIELDS, LIST_FIELDS, NUMBER_FIELDS, Symbols, case_rows, compacted
from covkb.engine.kb import control as kb_control, kb_files, kb_sha256, sha256
from covkb.engine.terms import parse_arguments
from covkb.engine.vocabulary import KEYED, Shown, declared
from covkb.input import case

KEY = 1            # the abstract case's key
MARK = "\ue000"    # stand-ins are strings opening with this private-use character
LINES = 12         # prior lines a compiled case may have
NAMES = 10         # distinct names outside kb/ a compiled case may have
DATES = 8          # distinct cardiac dates and window starts a compiled case may have
OWNED = 4096       # parsed texts holding case values kept at most (cleared when full)

# How the rules may use a value at an argument position of the case vocabulary.
OPAQUE = "opaque"    # passed on only (the age, the case id)
ORDERED = "ordered"  # passed on, or compared with another ORDERED value (dates by rank)
NAMED = "named"      # joined and compared for (in)equality: kb/'s strings stay, others are stand-ins
HIDDEN = "hidden"    # read only by covkb.engine.arith's rules
SERVICE = "service"  # the date of service: read only by the version selection rule

INPUTS: dict[tuple[str, int], dict[int, str]] = {
    ("case", 1): {},
    ("case_id", 2): {1: OPAQUE},
    ("date_of_service", 2): {1: SERVICE},
    ("version_requested", 2): {1: NAMED},
    ("bool", 3): {},
    ("number", 4): {2: HIDDEN, 3: HIDDEN},
    ("date", 3): {2: HIDDEN},
    ("listed", 2): {},
    ("prior_line", 2): {},
    ("agent", 3): {2: NAMED},
    ("cell_therapy", 2): {1: NAMED},
    ("trial", 2): {1: NAMED},
    ("concurrent", 3): {1: NAMED},
    ("cardiac", 2): {1: ORDERED},
    ("nccn", 2): {},
    ("compact", 3): {1: NAMED, 2: NAMED},
    ("part", 3): {1: NAMED, 2: NAMED},
}
# What covkb.engine.arith computes in place of the rules it evaluates.
FED = {("age", 2): {1: OPAQUE}, ("window_start", 3): {2: ORDERED}, ("compared", 4): {}}


class Refused(Exception):
    """The knowledge base is outside what this engine evaluates exactly."""


def _constant(name: str) -> tuple:
    return (name,)


# Facts as plain Python values: numbers int, strings str, constants (name,), as covkb.engine.terms reads them.
_VALUES = Symbols(int, str, _constant)


def _symbol(value) -> clingo.Symbol:
    if isinstance(value, int):
        return clingo.Number(value)
    if isinstance(value, str):
        return clingo.String(value)
    return clingo.Function(value[0], [])


# ---------------------------------------------------------------------------------------
# Reading kb/: which rules covkb.engine.arith replaces, and how values flow through the rest.
# ---------------------------------------------------------------------------------------

def _children(node):
    for key in node.child_keys:
        child = getattr(node, key)
        if isinstance(child, ast.AST):
            yield child
        elif isinstance(child, (list, tuple)) or type(child).__name__ == "ASTSequence":
            yield from (c for c in child if isinstance(c, ast.AST))


def _walk(node):
    yield node
    for child in _children(node):
        yield from _walk(child)


def _variables(node) -> set[str]:
    return {n.name for n in _walk(node) if n.ast_type == ast.ASTType.Variable}


def _atom(node) -> Optional[tuple[str, list]]:
    """(name, arguments) of a SymbolicAtom over a function term, else None."""
    if node.ast_type != ast.ASTType.SymbolicAtom:
        return None
    term = node.symbol
    if term.ast_type == ast.ASTType.Function and not term.external:
        return term.name, list(term.arguments)
    if term.ast_type == ast.ASTType.SymbolicTerm and term.symbol.type == clingo.SymbolType.Function:
        return term.symbol.name, [None] * len(term.symbol.arguments)
    return None


def _head_atom(rule) -> Optional[tuple[str, list]]:
    head = rule.head
    if head.ast_type == ast.ASTType.Literal:
        return _atom(head.atom)
    return None


_ARITHMETIC = {ast.ASTType.BinaryOperation, ast.ASTType.UnaryOperation, ast.ASTType.Interval,
               ast.ASTType.Pool}
_EQUALITY = {ast.ComparisonOperator.Equal, ast.ComparisonOperator.NotEqual}
_AGGREGATES = {ast.ASTType.BodyAggregate, ast.ASTType.Aggregate, ast.ASTType.HeadAggregate}


def _flow(rules: list) -> None:
    """Check that every rule uses the case's stand-ins only as their kinds allow.

    Kinds are kept per argument path: (argument, function name, arity, argument, ...),
    so because(K,I,within(F,D,S)) can hold ordered dates where another because holds a name.
    """
    kinds = {sig: {(i,): k for i, k in p.items()} for sig, p in {**INPUTS, **FED}.items()}
    for _ in range(len(rules) + 2):
        changed = False
        for rule in rules:
            changed |= _flow_rule(rule, kinds)
        if not changed:
            return
    raise Refused("the flow of case values through kb/ does not settle")


COMPOUND = "compound"  # a term holding values of several kinds: passed on only


def _bind(term, path, entries, shapes, plain, rule) -> None:
    """Record the kinds the variables of a body atom's argument take from its paths."""
    if term.ast_type == ast.ASTType.Variable:
        if term.name == "_":
            return
        shape = {p[len(path):]: k for p, k in entries.items() if p[:len(path)] == path}
        outer = {k for p, k in entries.items() if len(p) < len(path) and path[:len(p)] == p}
        if outer:
            shape = {(): outer.pop() if len(outer) == 1 else COMPOUND}
        if not shape:
            plain.add(term.name)
        elif shapes.setdefault(term.name, shape) != shape:
            raise Refused(f"a variable joins two kinds of case value: {rule}")
    elif term.ast_type == ast.ASTType.Function and not term.external and term.arguments:
        for j, argument in enumerate(term.arguments):
            _bind(argument, path + (term.name, len(term.arguments), j), entries, shapes, plain, rule)
    elif _variables(term):
        if any(p[:len(path)] == path or path[:len(p)] == p for p in entries):
            raise Refused(f"a case value matched by a computed term: {rule}")
        plain.update(_variables(term))


def _kind(shape: dict) -> str:
    if set(shape) == {()}:
        return shape[()]
    return NAMED if set(shape.values()) == {NAMED} else COMPOUND


def _put(term, path, shapes, entries, rule) -> bool:
    """Record the kinds a head argument passes on; True when something new was learnt."""
    changed = False
    if term.ast_type == ast.ASTType.Variable:
        for rest, kind in shapes.get(term.name, {}).items():
            old = entries.get(path + rest)
            if old == HIDDEN or old == kind:
                continue
            if old is not None:
                raise Refused(f"an argument holds two kinds of case value: {rule}")
            entries[path + rest] = kind
            changed = True
    elif term.ast_type == ast.ASTType.Function and not term.external:
        for j, argument in enumerate(term.arguments):
            changed |= _put(argument, path + (term.name, len(term.arguments), j), shapes, entries, rule)
    return changed


def _flow_rule(rule, kinds) -> bool:
    head = _head_atom(rule)
    if head is not None and (head[0], len(head[1])) in INPUTS and str(rule) not in arith.KEPT:
        raise Refused(f"kb/ derives case vocabulary: {rule}")
    shapes: dict[str, dict] = {}
    plain: set[str] = set()
    aggregated: set[str] = set()
    for element in rule.body:
        for node in _walk(element):
            atom = _atom(node)
            if atom is None:
                continue
            entries = kinds.get((atom[0], len(atom[1])), {})
            for index, argument in enumerate(atom[1]):
                if argument is not None:
                    _bind(argument, (index,), entries, shapes, plain, rule)
        if any(n.ast_type in _AGGREGATES for n in _walk(element)):  # `C = #count{...}` is a Literal
            aggregated |= _variables(element)
    var_kind = {name: _kind(shape) for name, shape in shapes.items()}
    for name, kind in var_kind.items():
        if kind in (HIDDEN, SERVICE) or HIDDEN in shapes[name].values() or SERVICE in shapes[name].values():
            raise Refused(f"a rule outside covkb.engine.arith reads a case value it cannot see: {rule}")
        if kind != NAMED and name in plain:
            raise Refused(f"a rule joins a case value with kb/ data: {rule}")
        if name in aggregated:
            raise Refused(f"a case value inside an aggregate: {rule}")
    tainted = set(var_kind)
    for node in _walk(rule):
        if node.ast_type in _ARITHMETIC and _variables(node) & tainted:
            raise Refused(f"arithmetic on a case value: {rule}")
        if node.ast_type == ast.ASTType.Comparison:
            sides = [node.term] + [g.term for g in node.guards]
            used = {var_kind[n] for side in sides for n in _variables(side) if n in var_kind}
            if not used:
                continue
            operators = {g.comparison for g in node.guards}
            if used == {NAMED} and operators <= _EQUALITY:
                continue
            if used == {ORDERED} and all(s.ast_type == ast.ASTType.Variable and var_kind.get(s.name) == ORDERED
                                         for s in sides):
                continue
            raise Refused(f"a comparison on a case value: {rule}")
    if head is None:
        if _variables(rule.head) & tainted:
            raise Refused(f"a case value in a head that is not an atom: {rule}")
        return False
    entries = kinds.setdefault((head[0], len(head[1])), {})
    changed = False
    for index, argument in enumerate(head[1]):
        if argument is not None:
            changed |= _put(argument, (index,), shapes, entries, rule)
    return changed


def _read_kb(files: list[Path]):
    """kb/'s statements less the rules covkb.engine.arith replaces, and every string kb/ writes."""
    statements: list = []
    ast.parse_files([str(p) for p in files], statements.append)
    kept, analysed, replaced, strings = [], [], set(), set()
    for statement in statements:
        kind = statement.ast_type
        if kind in (ast.ASTType.Script, ast.ASTType.External, ast.ASTType.TheoryDefinition,
                    ast.ASTType.Edge, ast.ASTType.Heuristic, ast.ASTType.ProjectAtom,
                    ast.ASTType.ProjectSignature, ast.ASTType.Minimize, ast.ASTType.ShowTerm):
            raise Refused(f"kb/ has a statement this engine does not evaluate: {statement}")
        for node in _walk(statement):
            if node.ast_type == ast.ASTType.SymbolicTerm and node.symbol.type == clingo.SymbolType.String:
                strings.add(node.symbol.string)
        if kind == ast.ASTType.Rule:
            text = str(statement)
            head = _head_atom(statement)
            signature = (head[0], len(head[1])) if head else None
            reads_service = any(_atom(n) and _atom(n)[0] == "date_of_service"
                                for n in _walk(statement) if n.ast_type == ast.ASTType.SymbolicAtom)
            if text in arith.RULES or signature in arith.HEADS or reads_service:
                replaced.add(text)
                if text not in arith.KEPT:
                    continue
            if text not in arith.KEPT or text == arith.AGE_NUMBER:
                analysed.append(statement)
        kept.append(statement)
    if replaced != arith.RULES:
        differ = sorted(replaced ^ arith.RULES)
        raise Refused(f"kb/'s arithmetic is not covkb.engine.arith's: {differ[0]}")
    if any(MARK in s for s in strings):
        raise Refused("kb/ writes the stand-in character")
    _flow(analysed)
    return kept, strings


# ---------------------------------------------------------------------------------------
# The ground program.
# ---------------------------------------------------------------------------------------

class _Capture(clingo.Observer):
    def __init__(self):
        self.rules: list[tuple[list[int], list[int]]] = []
        self.weights: list[tuple[int, int, list[tuple[int, int]]]] = []
        self.externals: dict[int, object] = {}
        self.shown: list[tuple[clingo.Symbol, int]] = []
        self.unsupported: list[str] = []

    def rule(self, choice, head, body):
        if choice or len(head) != 1:
            self.unsupported.append("a choice rule, disjunction or constraint")
        self.rules.append((list(head), list(body)))

    def weight_rule(self, choice, head, lower_bound, body):
        if choice or len(head) != 1 or any(w < 0 for _, w in body):
            self.unsupported.append("a choice, disjunctive or negative weight rule")
        else:
            self.weights.append((head[0], lower_bound, list(body)))

    def external(self, atom, value):
        self.externals[atom] = value

    def output_atom(self, symbol, atom):
        self.shown.append((symbol, atom))

    def output_term(self, symbol, condition):
        self.unsupported.append("a shown term")

    def minimize(self, priority, literals):
        self.unsupported.append("an optimization statement")

    def project(self, atoms):
        self.unsupported.append("a projection")

    def assume(self, literals):
        self.unsupported.append("an assumption")

    def heuristic(self, atom, type_, bias, priority, condition):
        self.unsupported.append("a heuristic")

    def acyc_edge(self, node_u, node_v, condition):
        self.unsupported.append("an edge")

    def theory_atom(self, atom_id_or_zero, term_id, elements):
        self.unsupported.append("a theory atom")

    def theory_atom_with_guard(self, atom_id_or_zero, term_id, elements, operator_id, right_hand_side_id):
        self.unsupported.append("a theory atom")


def _components(nodes: list[int], edges: dict[int, list[int]]) -> list[list[int]]:
    """Strongly connected components, each after every component it depends on (Tarjan)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on: set[int] = set()
    out: list[list[int]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    advanced = True
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _atleast(bound: int, values: list[int], weights: list[int], everyone: int) -> int:
    """The cases whose true literals weigh at least `bound` (a weight rule's body)."""
    if bound <= 0:
        return everyone
    reached = [everyone] + [0] * bound  # reached[s]: cases whose weight so far is >= s
    for value, weight in zip(values, weights):
        if not value:
            continue
        for s in range(bound, 0, -1):
            reached[s] |= reached[max(0, s - weight)] & value
    return reached[bound]


def _compile(capture: _Capture, inputs: set[int], wanted: set[int]) -> tuple[list, int, dict[int, int]]:
    """The ground program as data: steps over a vector of case sets (see _evaluate),
    only the rules the `wanted` atoms depend on, each component after those it reads;
    a rule that can never fire is left out, and an atom that only copies another is read
    from that one (the returned aliases)."""
    if capture.unsupported:
        raise Refused(f"the ground program has {capture.unsupported[0]}")
    foreign = set(capture.externals) - inputs
    if foreign:
        raise Refused("kb/ declares external atoms of its own")
    bodies: dict[int, list] = {}
    for head, body in capture.rules:
        bodies.setdefault(head[0], []).append(("rule", body))
    for head, bound, body in capture.weights:
        bodies.setdefault(head, []).append(("weight", bound, body))
    if set(bodies) & inputs:
        raise Refused("kb/ derives an atom of the case vocabulary")
    edges: dict[int, list[int]] = {}
    negative: dict[int, set[int]] = {}
    for head, rules in bodies.items():
        deps = edges.setdefault(head, [])
        for rule in rules:
            literals = rule[1] if rule[0] == "rule" else [lit for lit, _ in rule[2]]
            for lit in literals:
                deps.append(abs(lit))
                if lit < 0:
                    negative.setdefault(head, set()).add(-lit)
    needed, todo = set(wanted), list(wanted)
    while todo:
        for atom in edges.get(todo.pop(), ()):
            if atom not in needed:
                needed.add(atom)
                todo.append(atom)
    atoms = 1 + max([0, *inputs, *wanted, *needed])
    slots: dict[int, int] = {}  # a negated atom → the slot that holds its complement
    steps: list = []

    alias: dict[int, int] = {}  # an atom whose one rule copies another atom → that atom
    false: set[int] = set()     # atoms no rule can make true

    def is_false(atom: int) -> bool:
        return atom not in inputs and atom not in alias and (atom not in bodies or atom in false)

    def slot(lit: int, before: list) -> int:
        if lit > 0:
            return alias.get(lit, lit)
        atom = alias.get(-lit, -lit)
        if atom not in slots:
            slots[atom] = atoms + len(slots)
            before += [_N, atom, slots[atom]]
        return slots[atom]

    for component in _components(sorted(bodies), edges):
        cyclic = len(component) > 1 or component[0] in edges.get(component[0], ())
        if cyclic and any(negative.get(a, set()) & set(component) for a in component):
            # checked whether shown or not: an unstratified part can leave no model at all
            raise Refused("the ground program is not stratified")
        members = [a for a in component if a in bodies and a in needed]
        if not members:
            continue
        if not cyclic:  # atoms of earlier components are final: a false one decides a literal
            rules = []
            for rule in bodies[members[0]]:
                if rule[0] != "rule":
                    rules.append(rule)
                elif not any(lit > 0 and is_false(lit) for lit in rule[1]):  # else it never fires
                    rules.append(("rule", [lit for lit in rule[1] if not (lit < 0 and is_false(-lit))]))
            if not rules:
                false.add(members[0])
                continue
            if len(rules) == 1 and rules[0][0] == "rule" and len(rules[0][1]) == 1 and rules[0][1][0] > 0:
                alias[members[0]] = alias.get(rules[0][1][0], rules[0][1][0])
                continue
        before: list = []  # complements of atoms of earlier components, final by now
        body: list = []
        for head in members:
            for rule in (rules if not cyclic else bodies[head]):
                if rule[0] == "rule":
                    # the input atoms first, then atoms, then complements: the first is the
                    # rule's guard (_operations), and an input atom seldom holds a case
                    read = sorted((slot(lit, before) for lit in rule[1]),
                                  key=lambda s: 0 if s in inputs else 1 if s < atoms else 2)
                    body += [_R, head, len(read), *read]
                else:
                    body += [_W, head, rule[1], len(rule[2]), *[slot(lit, before) for lit, _ in rule[2]],
                             *[w for _, w in rule[2]]]
        steps += before
        steps += [_L, len(body), *body] if cyclic else body
    return steps, atoms + len(slots), alias


# The program as plain data: one list of ints, step after step. A rule is _R, its head,
# the length of its body, the body's slots; a weight rule _W, its head, its bound, the
# length of its body, the body's slots, then their weights; a complement _N, the atom,
# the slot that holds its complement; a loop _L, the length of its steps, then its steps.
_R, _W, _N, _L = range(4)


def _operations(program: list, size: int) -> list[tuple]:
    """The program's steps as (kind, a, b, guard) for _evaluate; ValueError for anything
    malformed, so that a program read back from a cache is plain data checked, not
    trusted: a list of ints, every step of a kind and whole, every slot of the program.

    A rule's guard is the first slot of its body (an input atom where it has one, as
    _compile orders them): when the guard holds no case the body's and holds none either,
    and the rule is passed over. Most input atoms (a name in a line slot, a stand-in) hold
    no case of a chunk, so most rules are passed over at the cost of one look."""
    if type(program) is not list:
        raise ValueError("the program is not a list")
    try:
        array("q", program)  # every item an int (a bool is the same 0 or 1)
    except (TypeError, OverflowError):
        raise ValueError("the program is not a list of ints") from None
    slots: list = []
    out = _steps(program, 0, len(program), slots)
    if slots and (min(slots) < 0 or max(slots) >= size):
        raise ValueError("a slot outside the program")
    return out


def _steps(program: list, start: int, end: int, slots: list) -> list[tuple]:
    out: list[tuple] = []
    at = start
    while at < end:
        kind = program[at]
        if kind == _R:
            head, count = program[at + 1:at + 3]
            body = program[at + 3:at + 3 + count]
            at += 3 + count
            slots.append(head)
            slots += body
            if count < 0 or len(body) != count:
                raise ValueError(f"a rule of the program at {at} runs past its end")
            if not body:
                out.append((_TRUE, head, None, None))
            elif count == 1:
                out.append((_COPY, head, body[0], None))
            elif count == 2:
                out.append((_AND2, head, body[1], body[0]))
            else:
                out.append((_AND, head, itemgetter(*body[1:]), body[0]))
        elif kind == _W:
            head, bound, count = program[at + 1:at + 4]
            body = program[at + 4:at + 4 + count]
            weights = program[at + 4 + count:at + 4 + 2 * count]
            at += 4 + 2 * count
            slots.append(head)
            slots += body
            if count < 0 or len(weights) != count or min(weights, default=0) < 0:
                raise ValueError(f"a malformed weight rule of the program at {at}")
            out.append((_WEIGHT, head, (bound, body, weights), None))
        elif kind == _N:
            if at + 3 > end:
                raise ValueError(f"a complement of the program at {at} runs past its end")
            slots += program[at + 1:at + 3]
            out.append((_NOT, program[at + 1], program[at + 2], None))
            at += 3
        elif kind == _L:
            length = program[at + 1]
            if length < 0 or at + 2 + length > end:
                raise ValueError(f"a loop of the program at {at} runs past its end")
            inner = _steps(program, at + 2, at + 2 + length, slots)
            heads = sorted({op[1] for op in inner if op[0] != _NOT})
            out.append((_LOOP, itemgetter(*heads, heads[0]) if heads else None, inner, None))
            at += 2 + length
        else:
            raise ValueError(f"not a step of the program at {at}: {kind!r}")
    if at != end:
        raise ValueError(f"a step of the program at {at} runs past its end")
    return out


_AND, _AND2, _COPY, _TRUE, _NOT, _WEIGHT, _LOOP = range(7)


def _evaluate(operations: list[tuple], v: list[int], M: int) -> None:
    """Every atom's cases from the inputs' cases: v[atom] holds one bit per case, M all
    of them; each rule ors the and of its body into its head, a loop repeats until no
    head changes (a cycle without negation inside reaches its least fixpoint)."""
    for kind, a, b, guard in operations:
        if kind is _AND2:
            cases = v[guard]
            if cases:
                v[a] |= cases & v[b]
        elif kind is _AND:
            cases = v[guard]
            if cases:
                v[a] |= reduce(and_, b(v), cases)
        elif kind is _COPY:
            v[a] |= v[b]
        elif kind is _TRUE:
            v[a] = M
        elif kind is _NOT:
            v[b] = M ^ v[a]
        elif kind is _WEIGHT:
            bound, body, weights = b
            v[a] |= _atleast(bound, [v[i] for i in body], weights, M)
        else:
            while True:
                old = a(v) if a else None
                _evaluate(b, v, M)
                if (a(v) if a else None) == old:
                    break


# ---------------------------------------------------------------------------------------
# The compiled knowledge base.
# ---------------------------------------------------------------------------------------

_STAND_IN = re.compile('"' + MARK + '[^"]*"')
_KINDS = {name: (arity, tuple(sorted(kinds.items()))) for (name, arity), kinds in INPUTS.items()}
_NAME_STANDS = [f"{MARK}n{i:02d}" for i in range(NAMES)]
_DATE_STANDS = [f"{MARK}o{i:02d}" for i in range(DATES)]
AGE = f"{MARK}age1"


def _text(value) -> str:
    """clingo's text of a case value, written here: a clingo symbol made per distinct name
    would stay in clingo's symbol table for the life of the process (a server's workers
    meet new names with every request). A string ends at its first NUL, as clingo's does."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        value = value.split("\0", 1)[0]
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return value[0]


@dataclass
class Compiled:
    program: list  # the ground program as steps over case sets (_compile): a list of ints
    size: int
    inputs: dict[tuple, int]                 # an input atom's key → its program atom
    shown: list[tuple[int, str, str, bool]]  # (atom, name, text after the key, has stand-ins)
    strings: frozenset
    versions: list[tuple[int, int]]
    candidates: list[int]
    months: list[int]
    thresholds: list[tuple[str, int]]
    facts: list[tuple[str, str]] = field(default_factory=list)  # shown atoms true for every case
    reads: dict[str, tuple] = field(default_factory=dict)    # kb/'s texts read back, parsed
    owned: dict[str, tuple] = field(default_factory=dict)    # texts holding a case's values, parsed

    def __post_init__(self):
        self.operations = _operations(self.program, self.size)
        if any(not 0 <= atom < self.size for atom in self.inputs.values()) or \
                any(not 0 <= row[0] < self.size for row in self.shown):
            raise ValueError("an input or shown atom outside the program")

    def run(self, v: list[int], everyone: int) -> list[int]:
        _evaluate(self.operations, v, everyone)
        return v

    def data(self) -> dict:
        """Everything but the operations, as JSON values (constants as one-element lists)."""
        return {"program": self.program, "size": self.size,
                "inputs": [[_plain(key), atom] for key, atom in self.inputs.items()],
                "shown": [list(row) for row in self.shown], "strings": sorted(self.strings),
                "versions": [list(pair) for pair in self.versions], "candidates": self.candidates,
                "months": self.months, "thresholds": [list(pair) for pair in self.thresholds],
                "facts": [list(pair) for pair in self.facts]}

    @classmethod
    def from_data(cls, data: dict) -> "Compiled":
        """The inverse of data(); ValueError, TypeError or KeyError when it is not one."""
        def texts(values) -> list[str]:
            if not all(type(value) is str for value in values):
                raise ValueError("a string expected")
            return list(values)

        def ints(values) -> list[int]:
            if not all(type(value) is int for value in values):
                raise ValueError("an integer expected")
            return list(values)

        inputs = {}
        for key, atom in data["inputs"]:
            inputs[tuple(tuple(texts(a)) if isinstance(a, list) else a for a in key)] = ints([atom])[0]
        for key in inputs:
            if not all(type(a) in (str, int) or (type(a) is tuple and len(a) == 1) for a in key):
                raise ValueError("an input key holds something other than a value")
        shown = []
        for atom, name, text, marked in data["shown"]:
            texts([name, text])
            if type(atom) is not int or type(marked) is not bool:
                raise ValueError("a malformed shown atom")
            shown.append((atom, name, text, marked))
        size = ints([data["size"]])[0]
        return cls(data["program"], size, inputs, shown, frozenset(texts(data["strings"])),
                   [tuple(ints(pair)) for pair in data["versions"]], ints(data["candidates"]),
                   ints(data["months"]), [(texts(pair[:1])[0], ints(pair[1:])[0]) for pair in data["thresholds"]],
                   [tuple(texts(pair)) for pair in data["facts"]])

    def read(self, text: str) -> tuple:
        got = self.reads.get(text)
        if got is None:
            got = self.reads[text] = (text, parse_arguments(text))
        return got

    def encode(self, case: Case, version: Optional[str]):
        """The program atoms true for this case and its stand-ins' text, or None when
        the case does not fit the domains (clingo decides it)."""
        inputs, strings = self.inputs, self.strings
        atoms: list[int] = []
        names: dict[str, str] = {}
        stand: dict[str, str] = {}
        hidden: dict[tuple[str, str], list] = {}
        ordered: list[tuple[list, int, int]] = []  # (key, its position, value)
        service = None
        for name, args in case_rows(KEY, case, version, _VALUES):
            positions = _KINDS.get(name)
            if positions is None or len(args) != positions[0]:
                return None
            if not positions[1]:
                atom = inputs.get((name, *args[1:]))
                if atom is None:
                    return None
                atoms.append(atom)
                continue
            key = [name, *args[1:]]
            for index, kind in positions[1]:
                value = key[index]
                if kind == NAMED:
                    if isinstance(value, str) and value not in strings:
                        mapped = names.get(value)
                        if mapped is None:
                            if len(names) >= NAMES:
                                return None
                            mapped = names[value] = _NAME_STANDS[len(names)]
                            stand[mapped] = _text(value)
                        key[index] = mapped
                elif kind == HIDDEN:
                    hidden.setdefault((name, key[1]), []).append(value)
                    key[index] = 0
                elif kind == ORDERED:
                    ordered.append((key, index, value))
                    key = None
                    break
                elif kind == SERVICE:
                    service = value
                    key = None
                    break
                else:  # OPAQUE
                    key[index] = mapped = f"{MARK}{name}{index}"
                    stand[mapped] = _text(value)
            if key is not None:
                atom = inputs.get(tuple(key))
                if atom is None:
                    return None
                atoms.append(atom)
        if service is None or not arith.fits(service):
            return None
        represent = arith.representative(service, self.versions, self.candidates)
        if represent is None or any(not arith.fits(v) for vs in hidden.values() for v in vs
                                    if isinstance(v, int)):
            return None
        extra: list[tuple] = [("date_of_service", represent)]
        numbers = {f: (v[0], v[1][0]) for (p, f), v in hidden.items() if p == "number"}
        birth = hidden.get(("date", "member.birth_date"))
        age = arith.age(service, birth[0] if birth else None, numbers.get("member.age"))
        if age is not None:
            if not arith.fits(age):
                return None
            extra.append(("age", AGE))
            stand[AGE] = str(age)
            numbers["age"] = (age, "whole")
        for months in self.months:
            start = arith.window_start(service, months)
            if start is not None:
                ordered.append((["window_start", months, None], 2, start))
        for name, threshold in self.thresholds:
            value = numbers.get(name)
            if value is not None:
                extra.append(("compared", name, threshold, (arith.place(value, threshold),)))
        if ordered:
            ranks = sorted({value for _, _, value in ordered})
            if len(ranks) > DATES:
                return None
            for key, index, value in ordered:
                key[index] = mapped = _DATE_STANDS[ranks.index(value)]
                stand[mapped] = str(value)
                extra.append(tuple(key))
        for key in extra:
            atom = inputs.get(key)
            if atom is None:
                return None
            atoms.append(atom)
        return atoms, stand

    def solve(self, cases: list[tuple[int, Case, Optional[str]]], fallback) -> dict:
        """Shown per key; cases outside the domains go to fallback (clingo) together."""
        encoded, rest = [], []
        for item in cases:
            got = self.encode(item[1], item[2])
            if got is None:
                rest.append(item)
            else:
                encoded.append((item[0], got))
        shown = {key: Shown() for key, _, _ in cases}
        if encoded:
            v = [0] * self.size
            everyone = (1 << len(encoded)) - 1
            for bit, (_, (atoms, _)) in enumerate(encoded):
                one = 1 << bit
                for atom in atoms:
                    v[atom] |= one
            self.run(v, everyone)
            self._read_back(v, [shown[key] for key, _ in encoded], [stand for _, (_, stand) in encoded])
        if rest:
            shown.update(fallback(rest))
        return shown

    def _plan(self) -> tuple[list, list]:
        """Each shown atom's action (covkb.engine.vocabulary.KEYED), worked out once: for the atoms
        true in every case (action, text), for the others (atom, action, text, whether the
        text holds stand-ins). A shown atom that is no case's (the policy's own) is left out;
        a text is parsed when first read back (most atoms are true for no case)."""
        plan = self.__dict__.get("_planned")
        if plan is None:
            always = [(KEYED[name], text) for name, text in self.facts if name in KEYED]
            each = [(atom, KEYED[name], text, marked) for atom, name, text, marked in self.shown if name in KEYED]
            plan = self.__dict__["_planned"] = (always, each)
        return plan

    def _read_back(self, v: list[int], shown: list, stands: list[dict]) -> None:
        """The shown atoms true for each case (bit i: shown[i]) into its Shown, in the order
        covkb.engine.vocabulary.read would read them from clingo's model: atom by atom, case by case;
        a text with stand-ins gets the case's own values (σ applied)."""
        always, each = self._plan()
        owned, read = self.owned, self.read
        for act, text in always:
            rest, args = read(text)
            for one in shown:
                act(one, rest, args)
        for atom, act, text, marked in each:
            cases = v[atom]
            if not cases:
                continue
            bits = bin(cases)[:1:-1]  # bit i at index i
            bit = bits.find("1")
            if not marked:
                rest, args = read(text)
                while bit >= 0:
                    act(shown[bit], rest, args)
                    bit = bits.find("1", bit + 1)
                continue
            while bit >= 0:  # the case's own values: kept a while, in a table of bounded size
                stand = stands[bit]
                own = _STAND_IN.sub(lambda m: stand[m.group(0)[1:-1]], text)
                got_own = owned.get(own)
                if got_own is None:
                    if len(owned) >= OWNED:
                        owned.clear()
                    got_own = owned[own] = (own, parse_arguments(own))
                act(shown[bit], *got_own)
                bit = bits.find("1", bit + 1)


def build(directory: Path) -> Compiled:
    """Ground kb/ once for the abstract case and compile it; Refused when it cannot be exact."""
    files = kb_files(directory)
    statements, strings = _read_kb(files)
    plain = kb_control(directory)
    plain.ground([("base", [])])

    def facts(name: str, arity: int) -> list[list]:
        return [[_value(a) for a in s.symbol.arguments] for s in plain.symbolic_atoms.by_signature(name, arity)]

    versions = sorted((r[1], r[2]) for r in facts("version", 3))
    months = sorted({r[0] for r in facts("months_back", 1)})
    thresholds = sorted((r[0], r[1]) for r in facts("threshold", 2))
    named = sorted(strings) + _NAME_STANDS
    dates = _DATE_STANDS
    candidates = arith.representatives(versions)
    true, false = ("true",), ("false",)
    keys: list[tuple] = [("case",), ("case_id", f"{MARK}case_id1")]
    keys += [("date_of_service", d) for d in candidates]
    keys += [("version_requested", s) for s in named]
    keys += [("bool", f, b) for f in BOOLEAN_FIELDS for b in (true, false)]
    keys += [("number", f, 0, 0) for f in NUMBER_FIELDS]
    keys += [("date", "member.birth_date", 0)]
    keys += [("listed", f) for f in LIST_FIELDS]
    keys += [("prior_line", line) for line in range(1, LINES + 1)]
    keys += [("agent", line, s) for line in range(1, LINES + 1) for s in named]
    keys += [("cell_therapy", s) for s in named] + [("trial", s) for s in named]
    keys += [("concurrent", s, (p,)) for s in named for p in PURPOSES]
    keys += [("cardiac", d) for d in dates] + [("nccn", c) for c in NCCN_CATEGORIES]
    # a name's spelling forms: a kb string has one compacted form; a stand-in any
    for s in sorted(strings):
        if compacted(s) != s:
            keys += [("compact", s, compacted(s))] if compacted(s) in strings else \
                [("compact", s, n) for n in _NAME_STANDS]
    keys += [(p, n, s) for p in ("compact", "part") for n in _NAME_STANDS for s in named]
    keys += [("age", AGE)]
    keys += [("window_start", m, d) for m in months for d in dates]
    keys += [("compared", f, t, (where,)) for f, t in thresholds for where in ("above", "equal", "below")]

    control = clingo.Control(["--warn=none"])
    capture = _Capture()
    control.register_observer(capture)
    # Declared as #external statements, built as syntax trees from symbols: atoms added
    # through the backend before grounding lose rule instances built on aggregates.
    where = ast.Location(ast.Position("<covkb.engine.compiled>", 1, 1), ast.Position("<covkb.engine.compiled>", 1, 1))
    false = ast.SymbolicTerm(where, clingo.Function("false"))
    symbols = {key: clingo.Function(key[0], [clingo.Number(KEY)] + [_symbol(a) for a in key[1:]])
               for key in keys}
    with ast.ProgramBuilder(control) as builder:
        for statement in statements:
            builder.add(statement)
        for symbol in symbols.values():
            builder.add(ast.External(where, ast.SymbolicAtom(ast.SymbolicTerm(where, symbol)), [], false))
    control.ground([("base", [])])
    inputs = {key: control.symbolic_atoms[symbol].literal for key, symbol in symbols.items()}
    shown, always = [], []
    for symbol, atom in capture.shown:
        args = symbol.arguments
        declared(symbol.name, len(args))  # the vocabulary's reader reads every shown atom
        keyed = bool(args) and args[0].type == clingo.SymbolType.Number
        if keyed and args[0].number != KEY:
            raise Refused(f"a shown atom holds a number where the case key goes: {symbol}")
        if not keyed:
            if atom != 0:
                raise Refused(f"a shown atom outside any case depends on a case: {symbol}")
            continue
        text = ",".join(str(a) for a in args[1:]) + ")"
        if atom == 0:
            always.append((symbol.name, text))
        else:
            shown.append((atom, symbol.name, text, MARK in text))
    program, size, alias = _compile(capture, set(inputs.values()), {atom for atom, _, _, _ in shown})
    shown = [(alias.get(atom, atom), name, text, marked) for atom, name, text, marked in shown]
    return Compiled(program, size, inputs, shown, frozenset(strings), versions, candidates, months,
                    thresholds, always)


def _plain(key: tuple) -> list:
    return [list(a) if isinstance(a, tuple) else a for a in key]


def _value(symbol: clingo.Symbol):
    if symbol.type == clingo.SymbolType.Number:
        return symbol.number
    if symbol.type == clingo.SymbolType.String:
        return symbol.string
    return symbol.name


_built: dict[Path, object] = {}


def compiled(directory: Path, verbose: bool = False) -> Optional[Compiled]:
    """The compiled knowledge base of this directory, built once per process; None
    (and why, with verbose) when it is refused."""
    got = _built.get(directory)
    if got is None:
        got = _built[directory] = _build_apart(directory)
    if isinstance(got, Refused):
        if verbose:
            print(f"covkb: the compiled engine refuses kb/ ({got}); clingo decides", file=sys.stderr)
        return None
    return got


FORMAT = "covkb-engine/3"


def _cache_root() -> Optional[Path]:
    """$COVKB_CACHE ("off": none), else covkb/ under $XDG_CACHE_HOME, else under ~/.cache;
    a relative XDG_CACHE_HOME is ignored, as the XDG Base Directory spec asks."""
    import os

    root = os.environ.get("COVKB_CACHE")
    if root == "off":
        return None
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        base = os.path.expanduser("~/.cache")
    return Path(base) / "covkb"


def _build_key(directory: Path) -> str:
    """The hash of everything a build reads: kb/, the modules that define the case
    vocabulary, its domains and this engine, covkb's, clingo's and Python's versions."""
    digest = sha256()
    digest.update(f"{FORMAT} {__version__} {clingo.__version__} {sys.version}".encode())
    for path in [*kb_files(directory), Path(__file__), Path(arith.__file__),
                 Path(facts.__file__), Path(case.__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _cache_file(directory: Path) -> Optional[Path]:
    """Where the build of this kb/ is kept, named by its build key."""
    root = _cache_root()
    return None if root is None else root / f"engine-{_build_key(directory)[:32]}.json"


def _encode(got, directory: Path) -> bytes:
    """A build as a cache file: one header line (format, covkb version, kb digest, build
    key, the SHA-256 of the body), then the body: JSON data, never code."""
    import json

    body = json.dumps({"refused": str(got)} if isinstance(got, Refused) else got.data(),
                      separators=(",", ":")).encode()
    digest = sha256()
    digest.update(body)
    header = {"format": FORMAT, "covkb": __version__, "kb_sha256": kb_sha256(directory),
              "build": _build_key(directory), "sha256": digest.hexdigest()}
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def _decode(raw: bytes, directory: Path):
    """The Compiled (or Refused) a cache file holds, after every check; ValueError (with
    what failed) when any fails."""
    import json

    line, newline, body = raw.partition(b"\n")
    if not newline:
        raise ValueError("no header")
    try:
        header = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("not a covkb engine cache of this format")
    if header.get("covkb") != __version__:
        raise ValueError(f"built by covkb {header.get('covkb')}, this is {__version__}")
    if header.get("kb_sha256") != kb_sha256(directory):
        raise ValueError("built from another kb/")
    if header.get("build") != _build_key(directory):
        raise ValueError("built by another engine, clingo or Python")
    digest = sha256()
    digest.update(body)
    if header.get("sha256") != digest.hexdigest():
        raise ValueError("its content does not match its hash")
    import msgspec

    try:
        data = msgspec.json.decode(body)
        if type(data) is not dict:
            raise ValueError("not an object")
        if set(data) == {"refused"}:
            if type(data["refused"]) is not str:
                raise ValueError("a malformed refusal")
            return Refused(data["refused"])
        return Compiled.from_data(data)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise ValueError(f"malformed content: {error}"[:200]) from None


def _read_cache(path: Path, directory: Path):
    """The build kept at `path`, or None (and why) when there is none or it fails a check:
    owned by another user, writable by group or others, or any check of _decode."""
    import os
    import stat

    try:
        with open(path, "rb") as stream:
            status = os.fstat(stream.fileno())
            if not stat.S_ISREG(status.st_mode):
                return None, "not a regular file"
            if status.st_uid != os.geteuid():
                return None, "owned by another user"
            if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return None, "writable by group or others"
            raw = stream.read()
    except FileNotFoundError:
        return None, None
    except OSError as error:
        return None, str(error)
    try:
        return _decode(raw, directory), None
    except ValueError as error:
        return None, str(error)


def _write_cache(path: Path, got, directory: Path) -> None:
    """Written whole with mode 0600 in a directory made 0700, then renamed over whatever
    was there: a reader never sees half a file, and a refused file is replaced."""
    import os

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(_encode(got, directory))
        os.replace(part, path)
    except OSError:
        pass


# Why the last cache file read was not used (None: used, or there was none).
cache_refused: dict[Path, str] = {}


def _build_apart(directory: Path):
    """The Compiled (or Refused) for kb/: from the cache when a file built from this very
    kb/ passes every check, else built in a child interpreter, so that clingo's ground
    program and the compiler's memory never enter this process (batch workers fork from
    it), and kept in the cache for the next process."""
    cache = _cache_file(directory)
    if cache is not None:
        got, why = _read_cache(cache, directory)
        if got is not None:
            return got
        if why is not None:
            cache_refused[directory] = why
    got = _build_child(directory)
    if cache is not None:
        _write_cache(cache, got, directory)
    return got


def _build_child(directory: Path):
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-m", "covkb.engine.compiled", str(directory)],
                              capture_output=True, check=True)
        return _decode(done.stdout, directory)
    except (OSError, subprocess.CalledProcessError, ValueError):
        try:  # whatever stopped the child, the same build here
            return build(directory)
        except Refused as error:
            return error


def refusal(directory: Path) -> Optional[str]:
    got = _built.get(directory)
    return str(got) if isinstance(got, Refused) else None


if __name__ == "__main__":  # python -m covkb.engine.compiled KB_DIR: the build as a cache file on stdout
    from covkb.engine import compiled as engine  # the classes by their importable names, not __main__'s

    where = Path(sys.argv[1])
    try:
        result = engine.build(where)
    except engine.Refused as error:
        result = error
    sys.stdout.buffer.write(engine._encode(result, where))
