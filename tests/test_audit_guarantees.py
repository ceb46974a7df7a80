"""The decision log audited read-only, refused when it is not a covkb log, anchored
against cut or rewritten chains, exported without spreadsheet formulas, and shown on a
terminal with nothing raw (issue 12, items 3, 7, 8, 14, 15)."""

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from cases import case
from covkb.surfaces import audit, batch
from covkb.surfaces.terminal import printable

ROOT = Path(__file__).parents[1]


def covkb(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "covkb", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, input=stdin)


def make_log(directory: Path, count: int = 6, **changes) -> Path:
    source = directory / "in.jsonl"
    source.write_text("".join(json.dumps(case(case_id=f"C{i}", **changes)) + "\n" for i in range(count)))
    path = directory / "log.db"
    done = covkb("batch", source, "--out", directory / "out.jsonl", "--log", path, "--chunk", "2", "-q")
    assert done.returncode == 0, done.stderr
    return path


def snapshot(path: Path) -> bytes:
    return path.read_bytes()


@pytest.fixture(scope="module")
def pristine_log(tmp_path_factory):
    """One log written once by a real `covkb batch --log`."""
    return make_log(tmp_path_factory.mktemp("log"))


@pytest.fixture()
def log(pristine_log, tmp_path):
    """A copy of that log for each test to read, edit or break on its own."""
    path = tmp_path / "log.db"
    shutil.copyfile(pristine_log, path)
    return path


def _read_only(path: Path) -> bool:
    """Make path read-only even for root (immutable where chattr works); whether it could."""
    path.chmod(0o444)
    if os.geteuid() != 0:
        return True
    return shutil.which("chattr") is not None and subprocess.run(["chattr", "+i", str(path)]).returncode == 0


def test_every_audit_command_reads_a_read_only_copy(tmp_path, log):
    copy = tmp_path / "copy.db"
    shutil.copy(log, copy)
    if not _read_only(copy):
        pytest.skip("cannot make a file read-only here")
    try:
        before = snapshot(copy)
        for args in (["verify"], ["list"], ["show", "1"], ["export", "--format", "csv"], ["replay"], ["head"]):
            done = covkb("audit", *args, "--log", copy)
            assert done.returncode == 0, (args, done.stderr)
            assert "readonly" not in done.stderr
        assert snapshot(copy) == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(copy)])


AUDITS = (["verify"], ["list"], ["show", "1"], ["show", "--case-id", "C0"], ["export", "--format", "csv"],
          ["export", "--format", "jsonl"], ["replay"], ["head"], ["report"])


