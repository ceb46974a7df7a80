"""The compiled engine: kb/ grounded once, evaluated for many cases at once.

clingo grounds the knowledge base one time for one abstract case whose facts are
`#external` atoms over finite domains: booleans, documented fields, each line slot's
names, and for values the rules may only pass on or compare, stand-ins (a placeholder
per distinct name outside kb/, per date rank, for the age). The arithmetic clingo would
do on a case's values (covkb.arith) is fed as its result. A clingo Observer captures the
ground program; when it is a stratified normal program (weight rules allowed) it is
compiled into straight-line Python over ints, one bit per case, and the shown atoms that
come out true are read back exactly as covkb.decide reads clingo's model, the case's
own values put back for the stand-ins.

Anything this cannot evaluate exactly - a knowledge base with choice rules, disjunction,
constraints, unstratified negation, theory atoms, arithmetic other than covkb.arith's,
a stand-in used otherwise than passed on or compared as allowed - is refused as a whole
and clingo decides; a single case outside the domains (more prior lines, names or dates
than the slots) is decided by clingo with the others compiled.
"""

from __future__ import annotations

import marshal
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional

import clingo
from clingo import ast

from covkb import arith
from covkb.case import Case, NCCN_CATEGORIES, PURPOSES
from covkb.facts import BOOLEAN_FIELDS, LIST_FIELDS, NUMBER_FIELDS, Symbols, case_rows, compacted
from covkb.terms import parse_arguments

KEY = 1            # the abstract case's key
MARK = "\ue000"    # stand-ins are strings opening with this private-use character
LINES = 12         # prior lines a compiled case may have
NAMES = 10         # distinct names outside kb/ a compiled case may have
DATES = 8          # distinct cardiac dates and window starts a compiled case may have

# How the rules may use a value at an argument position of the case vocabulary.
OPAQUE = "opaque"    # passed on only (the age, the case id)
ORDERED = "ordered"  # passed on, or compared with another ORDERED value (dates by rank)
NAMED = "named"      # joined and compared for (in)equality: kb/'s strings stay, others are stand-ins
HIDDEN = "hidden"    # read only by covkb.arith's rules
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
# What covkb.arith computes in place of the rules it evaluates.
FED = {("age", 2): {1: OPAQUE}, ("window_start", 3): {2: ORDERED}, ("compared", 4): {}}


class Refused(Exception):
    """The knowledge base is outside what this engine evaluates exactly."""


def _constant(name: str) -> tuple:
    return (name,)


# Facts as plain Python values: numbers int, strings str, constants (name,), as covkb.terms reads them.
_VALUES = Symbols(int, str, _constant)


def _symbol(value) -> clingo.Symbol:
    if isinstance(value, int):
        return clingo.Number(value)
    if isinstance(value, str):
        return clingo.String(value)
    return clingo.Function(value[0], [])


# ---------------------------------------------------------------------------------------
# Reading kb/: which rules covkb.arith replaces, and how values flow through the rest.
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
        if element.ast_type == ast.ASTType.BodyAggregate:
            aggregated |= _variables(element)
    var_kind = {name: _kind(shape) for name, shape in shapes.items()}
    for name, kind in var_kind.items():
        if kind in (HIDDEN, SERVICE) or HIDDEN in shapes[name].values() or SERVICE in shapes[name].values():
            raise Refused(f"a rule outside covkb.arith reads a case value it cannot see: {rule}")
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
    """kb/'s statements less the rules covkb.arith replaces, and every string kb/ writes."""
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
        raise Refused(f"kb/'s arithmetic is not covkb.arith's: {differ[0]}")
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


def _compile(capture: _Capture, inputs: set[int]) -> tuple[Callable, int]:
    """Straight-line Python computing every atom's cases from the inputs' cases."""
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
    size = 1 + max([0, *inputs, *bodies, *(a for d in edges.values() for a in d)])
    lines = ["def run(v, M):"]

    def literal(lit: int) -> str:
        return f"v[{lit}]" if lit > 0 else f"(M ^ v[{-lit}])"

    def assign(head: int, rules: list, op: str) -> None:
        first = op
        for rule in rules:
            if rule[0] == "rule":
                body = rule[1]
                if not body:
                    term = "M"
                else:
                    term = " & ".join(literal(lit) for lit in body[:64])
                    for start in range(64, len(body), 64):
                        lines.append(f"    t = {term}")
                        term = "t & " + " & ".join(literal(lit) for lit in body[start:start + 64])
            else:
                _, bound, body = rule
                values = ", ".join(literal(lit) for lit, _ in body)
                weights = ", ".join(str(w) for _, w in body)
                term = f"atleast({bound}, [{values}], [{weights}], M)"
            lines.append(f"    v[{head}] {first} {term}")
            first = "|="

    for component in _components(sorted(bodies), edges):
        members = [a for a in component if a in bodies]
        if not members:
            continue
        cyclic = len(component) > 1 or component[0] in edges.get(component[0], ())
        if not cyclic:
            assign(members[0], bodies[members[0]], "=")
            continue
        inside = set(component)
        if any(negative.get(a, set()) & inside for a in component):
            raise Refused("the ground program is not stratified")
        state = ", ".join(f"v[{a}]" for a in members)
        lines.append("    while True:")
        lines.append(f"        old = ({state},)")
        for a in members:
            before = len(lines)
            assign(a, bodies[a], "|=")
            lines[before:] = ["    " + line for line in lines[before:]]
        lines.append(f"        if ({state},) == old: break")
    code = compile("\n".join(lines) + "\n    return v\n", "<covkb.engine>", "exec")
    return marshal.dumps(code), size


