"""Bad input is an error naming the field, never a guess (reading 3)."""

import json
from decimal import Decimal

import pytest

from cases import case
from covkb.input.case import Case, InvalidCase, from_object
from covkb.input.text import from_json, from_yaml
from covkb.input.lp import parse_lp


@pytest.mark.parametrize("changes, path", [
    ({"diagnosis": {"relapse": True}}, "diagnosis.relapse"),                # typo, nested
    ({"creatinine_clearence_ml_min": 50}, "creatinine_clearence_ml_min"),   # typo, top level
    ({"prescriber": {"specialist": "yes"}}, "prescriber.specialist"),       # "yes" for a bool
    ({"prior_lines": "VRd"}, "prior_lines"),                                # a string for a list
    ({"prior_lines": [["VRd"], []]}, "prior_lines[1]"),                     # an empty line of therapy
    ({"date_of_service": "2025-02-29"}, "date_of_service"),                 # impossible date
    ({"date_of_service": "12/11/2025"}, "date_of_service"),
    ({"case_id": ""}, "case_id"),
    ({"creatinine_clearance_ml_min": -1}, "creatinine_clearance_ml_min"),
    ({"lvef_percent": 100.5}, "lvef_percent"),
    ({"dose_million_car_t_cells": 0}, "dose_million_car_t_cells"),
    ({"member": {"age": 131}}, "member.age"),
    ({"member": {"age": -1}}, "member.age"),
    ({"member": {"birth_date": "2025-11-13"}}, "member.birth_date"),        # after the date of service
    ({"significant_cardiac_disease_dates": ["2025-01-01", "2025-11-13"]},
     "significant_cardiac_disease_dates[1]"),
    ({"concurrent_therapies": [{"agent": "x", "purpose": "maintenance"}]}, "concurrent_therapies[0].purpose"),
    ({"concurrent_therapies": [{"agent": "x"}]}, "concurrent_therapies[0].purpose"),
    ({"concurrent_therapies": [{"agent": "", "purpose": "bridging"}]}, "concurrent_therapies[0].agent"),
    ({"compendium": {"nccn_category": "2C"}}, "compendium.nccn_category"),
    ({"compendium": {"nccn_category": 1}}, "compendium.nccn_category"),
    ({"infections": True}, "infections"),
    ({"creatinine_clearance_ml_min": True}, "creatinine_clearance_ml_min"),
    ({"creatinine_clearance_ml_min": "45"}, "creatinine_clearance_ml_min"),
    ({"plan": {"walmart": True}}, "plan.walmart"),
])
def test_invalid_case_names_the_field(changes, path):
    data = case(**changes)
    with pytest.raises(InvalidCase) as raised:
        from_json(json.dumps(data))
    assert raised.value.path == path
    assert raised.value.message.startswith(path)


@pytest.mark.parametrize("missing", ["case_id", "date_of_service"])
def test_required_fields(missing):
    data = case()
    del data[missing]
    with pytest.raises(InvalidCase) as raised:
        from_object(data)
    assert raised.value.path == missing


def test_the_message_shows_the_value():
    with pytest.raises(InvalidCase) as raised:
        from_json(json.dumps(case(prescriber={"specialist": "yes"})))
    assert raised.value.message == 'prescriber.specialist = "yes": expected true or false, got a string'


@pytest.mark.parametrize("text", [b"", b"{", b"[1]", b"null", b'"case"', b"\xff\xfe{}"])
def test_not_a_case_object(text):
    with pytest.raises(InvalidCase):
        from_json(text)


def test_a_byte_order_mark_is_ignored():
    data = json.dumps(case()).encode()
    assert from_json(b"\xef\xbb\xbf" + data).case_id == "PA-TEST"


# reading 4: "Its written form may hold at most 40 significant digits and an exponent of
# at most ±40; beyond that it is bad input, refused at once".
FORTY = "45." + "0" * 37 + "1"      # 40 significant digits
FORTY_ONE = "45." + "0" * 38 + "1"  # 41


