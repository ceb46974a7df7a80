"""Facts in and atoms out through clingo's C API (covkb.capi) decide exactly as
through clingo's Python API: the same results, byte for byte, for any batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from cases import _exact, case
from covkb import capi
from covkb.api import determine
from covkb.case import from_object, load
from covkb.render import as_json
from strategies import cases

FACTS = Path(__file__).resolve().parents[1] / "facts"
IDS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40)


def both(items, version=None, monkeypatch=None) -> tuple[list[str], list[str]]:
    monkeypatch.delenv("COVKB_PUBLIC_API", raising=False)
    assert capi.enabled()
    fast = [as_json(r) for r in determine(items, version)]
    monkeypatch.setenv("COVKB_PUBLIC_API", "1")
    assert not capi.enabled()
    public = [as_json(r) for r in determine(items, version)]
    monkeypatch.delenv("COVKB_PUBLIC_API")
    return fast, public


def test_the_installed_clingo_offers_the_c_api_path():
    # otherwise every other test here compares the Python API with itself
    assert capi.AVAILABLE


def test_every_bundled_example_decides_alike(monkeypatch):
    items = [load(path) for path in sorted(FACTS.glob("*")) if path.suffix in (".json", ".yaml", ".lp")]
    assert len(items) >= 20
    fast, public = both(items, monkeypatch=monkeypatch)
    assert fast == public


@given(st.lists(st.tuples(cases(), IDS), min_size=1, max_size=12),
       st.sampled_from([None, "2024-08-21", "2025-11-01"]))
def test_any_batch_decides_alike(batch, version):
    with pytest.MonkeyPatch.context() as monkeypatch:
        items = []
        for data, ident in batch:
            data = dict(data, case_id=ident)
            items.append(from_object(_exact(data)))
        fast, public = both(items, version, monkeypatch)
        assert fast == public


def test_quotes_and_backslashes_in_a_case_id_come_back_as_given(monkeypatch):
    ident = 'A "quoted" \\ id, with (parens) and\ta tab'
    fast, public = both([from_object(_exact(case(case_id=ident)))], monkeypatch=monkeypatch)
    assert fast == public
    assert ident.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") in fast[0]
