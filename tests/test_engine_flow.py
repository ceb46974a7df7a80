"""The taint analysis that lets kb/ be ground once for stand-ins (engine._flow): each rule
shape it must refuse is refused, and the shapes the soundness argument allows pass.

Every case here follows from the argument in covkb.engine.compiled's docstring: a stand-in may be
passed on; a name joined or compared for (in)equality; a date compared with another date;
nothing else."""

from __future__ import annotations

import pytest
from clingo import ast

from covkb.engine import compiled as engine


def _rules(text: str) -> list:
    found: list = []
    ast.parse_string(text, found.append)
    return [s for s in found if s.ast_type == ast.ASTType.Rule]


ALLOWED = {
    "the age passed on": "older(K,A) :- age(K,A). said(K,A) :- older(K,A).",
    "a name joined with a kb/ table": 'imid(K,L) :- agent(K,L,N), class(N,imid). class("lenalidomide",imid).',
    "two names compared for equality": "same(K) :- trial(K,N), cell_therapy(K,M), N = M.",
    "two names compared for inequality": "other(K) :- trial(K,N), cell_therapy(K,M), N != M.",
    "a name compared with a kb/ string": 'karmma(K) :- trial(K,N), N = "karmma".',
    "two dates compared": "recent(K) :- cardiac(K,D), window_start(K,6,S), S <= D.",
    "a date passed on inside a term": "because(K,on(D)) :- cardiac(K,D).",
    "a count over line numbers, which are no stand-ins": "n(K,N) :- case(K), N = #count{ L : prior_line(K,L) }.",
    # a stand-in never unifies with f(D), nor does the value it stands for
    "a date position matched against a function term": "d(K) :- cardiac(K,f(D)).",
    "a fed comparison read": 'low(K) :- compared(K,"lvef_percent",45,below).',
}

REFUSED = {
    "a name ordered": ("early(K) :- trial(K,N), cell_therapy(K,M), N < M.", "comparison"),
    "a date compared with a constant": ("old(K) :- cardiac(K,D), D < 20200101.", "comparison"),
    "the age compared with a number": ("old(K) :- age(K,A), A > 80.", "comparison"),
    "arithmetic on the age": ("next(K,A+1) :- age(K,A).", "arithmetic"),
    "the age equated with a sum": ("next(K,B) :- age(K,A), B = A + 1.", "comparison"),
    "the age joined with kb/ data": ("limit(80). old(K) :- age(K,A), limit(A).", "joins"),
    "a date joined with a name": ('odd(K) :- cardiac(K,D), name(D,_). name("x",y).', "joins"),
    "a name inside an aggregate": ("many(K,C) :- case(K), C = #count{ N : trial(K,N) }.", "aggregate"),
    "a raw number read": ('big(K) :- number(K,F,I,_), I > 5.', "cannot see"),
    "the date of service read": ("late(K,D) :- date_of_service(K,D).", "cannot see"),
    "kb/ deriving case vocabulary": ('agent(K,1,"x") :- case(K).', "case vocabulary"),
    "one argument holding two kinds": ("m(K,A) :- age(K,A). m(K,D) :- cardiac(K,D).", "two kinds"),
    "a variable joining two kinds": ("j(K) :- age(K,A), cardiac(K,A).", "two kinds"),
    # the kind is carried through a derived predicate before it is misused: the fixpoint
    "a passed-on age compared later": ("q(K,A) :- age(K,A). r(K) :- q(K,A), A > 5.", "comparison"),
    "a passed-on name ordered two rules later":
        ("p(K,N) :- trial(K,N). q(K,N) :- p(K,N). r(K) :- q(K,N), q(K,M), N < M.", "comparison"),
    "a date matched by a computed term": ("d(K) :- cardiac(K,D+1).", "computed term"),
    # #sum skips a weight that is not a number: a stand-in would weigh 0 where the age does not
    "the age summed": ("s(K,S) :- case(K), S = #sum{ A : age(K,A) }.", "aggregate"),
    "a date's maximum": ("m(K,M) :- case(K), M = #max{ D : cardiac(K,D) }.", "aggregate"),
}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_what_the_argument_allows_passes(name):
    engine._flow(_rules(ALLOWED[name]))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_the_argument_forbids_is_refused(name):
    text, why = REFUSED[name]
    with pytest.raises(engine.Refused) as refused:
        engine._flow(_rules(text))
    assert why in str(refused.value)


def test_the_shipped_kb_passes_the_analysis():
    from covkb.engine import kb

    statements, strings = engine._read_kb(kb.kb_files())
    assert statements and strings
    assert not any(engine.MARK in s for s in strings)
