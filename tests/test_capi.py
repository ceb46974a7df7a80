"""Facts in and atoms out through clingo's C API (covkb.engine.capi) decide exactly as
through clingo's Python API: the same results, byte for byte, for any batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from cases import _exact, case
from covkb.engine import capi
from covkb.api import determine
from covkb.input.case import from_object
from covkb.input.files import load
from covkb.results.render import as_json
from strategies import cases

FACTS = Path(__file__).resolve().parents[1] / "facts"
IDS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


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



def _switching_often(threads) -> None:
    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)


def test_each_thread_gets_the_symbols_it_asked_for():
    # cffi lets go of the GIL inside each C call: a shared output slot would hand a
    # thread another thread's symbol.
    import threading

    import clingo

    wrong: list = []

    def work(thread: int) -> None:
        for i in range(30_000):
            text = f"t{thread}-{i % 64}"
            if clingo.Symbol(capi.string(text)).string != text or \
                    clingo.Symbol(capi.number(thread * 100_000 + i)).number != thread * 100_000 + i:
                wrong.append((thread, i))
                return

    _switching_often([threading.Thread(target=work, args=(n,)) for n in range(4)])
    assert wrong == []


def test_threads_deciding_at_once_get_the_decisions_one_thread_gets(monkeypatch):
    import threading

    monkeypatch.delenv("COVKB_PUBLIC_API", raising=False)
    items = [from_object(_exact(case(case_id=f"T{i}", lvef_percent=i % 101,
                                     dose_million_car_t_cells=250 + i % 300,
                                     member={"age": i % 90})))
             for i in range(40)]
    expected = [as_json(r) for r in determine(items, "2024-08-21")]
    failures: list = []

    def work(offset: int) -> None:
        for round in range(8):
            start = (offset * 7 + round * 13) % len(items)
            got = [as_json(r) for r in determine((items[start:] + items[:start])[:5], "2024-08-21")]
            if got != (expected[start:] + expected[:start])[:5]:
                failures.append((offset, round))

    _switching_often([threading.Thread(target=work, args=(n,)) for n in range(4)])
    assert failures == []