# ---------------------------------------------------------------------------------------
# The compiled knowledge base.
# ---------------------------------------------------------------------------------------

_STAND_IN = re.compile('"' + MARK + '[^"]*"')
_KINDS = {name: (arity, tuple(sorted(kinds.items()))) for (name, arity), kinds in INPUTS.items()}
_NAME_STANDS = [f"{MARK}n{i:02d}" for i in range(NAMES)]
_DATE_STANDS = [f"{MARK}o{i:02d}" for i in range(DATES)]
AGE = f"{MARK}age1"


@lru_cache(maxsize=1 << 14)
def _text(value) -> str:
    """clingo's text of a case value."""
    return str(_symbol(value))


@dataclass
class Compiled:
    program: bytes  # the marshalled code of run(v, M)
    size: int
    inputs: dict[tuple, int]                 # an input atom's key → its program atom
    shown: list[tuple[int, str, str, bool]]  # (atom, name, text after the key, has stand-ins)
    strings: frozenset
    versions: list[tuple[int, int]]
    candidates: list[int]
    months: list[int]
    thresholds: list[tuple[str, int]]
    facts: list[tuple[str, str]] = field(default_factory=list)  # shown atoms true for every case
    reads: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        namespace = {"atleast": _atleast}
        exec(marshal.loads(self.program), namespace)
        self.run = namespace["run"]

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("run", "reads")}

    def __setstate__(self, state):
        self.__dict__.update(state, reads={})
        self.__post_init__()

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
        from covkb.decide import Policy, Shown, _read

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
            _read(self._atoms(v, everyone, encoded), shown, Policy())
        if rest:
            shown.update(fallback(rest))
        return shown

    def _atoms(self, v, everyone, encoded):
        keys = [key for key, _ in encoded]
        read = self.read
        for name, text in self.facts:
            got = read(text)
            for key in keys:
                yield name, key, got
        for atom, name, text, marked in self.shown:
            cases = v[atom]
            if not cases:
                continue
            got = None if marked else read(text)
            while cases:
                low = cases & -cases
                bit = low.bit_length() - 1
                cases ^= low
                if marked:
                    stand = encoded[bit][1][1]
                    yield name, keys[bit], read(_STAND_IN.sub(lambda m: stand[m.group(0)[1:-1]], text))
                else:
                    yield name, keys[bit], got


def build(directory: Path) -> Compiled:
    """Ground kb/ once for the abstract case and compile it; Refused when it cannot be exact."""
    from covkb.decide import kb_files

    files = kb_files(directory)
    statements, strings = _read_kb(files)
    plain = clingo.Control(["--warn=none"])
    for path in files:
        plain.load(str(path))
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
    where = ast.Location(ast.Position("<covkb.engine>", 1, 1), ast.Position("<covkb.engine>", 1, 1))
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
    program, size = _compile(capture, set(inputs.values()))
    shown, always = [], []
    for symbol, atom in capture.shown:
        args = symbol.arguments
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
    return Compiled(program, size, inputs, shown, frozenset(strings), versions, candidates, months,
                    thresholds, always)


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


def _cache_file(directory: Path) -> Optional[Path]:
    """Where the build of this kb/ is kept: named by the hash of everything the build reads
    (kb/, the modules that define the case vocabulary and its domains, clingo, Python)."""
    import hashlib
    import os

    from covkb import case, decide, facts

    root = os.environ.get("COVKB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "covkb")
    if root == "off":
        return None
    digest = hashlib.sha256(f"{clingo.__version__} {sys.version}".encode())
    for path in [*decide.kb_files(directory), Path(__file__), Path(arith.__file__),
                 Path(facts.__file__), Path(case.__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return Path(root) / f"engine-{digest.hexdigest()[:32]}.pickle"


def _build_apart(directory: Path):
    """The Compiled (or Refused) for kb/: from the cache when this very kb/ was built
    before, else built in a child interpreter, so that clingo's ground program and the
    compiler's memory never enter this process (batch workers fork from it)."""
    import os
    import pickle

    try:
        cache = _cache_file(directory)
        if cache is not None:
            return pickle.loads(cache.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        pass
    got = _build_child(directory)
    if cache is not None:
        try:  # written whole, then renamed: a reader never sees half a file
            cache.parent.mkdir(parents=True, exist_ok=True)
            part = cache.with_suffix(f".{os.getpid()}.part")
            part.write_bytes(pickle.dumps(got))
            os.replace(part, cache)
        except OSError:
            pass
    return got


def _build_child(directory: Path):
    import pickle
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-m", "covkb.engine", str(directory)],
                              capture_output=True, check=True)
        return pickle.loads(done.stdout)
    except (OSError, subprocess.CalledProcessError, pickle.UnpicklingError, EOFError):
        try:  # whatever stopped the child, the same build here
            return build(directory)
        except Refused as error:
            return error


def refusal(directory: Path) -> Optional[str]:
    got = _built.get(directory)
    return str(got) if isinstance(got, Refused) else None


if __name__ == "__main__":  # python -m covkb.engine KB_DIR: the pickled Compiled (or Refused) on stdout
    import pickle

    from covkb import engine  # pickled by their importable names, not __main__'s

    try:
        result = engine.build(Path(sys.argv[1]))
    except engine.Refused as error:
        result = error
    sys.stdout.buffer.write(pickle.dumps(result))
