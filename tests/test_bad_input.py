"""Bad input is refused in one line naming what is wrong, never guessed and never a
traceback (reading 3, §3): a key given twice, nesting, YAML aliases, oversized input,
impossible dates, .lp comments as clingo reads them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import clingo
import pytest
from hypothesis import given, strategies as st

from cases import case
from covkb.input.case import MAX_CASE_BYTES, MAX_DEPTH, InvalidCase
from covkb.input.text import from_json, from_yaml
from covkb.input.lp import parse_lp

ROOT = Path(__file__).parents[1]
GOOD_LP = 'case_id("PA-1").\ndate_of_service("2025-11-12").\n'


def covkb(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "covkb", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, **kwargs)


def refused(read, text) -> InvalidCase:
    with pytest.raises(InvalidCase) as raised:
        read(text)
    return raised.value


# --- a key given twice (reading 3) -------------------------------------------------------

@pytest.mark.parametrize("text, path", [
    ('{"case_id": "A", "date_of_service": "2025-11-12", "dose_million_car_t_cells": 450,'
     ' "dose_million_car_t_cells": 600}', "dose_million_car_t_cells"),
    ('{"case_id": "A", "case_id": "B", "date_of_service": "2025-11-12"}', "case_id"),
    ('{"case_id": "A", "date_of_service": "2025-11-12", "member": {"age": 40, "age": 12}}', "member.age"),
    ('{"case_id": "A", "date_of_service": "2025-11-12", "concurrent_therapies":'
     ' [{"agent": "x", "purpose": "bridging", "purpose": "anti_cancer"}]}', "concurrent_therapies[0].purpose"),
    ('{"case_id": "a\\\\", "date_of_service": "2025-11-12", "lvef_percent": 50, "lvef_percent": 30}',
     "lvef_percent"),
    ('{"case_id": "A", "date_of_service": "2025-11-12", "case\\u005fid": "B"}', "case_id"),
])
def test_a_json_key_given_twice_is_refused_naming_the_key(text, path):
    error = refused(from_json, text)
    assert error.path == path and "twice" in error.message


def test_keys_that_merely_look_alike_are_not_refused():
    one = from_json('{"case_id": "\\"dose_million_car_t_cells\\": 1", "date_of_service": "2025-11-12",'
                    ' "compendium": {"indication": "a\\\\\\" b"}, "dose_million_car_t_cells": 450}')
    assert one.dose_million_car_t_cells == 450


def test_a_yaml_key_given_twice_is_refused_naming_the_key():
    error = refused(from_yaml, "case_id: A\ndate_of_service: 2025-11-12\ndose_million_car_t_cells: 450\n"
                               "dose_million_car_t_cells: 600\n")
    assert error.path == "dose_million_car_t_cells" and "twice" in error.message


@pytest.mark.parametrize("facts, named", [
    ('value("dose_million_car_t_cells", 450).\nvalue("dose_million_car_t_cells", 600).\n',
     "dose_million_car_t_cells"),
    ('case_id("B").\n', "case_id"),
    ('value("prescriber.specialist", true).\nvalue("prescriber.specialist", false).\n', "prescriber.specialist"),
])
def test_an_lp_fact_given_twice_is_refused_naming_it(facts, named):
    error = refused(parse_lp, GOOD_LP + facts)
    assert error.path.startswith("line ") and error.value == named and "twice" in error.message


def test_one_dose_decides_and_a_second_dose_is_refused_in_batch(tmp_path):
    # a second dose once flipped COVERED to NOT COVERED by silently winning
    line = json.dumps(case(case_id="D"))[:-1] + ', "dose_million_car_t_cells": 600}'
    source = tmp_path / "c.jsonl"
    source.write_text(json.dumps(case(case_id="ok")) + "\n" + line + "\n")
    done = covkb("batch", source, "-q")
    out = [json.loads(text) for text in done.stdout.splitlines()]
    assert done.returncode == 1 and out[0]["decision"] == "covered" and out[1]["case_id"] == "D"
    assert out[1]["line"] == 2 and "dose_million_car_t_cells" in out[1]["error"] and "twice" in out[1]["error"]


# --- nesting and YAML aliases ------------------------------------------------------------

def test_json_nested_1000_deep_is_refused():
    error = refused(from_json, '{"case_id": "A", "member": ' + "[" * 1000 + "]" * 1000 + "}")
    assert f"at most {MAX_DEPTH} deep" in error.message


def test_json_nested_just_past_the_cap_is_refused_and_at_the_cap_read():
    inside = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    with pytest.raises(InvalidCase) as raised:  # read, then refused by type, not by depth
        from_json('{"case_id": "A", "date_of_service": "2025-11-12", "member": ' + inside + "}")
    assert "deep" not in raised.value.message
    error = refused(from_json, '{"case_id": "A", "member": [' + inside + "]}")
    assert f"at most {MAX_DEPTH} deep" in error.message


def test_yaml_nested_1000_deep_is_refused():
    error = refused(from_yaml, "case_id: A\nmember: " + "[" * 1000 + "]" * 1000 + "\n")
    assert f"at most {MAX_DEPTH} deep" in error.message


BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"] +
                 [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_anything_is_built():
    assert len(BOMB) < 400  # nine levels of nine: 387 million strings once expanded
    error = refused(from_yaml, BOMB)
    assert "aliases" in error.message


def test_a_yaml_alias_to_a_value_is_still_read():
    one = from_yaml("case_id: A\ndate_of_service: &day 2025-11-12\nsignificant_cardiac_disease_dates: [*day]\n")
    assert [d.isoformat() for d in one.significant_cardiac_disease_dates] == ["2025-11-12"]


def test_an_lp_field_path_thousands_deep_is_refused_with_its_line():
    error = refused(parse_lp, GOOD_LP + 'value("' + ".".join(["a"] * 3000) + '", 1).\n')
    assert error.path == "line 3"


# --- reading with the limit --------------------------------------------------------------

@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_check_of_an_endless_file_reads_only_past_the_limit_and_refuses():
    done = covkb("check", "/dev/zero", timeout=60)
    assert done.returncode == 2 and f"at most {MAX_CASE_BYTES} bytes" in done.stderr


def test_check_of_endless_standard_input_reads_only_past_the_limit_and_refuses():
    process = subprocess.Popen([sys.executable, "-m", "covkb", "check", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    written = 0
    try:
        while written < 50 * MAX_CASE_BYTES:
            process.stdin.write(b" " * 65536)
            written += 65536
    except BrokenPipeError:  # covkb stopped reading: what this test wants
        pass
    process.stdin.close() if not process.stdin.closed else None
    assert process.wait(timeout=60) == 2
    assert written < 50 * MAX_CASE_BYTES
    assert f"at most {MAX_CASE_BYTES} bytes" in process.stderr.read().decode()


# --- dates, files -----------------------------------------------------------------------

def test_a_yaml_date_that_does_not_exist_is_bad_input_naming_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("case_id: A\ndate_of_service: 2025-02-30\n")
    done = covkb("check", path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "date_of_service" in done.stderr and "2025-02-30" in done.stderr


def test_a_symlink_loop_is_one_line_and_exit_2(tmp_path):
    os.symlink(tmp_path / "b.json", tmp_path / "a.json")
    os.symlink(tmp_path / "a.json", tmp_path / "b.json")
    done = covkb("check", tmp_path / "a.json")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_batch_line_with_a_huge_exponent_is_an_error_line_and_the_rest_decided(tmp_path):
    # reading 4: refused at once; in a batch it costs only its own line
    data = case(case_id="huge")
    data.pop("lvef_percent", None)
    huge = json.dumps(data)[:-1] + ', "lvef_percent": 1e-999999999}'
    source = tmp_path / "c.jsonl"
    source.write_text("\n".join([json.dumps(case(case_id="a")), huge, json.dumps(case(case_id="b"))]) + "\n")
    done = covkb("batch", source, "-q", timeout=60)
    out = [json.loads(text) for text in done.stdout.splitlines()]
    assert done.returncode == 1 and [o["case_id"] for o in out] == ["a", "huge", "b"]
    assert "lvef_percent" in out[1]["error"] and out[0]["decision"] == out[2]["decision"] == "covered"


# --- .lp block comments, read as clingo reads them ---------------------------------------

def _clingo_reads(text: str):
    """The facts clingo reads from text, or None when clingo refuses it."""
    control = clingo.Control(["--warn=none"], logger=lambda code, message: None)
    try:
        control.add("base", [], text)
        control.ground([("base", [])])
    except RuntimeError:
        return None
    return sorted(str(atom.symbol) for atom in control.symbolic_atoms)


def _ours(text: str):
    try:
        read = parse_lp(text)
    except InvalidCase:
        return None
    return sorted(f'{name}("{read[name]}")' for name in ("case_id", "date_of_service") if name in read)


@pytest.mark.parametrize("comment", [
    "%* unterminated\n", "%* %* nested once *%\n", "%* % a line comment hides *% \n*%\n",
    "%**%", "%* *%% then a line comment\n", "%*%*x*%*%", "% %* a line comment, not a block\n",
])
def test_a_block_comment_is_read_as_clingo_reads_it(comment):
    text = 'case_id("PA-1").\n' + comment + 'date_of_service("2025-11-12").\n'
    assert _ours(text) == _clingo_reads(text)


FRAGMENTS = st.lists(st.sampled_from(["%*", "*%", "%", "\n", " ", "*", '"', "x"]), max_size=8).map("".join)


@given(FRAGMENTS, FRAGMENTS)
def test_comments_anywhere_are_read_as_clingo_reads_them(before, between):
    text = before + 'case_id("PA-1").' + between + '\ndate_of_service("2025-11-12").\n'
    ours, theirs = _ours(text), _clingo_reads(text)
    if ours is not None:  # what we read, clingo reads the same way
        assert ours == theirs
    elif theirs is not None:  # we refuse only what is no fact of the vocabulary
        assert not set(theirs) <= {'case_id("PA-1")', 'date_of_service("2025-11-12")'} or \
            theirs != ['case_id("PA-1")', 'date_of_service("2025-11-12")']
