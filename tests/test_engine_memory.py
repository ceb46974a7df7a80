"""A long-lived process stays bounded when every request carries new names: on the compiled
path no clingo symbol is made per case value (clingo keeps every symbol for the life of
the process), and what the engine keeps is kb/'s, whatever the cases hold."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import clingo
import pytest
from hypothesis import given, strategies as st

from covkb.engine import capi
from covkb.engine import reference
from covkb.engine.kb import kb_dir
from covkb.engine import compiled as engine
from covkb.engine import facts
from covkb.api import determine
from covkb.input.text import from_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from make_cases import synthetic  # noqa: E402


def _fresh(rng: random.Random, index: int, batch: int) -> bytes:
    """A case whose every free-text name is new: never seen in any other case."""
    data = synthetic(rng, index)
    tag = f"{batch}-{index}"
    data["case_id"] = f"PA-{tag}-\"quoted\"\\"
    data["prior_lines"] = [line + [f"agent {tag} {n}"] for n, line in enumerate(data.get("prior_lines") or [["VRd"]])][:3]
    data["clinical_trials"] = [f"TRIAL {tag}"]
    data["prior_cell_therapies"] = [f"product {tag}"]
    return json.dumps(data).encode()


@pytest.fixture
def symbols_made(monkeypatch):
    """Counts every clingo symbol made through the Python API or covkb.engine.capi; deciding
    through clingo at all counts too."""
    made = {"count": 0}

    def counting(make):
        def wrapped(*args, **kwargs):
            made["count"] += 1
            return make(*args, **kwargs)
        return wrapped

    for module in (clingo, facts):
        for name in ("String", "Function", "Number", "Tuple_"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counting(getattr(module, name)))
    for name in ("string", "number", "constant"):
        if hasattr(capi, name):
            monkeypatch.setattr(capi, name, counting(getattr(capi, name)))
    monkeypatch.setattr(reference, "solve", counting(reference.solve))
    return made


def test_new_names_in_every_request_make_no_clingo_symbol_and_keep_nothing(monkeypatch, symbols_made):
    monkeypatch.setenv("COVKB_ENGINE", "compiled")
    kb = kb_dir()
    compiled = engine.compiled(kb)
    assert compiled is not None
    reference.policy()
    rng = random.Random(5)
    kept = []
    for batch in range(6):  # requests one after another, each with names never seen before
        cases = [from_json(_fresh(rng, i, batch)) for i in range(40)]
        symbols_made["count"] = 0
        assert all(compiled.encode(case, None) is not None for case in cases)  # all compiled
        results = determine(cases)
        assert symbols_made["count"] == 0
        assert {r.case_id for r in results} == {c.case_id for c in cases}
        kept.append(len(compiled.reads))
        assert len(compiled.owned) <= engine.OWNED
    # what the engine keeps between requests is bounded by kb/'s shown atoms, not the cases
    assert max(kept) <= len(compiled.shown) + len(compiled.facts)


def test_the_table_of_case_texts_is_cleared_when_full(monkeypatch):
    monkeypatch.setenv("COVKB_ENGINE", "compiled")
    monkeypatch.setattr(engine, "OWNED", 25)
    compiled = engine.compiled(kb_dir())
    rng = random.Random(6)
    for batch in range(3):
        determine([from_json(_fresh(rng, i, batch)) for i in range(30)])
        assert len(compiled.owned) <= 25


@given(st.text(max_size=30))
def test_a_value_s_text_is_clingo_s(text):
    assert engine._text(text) == str(clingo.String(text))


@pytest.mark.parametrize("value", [0, -7, 2024041, 10**9, ("true",), ("lymphodepletion",)])
def test_numbers_and_constants_read_as_clingo_writes_them(value):
    symbol = clingo.Number(value) if isinstance(value, int) else clingo.Function(value[0], [])
    assert engine._text(value) == str(symbol)
