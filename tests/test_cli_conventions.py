"""Command-line conventions (reading 7): `--policy-version V` forces a policy version,
`covkb --version` prints covkb's own version, `-h` is help everywhere."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import case
from covkb import __version__
from covkb.surfaces.audit import kb_hash
from covkb.surfaces.cli import app

runner = CliRunner()
COMMANDS = [[], ["check"], ["batch"], ["explain"], ["compare"], ["diff"], ["versions"],
            ["criteria"], ["schema"], ["audit"], ["audit", "list"], ["audit", "show"],
            ["audit", "replay"], ["audit", "verify"], ["audit", "export"]]


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_covkb_version_prints_the_program_version_and_the_kb_digest():
    result = run("--version")
    assert result.exit_code == 0
    assert f"covkb {__version__}" in result.stdout
    assert kb_hash() in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "covkb")
def test_dash_h_is_help_on_every_command(command):
    result = run(*command, "-h")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


@pytest.mark.parametrize("command", [["check"], ["explain"], ["batch"], ["criteria"]])
def test_policy_version_is_the_option_that_forces_a_version(command, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(case(prior_allogeneic_transplant=True)) + "\n")
    target = [] if command == ["criteria"] else [path]
    assert run(*command, *target, "--policy-version", "2024-08-21").exit_code == 0
    old = run(*command, *target, "--version", "2024-08-21")
    assert old.exit_code == 2  # the old spelling is no option of a subcommand any more


def test_help_examples_stand_one_per_line_with_case_placeholders():
    text = run("-h").stdout
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("covkb ")]
    assert len(examples) >= 4
    assert not any(" | " in line for line in examples)
    assert any(" CASE " in f"{line} " for line in examples)
    assert re.search(r"\{CASE\}", run("check", "-h").stdout)
    assert re.search(r"\{CASES\}", run("batch", "-h").stdout)
