"""Nothing executable is ever read from a cache: the engine's cache is plain data, checked
before use, and a file that fails any check is rebuilt, never used.

The three attacks: a pickle planted at the cache path, a cache built from another kb/
(5d changed to more than 44) copied over this kb/'s, and one flipped bit. Each is refused
by the check that reads the file (fast, below) and, end to end, a batch still decides as
clingo does and the file is rebuilt (slow).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from covkb.engine import reference
from covkb.engine.kb import kb_dir, kb_sha256
from covkb.engine import compiled as engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from make_cases import synthetic  # noqa: E402

CRCL_45 = ROOT / "facts" / "not-covered-crcl-45-2024.json"
FIVE_D = 'bound("2024-08-21","5d","creatinine_clearance_ml_min",gt,45).'


class Planted:
    """A pickle that, when loaded, creates the file named `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _real_cache() -> tuple[Path, bytes]:
    kb = kb_dir()
    assert engine.compiled(kb) is not None
    path = engine._cache_file(kb)
    if not path.exists():  # built before this test's cache directory existed
        engine._write_cache(path, engine.compiled(kb), kb)
    return path, path.read_bytes()


def _other_kb(tmp_path: Path) -> Path:
    """kb/ with 5d's bound moved from more than 45 to more than 44."""
    kb = tmp_path / "kb-gt-44"
    shutil.copytree(kb_dir(), kb)
    version = kb / "v2024-08-21.lp"
    text = version.read_text()
    assert FIVE_D in text
    version.write_text(text.replace(FIVE_D, FIVE_D.replace("gt,45", "gt,44")))
    return kb


def test_the_cache_is_data_checked_and_read_back_whole(tmp_path):
    kb = kb_dir()
    path, raw = _real_cache()
    header = json.loads(raw.partition(b"\n")[0])
    assert header["kb_sha256"] == kb_sha256(kb)
    from covkb import __version__
    assert header["covkb"] == __version__
    got, why = engine._read_cache(path, kb)
    assert why is None and isinstance(got, engine.Compiled)
    assert got.data() == engine.compiled(kb).data()
    assert os.stat(path).st_mode & 0o077 == 0


def test_a_planted_pickle_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "engine.json"
    path.write_bytes(pickle.dumps(Planted(marker)))
    os.chmod(path, 0o600)
    got, why = engine._read_cache(path, kb_dir())
    assert got is None and why
    assert not marker.exists()
    # the marker is what the pickle would do if loaded
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_a_cache_of_another_kb_is_refused(tmp_path):
    path, raw = _real_cache()
    copy = tmp_path / "engine.json"
    copy.write_bytes(raw)
    os.chmod(copy, 0o600)
    other = _other_kb(tmp_path)
    got, why = engine._read_cache(copy, other)
    assert got is None and "another kb" in why


@pytest.mark.parametrize("seed", range(6))
def test_a_flipped_bit_is_detected(tmp_path, seed):
    path, raw = _real_cache()
    rng = random.Random(seed)
    # half the flips in the header, half anywhere in the body
    where = rng.randrange(raw.index(b"\n")) if seed % 2 else rng.randrange(len(raw))
    flipped = bytearray(raw)
    flipped[where] ^= 1 << rng.randrange(8)
    copy = tmp_path / "engine.json"
    copy.write_bytes(bytes(flipped))
    os.chmod(copy, 0o600)
    got, why = engine._read_cache(copy, kb_dir())
    assert got is None and why


def test_a_body_changed_with_its_hash_still_fails_the_data_check(tmp_path):
    """Defence in depth: a program step that is not plain data is refused even when
    the header's hash is made to match."""
    kb = kb_dir()
    data = engine.compiled(kb).data()
    data["program"] = [["r", 1, ["__import__('os')"]]] + data["program"]
    with pytest.raises(ValueError):
        engine.Compiled.from_data(data)


R, W, N, L = engine._R, engine._W, engine._N, engine._L


@pytest.mark.parametrize("program", [
    [R, 1, 2, 0, 9],            # a slot outside a program of 5
    [R, 1, 3, 0, 2],            # a body longer than what follows
    [R, 1, -1, 0],              # a negative length
    [R, 1, 1, 2.0],             # a slot that is not an int
    [R, 1, 1, "2"],
    [R, 1, 1, [2]],
    [7, 1, 1, 2],               # no kind of step
    [W, 1, 1, 2, 0, 2, 1],      # weights missing
    [W, 1, 1, 1, 0, -3],        # a negative weight
    [N, 1],                     # a complement without its slot
    [L, 9, R, 1, 1, 0],         # a loop longer than the program
    [L, 2, R, 1, 1, 0],         # a loop that ends inside its rule
])
def test_a_malformed_program_is_refused(program):
    with pytest.raises(ValueError):
        engine._operations(program, 5)


def test_a_well_formed_program_evaluates():
    """Atom 3 holds the cases of input 1 and 2 together, atom 4 those of 1 without 3."""
    program = [R, 3, 2, 1, 2, N, 3, 5, R, 4, 2, 1, 5]
    v = [0, 0b0110, 0b0011, 0, 0, 0]
    engine._evaluate(engine._operations(program, 6), v, 0b1111)
    assert v[3] == 0b0010 and v[4] == 0b0100


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_cache_writable_by_group_or_others_is_refused(tmp_path, mode):
    path, raw = _real_cache()
    copy = tmp_path / "engine.json"
    copy.write_bytes(raw)
    os.chmod(copy, mode)
    got, why = engine._read_cache(copy, kb_dir())
    assert got is None and "writable" in why


def test_a_cache_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    path, raw = _real_cache()
    copy = tmp_path / "engine.json"
    copy.write_bytes(raw)
    os.chmod(copy, 0o600)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(copy).st_uid + 1)
    got, why = engine._read_cache(copy, kb_dir())
    assert got is None and "another user" in why


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("COVKB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert engine._cache_root() == tmp_path / ".cache" / "covkb"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine._cache_root() == tmp_path / "xdg" / "covkb"
    monkeypatch.setenv("COVKB_CACHE", "off")
    assert engine._cache_root() is None


def test_the_engine_holds_no_code_loader():
    import ast

    tree = ast.parse(Path(engine.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom)}
    assert not imported & {"pickle", "marshal", "shelve", "dill", "importlib"}
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"exec", "eval", "compile", "__import__"}


# --- end to end: a fresh process meets the attack, decides as clingo does, rebuilds ---

def _run(args: list[str], cache: Path, engine_name: str = "compiled", stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {**os.environ, "COVKB_CACHE": str(cache), "COVKB_ENGINE": engine_name}
    return subprocess.run([sys.executable, "-m", "covkb", *args], input=stdin, env=env,
                          capture_output=True, cwd=ROOT)


def _batch(count: int = 250) -> bytes:
    rng = random.Random(27)
    lines = [json.dumps(synthetic(rng, i)) for i in range(count)]
    crcl = json.dumps(json.loads(CRCL_45.read_text()))
    return ("\n".join(lines + [crcl] * 5) + "\n").encode()


def _planted_cache(tmp_path: Path) -> tuple[Path, Path]:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    path = cache / _real_cache()[0].name
    return cache, path


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["pickle", "other-kb", "flipped-bit"])
def test_an_attacked_cache_is_rebuilt_and_decisions_stay_clingo_s(tmp_path, attack):
    cache, path = _planted_cache(tmp_path)
    marker = tmp_path / "ran"
    if attack == "pickle":
        path.write_bytes(pickle.dumps(Planted(marker)))
    elif attack == "other-kb":
        other = _other_kb(tmp_path)
        built = engine.build(other)
        path.write_bytes(engine._encode(built, other))
    else:
        raw = bytearray(_real_cache()[1])
        raw[len(raw) // 2] ^= 4
        path.write_bytes(bytes(raw))
    os.chmod(path, 0o600)
    cases = _batch()
    compiled = _run(["batch", "-"], cache, stdin=cases)
    reference = _run(["batch", "-"], cache, "clingo", stdin=cases)
    assert compiled.returncode == reference.returncode == 0, compiled.stderr
    assert compiled.stdout == reference.stdout
    last = json.loads(compiled.stdout.splitlines()[-1])
    assert last["decision"] == "not_covered"
    assert not marker.exists()
    got, why = engine._read_cache(path, kb_dir())
    assert why is None and isinstance(got, engine.Compiled)
    check = _run(["check", str(CRCL_45)], cache)
    assert "NOT COVERED" in check.stdout.decode()
