"""The compiled engine gives, byte for byte, what clingo's own solving gives.

clingo is the reference (COVKB_ENGINE=clingo); every expected value here is clingo's
result on the same cases. A knowledge base the compiled engine cannot evaluate exactly
must be refused - clingo then decides - so a kb change only ever costs speed.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from covkb.engine.kb import kb_dir
from covkb.engine import compiled as engine
from covkb.api import determine
from covkb.input.case import InvalidCase, from_object
from covkb.input.text import from_json
from covkb.input.files import load
from covkb.results.render import as_json
from strategies import cases as case_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from make_cases import synthetic  # noqa: E402

VERSIONS = [None, "2024-08-21", "2025-11-01", "2023-01-01"]


def _lines(cases, version=None, directory=None, engine_name="compiled", monkeypatch=None) -> list[str]:
    monkeypatch.setenv("COVKB_ENGINE", engine_name)
    return [as_json(result) for result in determine(cases, version, directory)]


def _same(cases, monkeypatch, version=None, directory=None) -> list[str]:
    clingo = _lines(cases, version, directory, "clingo", monkeypatch)
    compiled = _lines(cases, version, directory, "compiled", monkeypatch)
    assert compiled == clingo
    return compiled


def test_the_knowledge_base_compiles():
    assert engine.compiled(kb_dir()) is not None, engine.refusal(kb_dir())


def _bundled() -> list:
    """Every valid case in facts/ (the batch example holds invalid lines on purpose)."""
    found = []
    for path in sorted((ROOT / "facts").iterdir()):
        if path.suffix == ".jsonl":
            for line in path.read_bytes().splitlines():
                try:
                    found.append(from_json(line))
                except InvalidCase:
                    continue
        elif path.suffix in (".json", ".yaml", ".yml", ".lp"):
            found.append(load(path))
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_bundled_facts_decide_alike(version, monkeypatch):
    cases = _bundled()
    assert cases
    _same(cases, monkeypatch, version)


@pytest.mark.parametrize("seed", [2024041, pytest.param(17, marks=pytest.mark.slow)])
def test_generated_cases_decide_alike(seed, monkeypatch):
    rng = random.Random(seed)
    cases = [from_json(json.dumps(synthetic(rng, i)).encode()) for i in range(1500)]
    _same(cases, monkeypatch)


@settings(max_examples=20)
@given(st.lists(case_data(), min_size=1, max_size=40), st.sampled_from(VERSIONS))
def test_hypothesis_batches_decide_alike(items, version):
    cases = [from_object(_exact(data)) for data in items]
    with pytest.MonkeyPatch.context() as patch:
        _same(cases, patch, version)


def _exact(data):
    from cases import _exact as exact

    return exact(data)


def test_cases_beyond_the_slots_are_decided_by_clingo_alongside(monkeypatch):
    rng = random.Random(5)
    base = synthetic(rng, 0)
    many_lines = dict(base, prior_lines=[["VRd"]] * (engine.LINES + 1))
    many_names = dict(base, prior_lines=[[f"unheard-of {i}" for i in range(engine.NAMES + 1)]])
    many_dates = dict(base, significant_cardiac_disease_dates=[
        f"2024-0{m}-1{d}" for m in range(1, 6) for d in range(2)])
    items = [base, many_lines, many_names, many_dates]
    cases = [from_json(json.dumps(data).encode()) for data in items]
    compiled = engine.compiled(kb_dir())
    assert compiled.encode(cases[0], None) is not None
    assert [compiled.encode(case, None) for case in cases[1:]] == [None, None, None]
    _same(cases, monkeypatch)


def _kb_with(tmp_path: Path, extra: str = "", replace: tuple[str, str] = ("", "")) -> Path:
    kb = tmp_path / "kb"
    shutil.copytree(kb_dir(), kb)
    core = kb / "core.lp"
    text = core.read_text()
    if replace[0]:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1])
    core.write_text(text + extra)
    return kb


def _sample() -> list:
    rng = random.Random(11)
    return [from_json(json.dumps(synthetic(rng, i)).encode()) for i in range(150)] + _bundled()


# Each refused kb/ is a compile of its own (seconds): one refusal in the default run, the
# rest in the slow profile.
_SLOW = pytest.mark.slow


@pytest.mark.parametrize("change, reason", [
    (("", ""), None),
    # arithmetic other than covkb.engine.arith's: the threshold comparison moved by one
    (("number(K,F,I,_), I > T.", "number(K,F,I,_), I >= T."), "arithmetic"),
    # a choice rule
    pytest.param(("", "\n{ chosen(K) } :- case(K).\n"), "choice", marks=_SLOW),
    # negation through a cycle
    pytest.param(("", "\np(K) :- case(K), not q(K).\nq(K) :- case(K), not p(K).\n"), "stratified", marks=_SLOW),
    # the age compared with a number
    pytest.param(("", "\nmissing(K,\"member.age\") :- age(K,A), A > 80.\n"), "comparison", marks=_SLOW),
    # a name's spelling joined with a date
    pytest.param(("", "\nmissing(K,\"significant_cardiac_disease_dates\") :- cardiac(K,D), name(D,_).\n"), "joins",
                 marks=_SLOW),
    # a constraint
    pytest.param(("", "\n:- case(K), bool(K,\"plan.walmart_associates_plan\",true), bool(K,\"plan.group_specific_policy\",true).\n"),
                 "constraint", marks=_SLOW),
])
def test_a_kb_it_cannot_evaluate_is_refused_and_clingo_decides(change, reason, tmp_path, monkeypatch):
    replace, extra = (change, "") if change[0] else (("", ""), change[1])
    kb = _kb_with(tmp_path, extra, replace)
    compiled = engine.compiled(kb)
    if reason is None:
        assert compiled is not None
    else:
        assert compiled is None
        assert reason in engine.refusal(kb)
    if reason != "constraint":
        _same(_sample(), monkeypatch, directory=kb)


@pytest.mark.slow
def test_a_new_name_in_kb_is_compiled_with_the_kb(tmp_path, monkeypatch):
    kb = _kb_with(tmp_path, '\nname("lenalidomide capsules", lenalidomide).\n')
    assert engine.compiled(kb) is not None
    data = synthetic(random.Random(3), 0)
    data["prior_lines"] = [["Lenalidomide  Capsules", "Velcade"], ["Darzalex"]]
    cases = [from_json(json.dumps(data).encode())]
    lines = _same(cases, monkeypatch, directory=kb)
    assert "'Lenalidomide  Capsules' is an immunomodulatory agent" in lines[0]


def test_verbose_says_why_clingo_decides(tmp_path, capsys):
    kb = _kb_with(tmp_path, "\n{ chosen(K) } :- case(K).\n")
    assert engine.compiled(kb, verbose=True) is None
    assert "clingo decides" in capsys.readouterr().err


def test_explanations_alike(monkeypatch):
    from covkb.api import determine_explained

    cases = _sample()
    monkeypatch.setenv("COVKB_ENGINE", "clingo")
    clingo = determine_explained(cases)
    monkeypatch.setenv("COVKB_ENGINE", "compiled")
    assert determine_explained(cases) == clingo


@pytest.mark.slow  # each case decided alone by clingo as well: seconds
@settings(max_examples=10)
@given(st.lists(case_data(), min_size=1, max_size=30))
def test_a_batch_chunk_writes_what_clingo_decides_one_case_at_a_time(items):
    """The batch path (raw lines decoded, decided together by the compiled engine, its
    result lines written) gives, line for line, clingo's result for each case alone."""
    from covkb.surfaces.batch import decide_chunk

    import msgspec

    encode = msgspec.json.Encoder(decimal_format="number").encode  # exact decimals as JSON numbers
    raws = [encode(_exact(data)) for data in items]
    blob = b"".join(raw + b"\n" for raw in raws)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COVKB_ENGINE", "compiled")
        lines = decide_chunk((1, blob)).text.splitlines()
        patch.setenv("COVKB_ENGINE", "clingo")
        alone = [as_json(determine([from_json(raw)])[0]) for raw in raws]
    assert lines == alone