def _written(form: str, value: str) -> Case:
    if form == "json":
        return from_json('{"case_id": "x", "date_of_service": "2025-03-03", "lvef_percent": %s}' % value)
    if form == "yaml":
        return from_yaml("case_id: x\ndate_of_service: 2025-03-03\nlvef_percent: %s\n" % value)
    return from_object(parse_lp('case_id("x"). date_of_service("2025-03-03"). value("lvef_percent", "%s").' % value))


@pytest.mark.parametrize("form", ["json", "yaml", "lp"])
@pytest.mark.parametrize("value", [FORTY_ONE, "1e41", "1e-41", "1e-999999999", "1e+999999999",
                                   "1" + "0" * 40, "0." + "0" * 40 + "1" * 41])
def test_beyond_40_significant_digits_or_an_exponent_of_40_is_refused_at_once(form, value):
    import time

    started = time.process_time()  # CPU time: what a busy machine cannot lengthen
    with pytest.raises(InvalidCase) as raised:
        _written(form, value)
    assert time.process_time() - started < 1
    assert raised.value.path == "lvef_percent"
    assert "40 significant digits" in raised.value.message


@pytest.mark.parametrize("form", ["json", "yaml", "lp"])
@pytest.mark.parametrize("value", [FORTY, "45.0000000001", "4.5e1", "4500e-2", "0.45E+2"])
def test_up_to_40_significant_digits_and_exponent_40_are_read_exactly(form, value):
    assert _written(form, value).lvef_percent == Decimal(value)


def test_yaml_case_matches_json_case():
    text = "case_id: Y\ndate_of_service: 2025-11-12\nlvef_percent: 44.99\nmember: {birth_date: 1960-01-01}\n"
    one = from_yaml(text)
    assert str(one.lvef_percent) == "44.99"
    assert one.member.birth_date.isoformat() == "1960-01-01"


@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system ['true']",
    "case_id: !!python/name:os.system\n",
])
def test_yaml_tags_are_refused(text):
    with pytest.raises(InvalidCase):
        from_yaml(text)


# .lp case files: only ground facts of the case vocabulary.
@pytest.mark.parametrize("text, line", [
    ('case_id("a").\ncovered(X) :- case_id(X).\n', "line 2"),
    ('case_id("a").\n#include "/etc/passwd".\n', "line 2"),
    ('#script (python)\nimport os\n#end.\n', "line 1"),
    ('case_id("a").\n:- case_id("a").\n', "line 2"),
    ('case_id("a").\n{ value("x", true) }.\n', "line 2"),
    ('case_id("a").\n\ndecision("a", covered).\n', "line 3"),
    ('case_id("a", "b").\n', "line 1"),
    ('case_id("a")\n', "line 1"),
    ('case_id(X).\n', "line 1"),
    ('#external value("x", true).\n', "line 1"),
    ('#program base.\n', "line 1"),
    ('value("lvef_percent", 45) | value("lvef_percent", 50).\n', "line 1"),
])
def test_lp_case_refuses_anything_but_vocabulary_facts(text, line):
    with pytest.raises(InvalidCase) as raised:
        parse_lp(text)
    assert raised.value.path == line


def test_lp_case_reads_the_vocabulary():
    data = parse_lp('% a comment\ncase_id("PA \\"q\\"").\ndate_of_service("2025-11-12").\n'
                    'value("lvef_percent", "44.99"). value("member.age", 70).\n'
                    'prior_line(2, "Vd"). prior_line(1, "Rd").\nnone("clinical_trials").\n'
                    'concurrent_therapy("flu", lymphodepletion).\n')
    one = from_object(data)
    assert one.case_id == 'PA "q"'
    assert str(one.lvef_percent) == "44.99"
    assert one.prior_lines == [["Rd"], ["Vd"]]
    assert one.clinical_trials == []
    assert one.concurrent_therapies[0].purpose == "lymphodepletion"


def test_lp_case_unknown_field_path_is_named():
    with pytest.raises(InvalidCase) as raised:
        from_object(parse_lp('case_id("a"). date_of_service("2025-11-12"). value("diagnosis.relapse", true).'))
    assert raised.value.path == "diagnosis.relapse"
