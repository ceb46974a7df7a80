"""Hostile and broken input: nothing crashes, nothing leaks into the rules."""

import copy
import json
import re

import pytest
from hypothesis import given, strategies as st

from cases import case, decide, statuses
from covkb.api import check
from covkb.input.case import InvalidCase, MAX_ITEMS, MAX_STRING, from_object
from covkb.input.text import from_json, from_yaml
from covkb.input.lp import parse_lp

HOSTILE = st.one_of(
    st.sampled_from([
        'x"). covered. %', "a\\\"b", "\\", ".", "%", ":- not covered.", "#include \"/etc/passwd\".",
        "#script (python)\nimport os\n#end.", "line\nbreak", "\u202eevil\u202c", "1.", "a.b(c)",
        "decision(1,covered,meets_primary_coverage_criteria).", "X", "_", "\"\"", "'", "\t\r\n",
        "#const x=1.", "%* block", "*%", "not", "{", "}", ";", "|", "@f(1)",
    ]),
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
            min_size=1, max_size=60),
)
PLAIN = "plainunknownname"
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")

# Where a string sits in a case, and what it may be compared with there.
PLACES = {
    "case_id": lambda d, s: d.update(case_id=s),
    "agent": lambda d, s: d.update(prior_lines=[["Revlimid", "Velcade", s], ["Darzalex"]]),
    "product": lambda d, s: d.update(prior_cell_therapies=[s]),
    "trial": lambda d, s: d.update(clinical_trials=[s]),
    "concurrent agent": lambda d, s: d.update(concurrent_therapies=[{"agent": s, "purpose": "supportive"}]),
    "indication": lambda d, s: d.update(compendium={"indication": s}),
}


def _outcome(data):
    result = decide(data)
    return result.version, result.decision, result.label, statuses(result), result.missing


@given(st.sampled_from(sorted(PLACES)), HOSTILE)
def test_a_hostile_string_decides_as_a_plain_unknown_string_would(place, text):
    if not " ".join(text.casefold().split()):
        text = text + "x"
    hostile, plain = case(), case()
    PLACES[place](hostile, text)
    PLACES[place](plain, PLAIN)
    try:
        outcome = _outcome(hostile)
    except InvalidCase:  # reading 3: a control character in a string is bad input
        assert CONTROL.search(text) or (not text.strip() and place != "case_id")
        return
    known_names = {"abecma", "ide-cel", "carvykti", "cilta-cel", "kymriah", "revlimid"}
    if place in ("agent", "product", "trial") and " ".join(text.casefold().split()) in known_names:
        return  # a real name, rightly recognised
    assert outcome == _outcome(plain)


def test_case_id_comes_back_exactly():
    for text in ['x"). covered. %', "a\\b", "\u202e"]:
        assert decide(case(case_id=text)).case_id == text


@pytest.mark.parametrize("text", ["line\nbreak", "bell\x07", "\x1b[32mCOVERED\x1b[0m", "carriage\rreturn",
                                  "\x1b]0;title\x07", "del\x7f", "c1\x9b31m"])
def test_a_control_character_in_any_string_is_refused_naming_the_field(text):
    # reading 3: control characters in a string are bad input; they could rewrite a terminal.
    # Tab is white space, which names fold: it stays.
    for changes, path in (({"case_id": text}, "case_id"),
                          ({"prior_lines": [["Rd", text], ["Vd"]]}, "prior_lines[0][1]"),
                          ({"compendium": {"indication": text}}, "compendium.indication")):
        with pytest.raises(InvalidCase) as raised:
            from_json(json.dumps(case(**changes)))
        assert raised.value.path == path and "control characters" in raised.value.message


def test_a_lone_surrogate_is_refused():
    with pytest.raises(InvalidCase) as raised:
        from_json(b'{"case_id": "\\ud800", "date_of_service": "2025-11-12"}')
    assert "surrogate" in raised.value.message
    with pytest.raises(InvalidCase) as raised:  # YAML can carry one
        from_yaml('case_id: "\\ud800x"\ndate_of_service: 2025-11-12\n')
    assert raised.value.path == "case_id"


def test_nul_in_a_string_is_refused():
    with pytest.raises(InvalidCase) as raised:
        from_object(case(prior_lines=[["lenalidomide\x00evil"], ["Vd"]]))
    assert raised.value.path == "prior_lines[0][0]"


@pytest.mark.parametrize("changes, path", [
    ({"case_id": "x" * (MAX_STRING + 1)}, "case_id"),
    ({"prior_lines": [["Rd"]] * (MAX_ITEMS + 1)}, "prior_lines"),
    ({"prior_lines": [["Rd"] * (MAX_ITEMS + 1)]}, "prior_lines[0]"),
    ({"clinical_trials": ["x"] * (MAX_ITEMS + 1)}, "clinical_trials"),
    ({"prior_cell_therapies": ["y" * (MAX_STRING + 1)]}, "prior_cell_therapies[0]"),
    ({"creatinine_clearance_ml_min": 10 ** 10}, "creatinine_clearance_ml_min"),
])
def test_limits_give_a_clear_error(changes, path):
    with pytest.raises(InvalidCase) as raised:
        from_json(json.dumps(case(**changes)))
    assert raised.value.path == path


def test_a_megabyte_string_is_refused_without_a_crash():
    with pytest.raises(InvalidCase) as raised:
        from_json(json.dumps(case(case_id="x" * 1_000_000)))
    assert "1000000 bytes" in raised.value.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
KEYS = st.sampled_from(["case_id", "date_of_service", "member", "prior_lines", "diagnosis",
                        "lvef_percent", "concurrent_therapies", "infections", "compendium"])


@given(st.one_of(JSON, st.dictionaries(KEYS, JSON, max_size=6)))
def test_any_json_value_is_decided_or_refused_cleanly(value):
    text = json.dumps(value)
    try:
        one = from_json(text)
    except InvalidCase as error:
        assert error.message
        return
    assert check(one).decision in ("covered", "not_covered", "pending", "not_applicable")


@given(st.binary(max_size=200))
def test_any_bytes_as_a_json_case_are_refused_cleanly(data):
    try:
        from_json(data)
    except InvalidCase:
        pass


@given(st.text(max_size=200))
def test_any_text_as_an_lp_case_is_read_or_refused_cleanly(text):
    try:
        facts = parse_lp(text)
    except InvalidCase as error:
        assert error.path.startswith("line") or error.path == ""
        return
    try:
        from_object(facts)
    except InvalidCase:
        pass


@given(st.lists(st.sampled_from(['case_id("a").', 'date_of_service("2025-11-12").',
                                 'value("lvef_percent", "44.99").', 'prior_line(1, "Rd").',
                                 ':- x.', '#include "y".', 'p(X).', 'value("a", 1', '%c\n',
                                 'none("clinical_trials").', '"', '.', 'x :- y.']), max_size=8))
def test_lp_fragments_are_read_or_refused_with_a_line(parts):
    try:
        parse_lp("\n".join(parts))
    except InvalidCase as error:
        assert error.path.startswith("line")