def _as_another_user(log: Path, commands, original: Path) -> list[tuple[int, str]]:
    """Each `covkb audit COMMAND --log log` run by a user who owns neither the log nor its
    folder: as root, a forked child that becomes nobody (the modules it needs imported
    first, by running the commands on the original: nobody may not read this interpreter's
    files); else this user, whom the modes alone keep out. The exit code and the output of
    each."""
    from typer.testing import CliRunner

    from covkb.surfaces.cli import app

    runner = CliRunner()

    def run(log: Path) -> list[tuple[int, str]]:
        return [(done.exit_code, done.output) for done in
                (runner.invoke(app, ["audit", *args, "--log", str(log)]) for args in commands)]

    if os.geteuid() != 0:
        return run(log)
    run(original)  # every module and the policy loaded before the child gives up root
    # ... and what replay's worker processes import when they start and decide: they fork
    # from the child, and this machine's Python may be readable by root alone.
    import ctypes  # noqa: F401

    replay = batch.replay(audit.open_read(original), workers=1)
    for piece in replay._pieces():
        batch.replay_chunk(piece, replay.current, False)
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(reading)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(writing, json.dumps(run(log)).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(child, 0)
    return [tuple(pair) for pair in json.loads(answer)]


@pytest.fixture()
def read_only_media(tmp_path):
    """A folder for a copy of a log, readable by anyone; read-only (file and folder) once
    the test has put the copy there."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="covkb-media-"))
    folder.chmod(0o755)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(folder)


def _seal(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)


def _others_can_read(path: Path) -> bool:
    """Whether a user who is neither owner nor group can reach path (covkb's own files: a
    checkout in a folder made 0700 keeps another user out of the program itself)."""
    import stat

    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents if p != Path("/")) \
        and bool(path.stat().st_mode & stat.S_IROTH)


def test_every_audit_command_reads_a_copy_on_read_only_media_as_another_user(log, read_only_media):
    if os.geteuid() == 0 and not _others_can_read(ROOT / "kb" / "core.lp"):
        pytest.skip("this checkout lies in a folder other users cannot enter, so another user cannot run covkb from it")
    copy = read_only_media / "log.db"
    shutil.copy(log, copy)
    _seal(read_only_media)
    before = snapshot(copy)
    answers = _as_another_user(copy, AUDITS, log)
    for args, (code, output) in zip(AUDITS, answers):
        assert code == 0 and "readonly" not in output, (args, output)
    assert answers[0][1].startswith("intact: 6 rows")
    assert snapshot(copy) == before and sorted(p.name for p in read_only_media.iterdir()) == ["log.db"]


def test_a_read_only_copy_taken_with_its_write_ahead_log_misses_no_row(tmp_path, read_only_media):
    log = make_log(tmp_path)
    writer = audit.connect(log)
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # the next rows stay in log.db-wal
    row = dict(next(audit.rows(writer, ident=1)))
    content = {key: row[key] for key in audit.COLUMNS if key not in ("id", "logged_at", "prev_hash", "row_hash")}
    audit.append(writer, [content, content])
    for name in ("log.db", "log.db-wal"):  # copied as they are, the writer still open
        shutil.copy(tmp_path / name, read_only_media / name)
    writer.close()
    _seal(read_only_media)
    (code, output), = _as_another_user(read_only_media / "log.db", [["verify"]], log)
    assert code == 0 and output.startswith("intact: 8 rows"), output
    assert sorted(p.name for p in read_only_media.iterdir()) == ["log.db", "log.db-wal"]


def test_auditing_never_writes_the_log(log):
    before = snapshot(log)
    for args in (["verify"], ["list"], ["show", "1"], ["export"], ["replay"], ["head"]):
        assert covkb("audit", *args, "--log", log).returncode == 0
    assert snapshot(log) == before


def test_an_unrelated_sqlite_file_is_refused_untouched(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.execute("INSERT INTO notes VALUES ('keep me')")
    before = snapshot(other)
    checked = covkb("check", ROOT / "facts" / "covered-2025.json", "--log", other)
    assert checked.returncode == 2 and "not a covkb decision log" in checked.stderr
    for args in (["verify"], ["list"]):
        done = covkb("audit", *args, "--log", other)
        assert done.returncode == 2 and "not a covkb decision log" in done.stderr
    assert snapshot(other) == before


def test_a_dropped_table_is_broken_not_an_intact_empty_log(log):
    with sqlite3.connect(log) as connection:
        connection.execute("DROP TABLE determinations")
    before = snapshot(log)
    verified = covkb("audit", "verify", "--log", log)
    assert verified.returncode == 1 and verified.stdout.startswith("broken:")
    assert covkb("audit", "list", "--log", log).returncode == 2
    assert snapshot(log) == before  # not recreated


def _head(log: Path) -> tuple[str, str]:
    done = covkb("audit", "head", "--log", log)
    assert done.returncode == 0
    words = done.stdout.split()
    assert words[0] == "rows" and words[2] == "head"
    return words[1], words[3]


def test_the_anchor_catches_rows_cut_from_the_end(log):
    rows, head = _head(log)
    assert rows == "6"
    with sqlite3.connect(log) as connection:
        connection.execute("DELETE FROM determinations WHERE id > 4")
    assert covkb("audit", "verify", "--log", log).returncode == 0  # the chain alone cannot tell
    done = covkb("audit", "verify", "--log", log, "--expect-head", head, "--rows", rows)
    assert done.returncode == 1 and "cut" in done.stdout


def test_the_anchor_catches_an_emptied_table(log):
    rows, head = _head(log)
    with sqlite3.connect(log) as connection:
        connection.execute("DELETE FROM determinations")
    assert covkb("audit", "verify", "--log", log, "--expect-head", head, "--rows", rows).returncode == 1


def test_the_anchor_catches_a_chain_rewritten_after_an_edit(log):
    rows, head = _head(log)
    connection = sqlite3.connect(log)
    connection.row_factory = sqlite3.Row
    table = [dict(r) for r in connection.execute("SELECT * FROM determinations ORDER BY id")]
    previous = audit.GENESIS
    for row in table:  # a forger who knows the hash rule recomputes every hash
        if row["id"] == 2:
            row["decision"] = "pending"
        row["prev_hash"] = previous
        row["row_hash"] = previous = audit.row_hash(row)
        connection.execute("UPDATE determinations SET decision = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
                           (row["decision"], row["prev_hash"], row["row_hash"], row["id"]))
    connection.commit()
    connection.close()
    assert covkb("audit", "verify", "--log", log).returncode == 0  # the chain alone cannot tell
    done = covkb("audit", "verify", "--log", log, "--expect-head", head, "--rows", rows)
    assert done.returncode == 1 and "rewritten" in done.stdout


def test_rows_added_after_the_anchor_still_verify_against_it(tmp_path, log):
    rows, head = _head(log)
    assert covkb("check", ROOT / "facts" / "covered-2025.json", "--log", log).returncode == 0
    done = covkb("audit", "verify", "--log", log, "--expect-head", head, "--rows", rows)
    assert done.returncode == 0 and "intact: 7 rows" in done.stdout


def test_a_corrupted_log_is_one_line_under_every_audit_command(log):
    data = bytearray(log.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the header's tail and the schema page
    log.write_bytes(bytes(data))
    for args in (["verify"], ["list"], ["show", "1"], ["export"], ["replay"], ["head"]):
        done = covkb("audit", *args, "--log", log)
        assert done.returncode in (1, 2), (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 1


def test_csv_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(tmp_path):
    source = tmp_path / "in.jsonl"
    ids = ['=HYPERLINK("http://example.invalid","click")', "+1+1", "-2+3", "@SUM(A1)", "plain"]
    source.write_text("".join(json.dumps(case(case_id=i)) + "\n" for i in ids))
    log = tmp_path / "log.db"
    assert covkb("batch", source, "--out", tmp_path / "o.jsonl", "--log", log, "-q").returncode == 0
    exported = list(csv.DictReader(io.StringIO(covkb("audit", "export", "--log", log).stdout)))
    assert [row["case_id"] for row in exported] == ["'" + i for i in ids[:4]] + ["plain"]


def test_text_output_escapes_what_a_terminal_would_obey():
    assert printable("PA-1\x1b[2K\rPA-1: COVERED") == "PA-1\\x1b[2K\\x0dPA-1: COVERED"
    assert printable("a\nb") == "a\nb" and printable("a\nb", lines=False) == "a\\x0ab"
    assert printable("\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert printable("\u202eDEREVOC") == "\\u202eDEREVOC"


def test_check_shows_a_bidi_override_in_a_case_id_escaped(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(case(case_id="PA-1 \u202eDEREVOC TON")))
    done = covkb("check", path)
    assert done.returncode == 0 and "\u202e" not in done.stdout and "\\u202e" in done.stdout


def test_audit_list_and_show_escape_control_characters_in_stored_rows(log):
    with sqlite3.connect(log) as connection:  # a row an older covkb accepted
        connection.execute("UPDATE determinations SET case_id = ?, explanation_json = replace("
                           "explanation_json, '\"C0\"', '\"C0\\u001b[32m\\nPA-9: COVERED\"') WHERE id = 1",
                           ("C0\x1b[32m\nPA-9: COVERED",))
    listed = covkb("audit", "list", "--log", log).stdout
    assert "\x1b" not in listed and len(listed.splitlines()) == 6
    shown = covkb("audit", "show", "1", "--log", log).stdout
    assert "\x1b" not in shown and "\\x1b[32m" in shown
    assert not any(line.startswith("PA-9") for line in shown.splitlines())


def test_verify_and_replay_read_the_log_in_bounded_memory(tmp_path):
    path = tmp_path / "big.db"
    connection = audit.connect(path)
    from covkb.api import determine_explained
    from covkb.input.case import from_object
    from cases import _exact

    one = from_object(_exact(case(case_id="M")))
    result, explanation = determine_explained([one])[0]
    row = audit.prepare(one, None, result, explanation, audit.kb_hash())
    for _ in range(4):
        audit.append(connection, [row] * 400)
    connection.close()
    reader = audit.open_read(path)
    try:
        tracemalloc.start()
        assert audit.verify(reader).ok
        verified = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert list(batch.replay(reader, chunk=50)) == []
        replayed = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        reader.close()
    size = path.stat().st_size
    assert size > 10_000_000  # 1,600 rows of some 8 KB
    assert verified < size / 10 and replayed < size / 4  # never the whole log at once
