"""Fuzz: arbitrary JSON, YAML and .lp text is decided or refused as bad input, within a
time and memory budget per case: never another exception, never a hang (reading 2, §3,
§4.14: no input may make a case take more than a fraction of a second or more than a
few megabytes). The ci profile runs more examples."""

from __future__ import annotations

import json
import os
import time
import tracemalloc

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from cases import case
from covkb.api import check
from covkb.input.case import InvalidCase, from_object
from covkb.input.text import from_json, from_yaml
from covkb.input.lp import parse_lp

# Per case: CPU seconds of this process (not wall time: a busy machine does not lengthen
# it, so the verdict never depends on load) and Python memory at its peak. The budget is
# generous: a case takes milliseconds; what this catches is input that makes the work
# grow without bound. Measured after the fact, never by a signal that interrupts the code
# under test (an exception raised from a signal handler can land mid-instruction, in
# pytest's own code as well as ours).
CPU_SECONDS = 5.0
MEGABYTES = 32
EXAMPLES = 250 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 25
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def decided_or_refused(read, text) -> None:
    """read(text) then decide: must end in a decision or InvalidCase, within budget."""
    tracemalloc.start()
    started = time.process_time()
    try:
        try:
            one = read(text)
        except InvalidCase as error:
            assert error.message
        else:
            assert check(one).decision in ("covered", "not_covered", "pending", "not_applicable")
    finally:
        spent = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert spent < CPU_SECONDS, f"{spent:.2f} CPU seconds"
    assert peak < MEGABYTES * 2**20, f"{peak / 2**20:.1f} MB"


FIELDS = ["case_id", "date_of_service", "plan", "member", "prescriber", "diagnosis", "prior_lines",
          "prior_cell_therapies", "clinical_trials", "concurrent_therapies", "prior_allogeneic_transplant",
          "creatinine_clearance_ml_min", "lvef_percent", "significant_cardiac_disease_dates", "infections",
          "organ_function_adequate", "dose_million_car_t_cells", "compendium", "age", "agent", "purpose"]
NUMBERS = st.sampled_from(["1e-999999999", "1e999999999", "9" * 45, "0." + "0" * 50 + "1", "4.5e1", "-0",
                           "45.0000000001", "1E+40", "1e41", "123456789012345678901234567890123456789.5",
                           "9" * 5000])
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=30) | st.sampled_from(["2025-11-12", "2025-02-30", "0000-01-01", "Abecma",
                                                     "lymphodepletion", "2A", "\x1b[2J", "\u202e"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
                      max_leaves=25)


@st.composite
def case_like(draw):
    """A valid case with some fields replaced by anything at all."""
    data = case()
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.sampled_from(FIELDS))] = draw(VALUES)
    return data


def spliced(text: str, fragment: str, at: int) -> str:
    at = at % (len(text) + 1)
    return text[:at] + fragment + text[at:]


JSON_FRAGMENTS = st.sampled_from(['"case_id": "x", ', '"lvef_percent": 1, "lvef_percent": 2, ', "[" * 3000,
                                  "{" * 500, '"\\ud800"', "\\u0000", "\x1b]0;x\x07", "NaN", "Infinity", ",",
                                  '"\\\\"', "\ufeff"]) | NUMBERS


@st.composite
def json_texts(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return json.dumps(draw(VALUES))
    text = json.dumps(draw(case_like()))
    if kind == 1:
        return text
    if kind == 2:
        return spliced(text, draw(JSON_FRAGMENTS), draw(st.integers(0, 10_000)))
    return draw(st.text(max_size=300))


YAML_FRAGMENTS = st.sampled_from([
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
    "x: !!python/object/apply:os.system [echo]\n", "? [a, b]\n: c\n", "<<: {lvef_percent: 1}\n",
    "date_of_service: 2025-02-30\n", "lvef_percent: 0x1F\n", "dose_million_car_t_cells: 1_000\n",
    "lvef_percent: .inf\n", "case_id: ~\n", "---\na: 1\n", "%YAML 1.1\n---\n", "case_id: a\ncase_id: b\n",
    "deep: " + "[" * 2000 + "\n", "m: !!binary aGVsbG8=\n", "t: !!timestamp 2025-11-12T10:00:00Z\n",
    "lvef_percent: 1e-999999999\n", "lvef_percent: " + "9" * 5000 + "\n", "\t", ": :", "&x *x\n"])


@st.composite
def yaml_texts(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return yaml.safe_dump(draw(VALUES))
    text = yaml.safe_dump(draw(case_like()), default_flow_style=draw(st.booleans()))
    if kind == 1:
        return text
    if kind == 2:
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, len(lines)))
        return "".join(lines[:at]) + draw(YAML_FRAGMENTS) + "".join(lines[at:])
    return draw(st.text(max_size=300))


LP_PIECES = st.sampled_from([
    'case_id("PA-1").', 'date_of_service("2025-11-12").', 'date_of_service("2025-02-30").',
    'value("lvef_percent", "44.99").', 'value("lvef_percent", 1e5).', 'value("member.age", 40).',
    'value("prescriber.specialist", true).', 'value("a.b.c.d", 1).', 'prior_line(1, "Rd").',
    'prior_line(0, "x").', 'prior_cell_therapy("ide-cel").', 'clinical_trial("KarMMa").',
    'concurrent_therapy("fludarabine", lymphodepletion).', 'none("prior_cell_therapies").',
    'cardiac_disease_date("2025-06-01").', "%* ", " *%", "% c", "\n", ":- x.", "#include \"a\".",
    "p(X).", '"', ".", "(", "value(", 'value("lvef_percent", ' + "9" * 5000 + ").",
    'value("dose_million_car_t_cells", "1e-999999999").', 'case_id("\\u001b").'])


@st.composite
def lp_texts(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=300))
    return "\n".join(draw(st.lists(LP_PIECES, max_size=14)))


@FUZZ
@given(json_texts())
def test_any_json_text_is_decided_or_refused_within_budget(text):
    decided_or_refused(from_json, text)


@FUZZ
@given(yaml_texts())
def test_any_yaml_text_is_decided_or_refused_within_budget(text):
    decided_or_refused(from_yaml, text)


@FUZZ
@given(lp_texts())
def test_any_lp_text_is_decided_or_refused_within_budget(text):
    decided_or_refused(lambda t: from_object(parse_lp(t)), text)


@pytest.mark.parametrize("read, text", [
    (from_json, '{"case_id": "A", "date_of_service": "2025-11-12", "lvef_percent": 1e-999999999}'),
    (from_json, '{"case_id": "A", "date_of_service": "2025-11-12", "member": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    (from_yaml, "case_id: A\ndate_of_service: 2025-11-12\n"
     + "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
         f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))),
    (lambda t: from_object(parse_lp(t)), 'case_id("A").\ndate_of_service("2025-11-12").\n%* open\n'),
])
def test_the_reported_attacks_are_refused_within_budget(read, text):
    decided_or_refused(read, text)
