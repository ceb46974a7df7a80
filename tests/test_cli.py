"""The command line: check, batch, versions, criteria, schema (reading 3, 7)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import IN_2024, case
from covkb.surfaces.cli import app

FACTS = Path(__file__).parents[1] / "facts"
runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_check_text_puts_decision_and_label_on_top():
    result = run("check", FACTS / "not-covered-crcl-45-2024.json")
    assert result.exit_code == 0
    first = result.stdout.splitlines()[0]
    assert "NOT COVERED" in first and "does_not_meet_primary_coverage_criteria" in first
    assert "5d" in result.stdout and "not_met" in result.stdout


def test_check_json_is_exactly_the_result_object():
    result = run("check", FACTS / "covered-2025.json", "--format", "json")
    data = json.loads(result.stdout)
    # docs/case-format.md, then the second release's additions (version_requested only when forced) and
    # the third's date_of_service, beside the case it identifies
    assert list(data) == ["case_id", "date_of_service", "policy", "version", "decision", "label", "criteria",
                          "advisories", "missing", "reason", "provenance", "documentation"]
    assert list(data["criteria"][0]) == ["id", "status", "text", "because"]


def test_check_reads_standard_input():
    result = run("check", "-", "-f", "json", input=json.dumps(case()))
    assert json.loads(result.stdout)["decision"] == "covered"


@pytest.mark.parametrize("name", ["covered-2025.json", "covered-2025.yaml", "covered-2025.lp"])
def test_json_yaml_and_lp_forms_of_one_case_decide_alike(name):
    data = json.loads(run("check", FACTS / name, "-f", "json").stdout)
    reference = json.loads(run("check", FACTS / "covered-2025.json", "-f", "json").stdout)
    assert {k: v for k, v in data.items() if k != "case_id"} == \
           {k: v for k, v in reference.items() if k != "case_id"}


def test_version_option(tmp_path):
    path = write(tmp_path, "c.json", case(prior_allogeneic_transplant=True))
    assert json.loads(run("check", path, "-f", "json").stdout)["decision"] == "covered"
    old = json.loads(run("check", path, "-f", "json", "--policy-version", "2024-08-21").stdout)
    assert (old["version"], old["decision"]) == ("2024-08-21", "not_covered")


def test_unknown_version_is_a_usage_error(tmp_path):
    result = run("check", write(tmp_path, "c.json", case()), "--policy-version", "2023-01-01")
    assert result.exit_code == 2
    assert "2024-08-21" in result.stderr


def test_invalid_case_exits_2_with_one_line_naming_the_field(tmp_path):
    result = run("check", write(tmp_path, "c.json", case(diagnosis={"relapse": True})))
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "diagnosis.relapse" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_file_exits_2(tmp_path):
    result = run("check", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def _batch_lines(tmp_path, items, *options):
    source = tmp_path / "in.jsonl"
    source.write_text("".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items))
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "--out", out, *options)
    return result, [json.loads(line) for line in out.read_text().splitlines()]


def test_batch_equals_check_for_the_same_cases(tmp_path):
    files = sorted(FACTS.glob("*.json"))
    items = [json.loads(f.read_text()) for f in files]
    result, lines = _batch_lines(tmp_path, items, "--chunk", "3")
    assert result.exit_code == 0
    singles = [json.loads(run("check", f, "-f", "json").stdout) for f in files]
    assert lines == singles


def test_batch_keeps_order_and_reports_invalid_lines(tmp_path):
    items = [case(case_id="A"), case(case_id="B", prescriber={"specialist": "yes"}), "{not json",
             case(case_id="C", organ_function_adequate=False)]
    result, lines = _batch_lines(tmp_path, items)
    assert result.exit_code == 1
    assert [l.get("case_id") for l in lines] == ["A", "B", None, "C"]
    assert lines[1]["line"] == 2 and "prescriber.specialist" in lines[1]["error"]
    assert lines[2]["line"] == 3 and "error" in lines[2]
    assert [lines[0]["decision"], lines[3]["decision"]] == ["covered", "not_covered"]


def test_batch_with_duplicate_case_ids_decides_each_line_alone(tmp_path):
    items = [case(case_id="same"), case(case_id="same", organ_function_adequate=False)]
    _, lines = _batch_lines(tmp_path, items)
    assert [l["decision"] for l in lines] == ["covered", "not_covered"]


def test_batch_version_option(tmp_path):
    _, lines = _batch_lines(tmp_path, [case(prior_allogeneic_transplant=True)], "--policy-version", "2024-08-21")
    assert lines[0]["decision"] == "not_covered"


def test_versions_lists_both_with_dates():
    out = run("versions").stdout
    assert "2024-08-21" in out and "2025-10-31" in out and "2025-11-01" in out


def test_criteria_prints_the_policy_words():
    out = run("criteria", "--policy-version", "2024-08-21").stdout
    assert "Creatinine clearance less than or equal to 45 mL/min" in out
    # a criterion's reading, when it has one, is on the line below its words
    ids = [line.split()[0] for line in out.splitlines()[1:] if not line.split()[0] == "reading:"]
    assert ids == "specialist center 1 2 3 3a 3b 3c 4 5a 5b 5c 5d 5e 5f 5g 6 7 8 9".split()


def test_schema_is_json_schema():
    schema = json.loads(run("schema").stdout)
    assert "Case" in schema["$defs"]
    assert schema["$defs"]["Case"]["additionalProperties"] is False


def test_case_strings_are_data_not_program_text(tmp_path):
    hostile = 'x"). decision(1,covered,meets_primary_coverage_criteria). %'
    data = case(case_id=hostile, organ_function_adequate=False,
                prior_lines=[['Rd"). has_class(1,anti_cd38). %'], ["Vd"]],
                clinical_trials=["#include \"/etc/passwd\"."])
    out = json.loads(run("check", write(tmp_path, "c.json", data), "-f", "json").stdout)
    assert out["case_id"] == hostile
    assert out["decision"] == "not_covered"
    assert {c["id"]: c["status"] for c in out["criteria"]}["3c"] == "unknown"


@pytest.mark.slow  # the default run keeps batch equal to check, and 1 and 2 workers giving the same lines below
def test_batch_output_is_byte_identical_with_1_2_and_4_workers(tmp_path):
    items = [json.loads(f.read_text()) for f in sorted(FACTS.glob("*.json"))] * 4
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(i) + "\n" for i in items) + "{broken\n")
    outputs = []
    for workers in (1, 2, 4):
        out = tmp_path / f"out{workers}.jsonl"
        run("batch", source, "--out", out, "--workers", workers, "--chunk", "7")
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    singles = [run("check", f, "-f", "json").stdout.strip() for f in sorted(FACTS.glob("*.json"))] * 4
    assert outputs[0].decode().splitlines()[:-1] == singles


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_line_numbers_survive_chunking_blank_lines_bom_and_crlf(tmp_path, workers):
    a, b, c = (json.dumps(case(case_id=i)).encode() for i in "ABC")
    source = tmp_path / "in.jsonl"
    # 1: BOM + A (CRLF), 2: blank, 3: white space, 4: broken, 5: B, 6: C without a final newline
    source.write_bytes(b"\xef\xbb\xbf" + a + b"\r\n" + b"\n" + b" \t\r\n" + b"{broken\n" + b + b"\n" + c)
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "--out", out, "--chunk", "2", "--workers", workers)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("case_id") for line in lines] == ["A", None, "B", "C"]
    assert lines[1]["line"] == 4
    assert "4 cases" in result.stderr and "1 invalid" in result.stderr
    assert "2 blank lines skipped" in result.stderr
