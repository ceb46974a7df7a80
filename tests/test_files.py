"""Files as they arrive from other systems: encodings, empty files, blank lines, arrays."""

import json
from pathlib import Path

from typer.testing import CliRunner

from cases import case
from covkb.surfaces.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_empty_file_is_refused_clearly(tmp_path):
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    result = run("check", path)
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(case()).encode())
    assert run("check", path).exit_code == 0
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfcase_id: a\ndate_of_service: 2025-11-12\n")
    assert run("check", path).exit_code == 0


def test_non_utf8_file_is_refused_clearly(tmp_path):
    for name in ("latin.json", "latin.yaml", "latin.lp"):
        path = tmp_path / name
        path.write_bytes('{"case_id": "Jos\u00e9"}'.encode("latin-1"))
        result = run("check", path)
        assert result.exit_code == 2, name
        assert "UTF-8" in result.stderr and "Traceback" not in result.stderr


def test_yaml_python_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    result = run("check", path)
    assert result.exit_code == 2 and "YAML" in result.stderr


def test_a_directory_is_refused(tmp_path):
    assert run("check", tmp_path).exit_code == 2


def test_blank_lines_in_jsonl_are_skipped_and_line_numbers_kept(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("\n" + json.dumps(case(case_id="A")) + "\n\n   \n" + '{"case_id": "B"}' + "\n")
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "--out", out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.exit_code == 1
    assert [l["case_id"] for l in lines] == ["A", "B"]
    assert lines[1]["line"] == 5 and "date_of_service" in lines[1]["error"]
    assert "2 cases" in result.stderr and "3 blank lines skipped" in result.stderr


def test_a_json_array_given_to_batch_is_explained(tmp_path):
    source = tmp_path / "array.jsonl"
    source.write_text(json.dumps([case(case_id="A"), case(case_id="B")]))
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "--out", out)
    line = json.loads(out.read_text())
    assert result.exit_code == 1
    assert "JSON Lines" in line["error"]


def test_batch_of_missing_file_exits_2(tmp_path):
    result = run("batch", tmp_path / "none.jsonl")
    assert result.exit_code == 2


FACTS = sorted((Path(__file__).parents[1] / "facts").glob("*.*"))
NAMED = {"covered": "covered", "not-covered": "not_covered", "investigational": "not_covered",
         "pending": "pending", "not-applicable": "not_applicable"}


def _named_decision(stem: str) -> str:
    return next(NAMED[p] for p in sorted(NAMED, key=len, reverse=True) if stem.startswith(p + "-"))


def test_every_example_in_facts_decides_as_its_name_says():
    examples = [p for p in FACTS if p.suffix in (".json", ".yaml", ".lp")]
    assert len(examples) >= 20
    for path in examples:
        result = run("check", path, "--format", "json")
        assert result.exit_code == 0, path
        assert json.loads(result.stdout)["decision"] == _named_decision(path.stem), path.name
