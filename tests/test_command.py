"""`covkb check` read without the command-line framework (covkb.surfaces.command): the same bytes
and exit codes as the full command line, and everything else handed to it."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from covkb.surfaces.main import plain_check
from covkb.engine.kb import kb_dir, kb_files, kb_sha256

ROOT = Path(__file__).parents[1]
FACTS = ROOT / "facts"
# the same program name both ways: usage messages name it
FULL = "import sys; from covkb.surfaces.cli import main; sys.argv[0] = 'covkb'; main()"
FAST = "import sys; from covkb.surfaces.main import main; sys.argv[0] = 'covkb'; main()"
ENV = {key: value for key, value in os.environ.items() if key != "COVKB_LOG"}


# A ClaimResponse (and its Bundle) says when it was created, and a CRD extension the date it
# was made: the clock, not the path, so those are set aside when outputs are compared.
NOW = re.compile(rb'"(?:created|timestamp)":"[^"]*"|"valueDate":"[^"]*"')


def covkb(argv, full=False, stdin=b"", env=None):
    command = [sys.executable, "-c", FULL if full else FAST]
    done = subprocess.run(command + argv, input=stdin, capture_output=True, cwd=ROOT, env={**ENV, **(env or {})})
    return done.returncode, NOW.sub(b"(now)", done.stdout), done.stderr


def invalid(tmp_path):
    data = json.loads((FACTS / "covered-2025.json").read_text())
    data["lvef_percent"] = "fifty"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


SAME = [
    ["check", "facts/not-covered-crcl-45-2024.json"],
    ["check", "facts/pending-2025.json", "--all"],
    ["check", "-a", "facts/covered-2025.yaml", "--format", "json"],
    ["check", "facts/covered-2025.lp", "-f", "json"],
    ["check", "--format=pas", "facts/fhir/covered-2025.bundle.json"],
    ["check", "facts/fhir/not-covered-cardiac-2024.questionnaire-response.json", "-f", "crd"],
    ["check", "facts/covered-2025.json", "--policy-version", "2024-08-21", "--verbose"],
    ["check", "facts/covered-2025.json", "--policy-version=2023-01-01"],
    ["check", "facts/no-such-case.json"],
    ["check", "facts"],
]


@pytest.mark.parametrize("argv", SAME, ids=" ".join)
def test_a_plain_check_prints_what_the_full_command_line_prints(argv):
    assert plain_check(argv) is not None
    fast = covkb(argv)
    assert fast == covkb(argv, full=True)
    assert fast[0] in (0, 2) and (fast[1] or fast[2])


def test_an_invalid_case_and_a_case_on_standard_input_read_the_same_both_ways(tmp_path):
    bad = ["check", str(invalid(tmp_path)), "-f", "json"]
    assert covkb(bad) == covkb(bad, full=True)
    assert covkb(bad)[0] == 2 and b"lvef_percent" in covkb(bad)[2]
    stdin = (FACTS / "covered-2024.json").read_bytes()
    assert covkb(["check", "-"], stdin=stdin) == covkb(["check", "-"], full=True, stdin=stdin)


def test_an_ascii_terminal_gets_the_same_utf8_both_ways(tmp_path):
    data = json.loads((FACTS / "covered-2025.json").read_text())
    data["case_id"] = "PA-\u00e9\u2265"
    path = tmp_path / "accented.json"
    path.write_text(json.dumps(data))
    ascii_out = {"PYTHONIOENCODING": "ascii"}
    fast = covkb(["check", str(path)], env=ascii_out)
    assert fast == covkb(["check", str(path)], full=True, env=ascii_out)
    assert fast[0] == 0 and "PA-\u00e9\u2265".encode() in fast[1]


def test_a_plain_check_does_not_load_the_command_line_framework():
    code = ("import sys; sys.argv = ['covkb', 'check', 'facts/covered-2025.json']\n"
            "from covkb.surfaces.main import main; main()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert done.returncode == 0 and "COVERED" in done.stdout
    assert done.stderr.strip() == "[]"


@pytest.mark.parametrize("argv", [
    [], ["explain", "facts/covered-2025.json"], ["check"], ["check", "--help"], ["check", "-h"],
    ["check", "a.json", "b.json"], ["check", "-fjson", "a.json"], ["check", "a.json", "--format", "yaml"],
    ["check", "a.json", "--format", "JSON"], ["check", "a.json", "--log", "x.db"], ["check", "a.json", "--log=x.db"],
    ["check", "a.json", "--all", "--all"], ["check", "a.json", "--policy-version"],
    ["check", "a.json", "--policy-version", "--all"], ["check", "a.json", "--policy-version="],
    ["check", "--", "a.json"], ["check", "a.json", "--all=yes"], ["check", "a.json", "--version"],
    ["check", "a.json", "-x"],
])
def test_anything_but_a_plain_check_goes_to_the_full_command_line(argv):
    assert plain_check(argv) is None


def test_a_decision_log_from_the_environment_goes_to_the_full_command_line(monkeypatch):
    monkeypatch.setenv("COVKB_LOG", "audit.db")
    assert plain_check(["check", "a.json"]) is None


@pytest.mark.parametrize("argv", [
    ["check", "facts/covered-2025.json", "--format", "yaml"],
    ["check", "facts/covered-2025.json", "facts/covered-2024.json"],
    ["check"],
])
def test_a_usage_error_is_the_full_command_lines_own(argv):
    code, out, err = covkb(argv)
    assert (code, out, err) == covkb(argv, full=True)
    assert code == 2 and b"Usage: covkb check" in err


def test_check_help_is_the_full_command_lines():
    code, out, _ = covkb(["check", "--help"])
    assert code == 0 and b"--policy-version" in out and b"--format" in out


def test_python_dash_m_covkb_and_the_covkb_script_start_at_the_same_place():
    done = subprocess.run([sys.executable, "-m", "covkb", "check", "facts/covered-2025.json", "-f", "json"],
                          capture_output=True, cwd=ROOT, env=ENV)
    assert done.returncode == 0 and json.loads(done.stdout)["decision"] == "covered"
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'covkb = "covkb.surfaces.main:main"' in scripts


def test_the_kb_digest_is_sha256_over_each_files_name_and_content():
    digest = hashlib.sha256()
    for path in kb_files(kb_dir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    assert kb_sha256() == digest.hexdigest()
