"""`--out` and symbolic links, for every command that has `--out` (batch, audit export,
audit report): a link is written through to the file it names, which is replaced whole and
the link kept; a link that names nothing (dangling, a loop) or a directory is refused, and
nothing is created where it points."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import case
from covkb.surfaces.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    place = tmp_path_factory.mktemp("inputs")
    cases = place / "cases.jsonl"
    cases.write_text("".join(json.dumps(case(case_id=f"L{i}")) + "\n" for i in range(3)))
    log = place / "log.db"
    done = runner.invoke(app, ["batch", str(cases), "--log", str(log), "--workers", "1", "-q"])
    assert done.exit_code == 0, done.output
    return cases, log


# each command with --out, what its output begins with, and its exit code for an --out refused
COMMANDS = {
    "batch": (lambda cases, log: ["batch", str(cases), "--workers", "1", "-q"], '{"case_id":"L0"', 2),
    "audit export": (lambda cases, log: ["audit", "export", "--log", str(log)], "id,logged_at,case_id", 2),
    "audit report": (lambda cases, log: ["audit", "report", "--log", str(log)], "<!DOCTYPE html>", 3),
}


def _run(command: str, inputs, out: Path):
    arguments, _, _ = COMMANDS[command]
    return runner.invoke(app, [*arguments(*inputs), "--out", str(out)])


@pytest.mark.parametrize("command", COMMANDS)
def test_a_link_to_a_file_is_written_through_and_stays_a_link(command, inputs, tmp_path):
    target = tmp_path / "kept" / "results"
    target.parent.mkdir()
    target.write_text("earlier\n")
    link = tmp_path / "latest"
    link.symlink_to(Path("kept") / "results")
    done = _run(command, inputs, link)
    assert done.exit_code == 0, done.output
    assert link.is_symlink() and os.readlink(link) == str(Path("kept") / "results")
    assert target.read_text().startswith(COMMANDS[command][1])
    assert sorted(p.name for p in target.parent.iterdir()) == ["results"]  # no temporary left


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["dangling", "loop", "directory"])
def test_a_link_to_nothing_or_to_a_directory_is_refused_and_nothing_is_created(command, kind, inputs, tmp_path):
    link = tmp_path / "out"
    if kind == "dangling":
        link.symlink_to(tmp_path / "elsewhere" / "planted")
        (tmp_path / "elsewhere").mkdir()
    elif kind == "loop":
        link.symlink_to(tmp_path / "back")
        (tmp_path / "back").symlink_to(link)
    else:
        (tmp_path / "folder").mkdir()
        link.symlink_to(tmp_path / "folder")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    done = _run(command, inputs, link)
    assert done.exit_code == COMMANDS[command][2], done.output
    assert "--out" in done.output and str(link) in done.output and "Traceback" not in done.output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert link.is_symlink()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_plain_file_is_replaced_whole(command, inputs, tmp_path):
    out = tmp_path / "results"
    out.write_text("earlier\n")
    done = _run(command, inputs, out)
    assert done.exit_code == 0, done.output
    assert not out.is_symlink() and out.read_text().startswith(COMMANDS[command][1])
    assert [p.name for p in tmp_path.iterdir()] == ["results"]
