"""Which engine decides is never a secret: /health says it and says when deciding fails,
COVKB_ENGINE names an engine or is a usage error, and the compiler refusing kb/ is said
at the start of `batch` and `serve` without --verbose."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cases import IN_2025, case
from covkb.engine import choose
from covkb.engine.kb import kb_dir
from covkb.surfaces import deciders, documents as served
from covkb.input.case import from_object

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from make_cases import synthetic  # noqa: E402

CHOICE_RULE = "\n{ chosen(K) } :- case(K).\n"


def _covkb(args: list[str], stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "covkb", *args], input=stdin, capture_output=True,
                          env={**os.environ, **env}, cwd=ROOT, timeout=300)


def _refused_kb(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    shutil.copytree(kb_dir(), kb)
    with (kb / "core.lp").open("a") as sink:
        sink.write(CHOICE_RULE)
    return kb


def _lines(count: int) -> bytes:
    rng = random.Random(8)
    return "".join(json.dumps(synthetic(rng, i)) + "\n" for i in range(count)).encode()


@pytest.mark.parametrize("args", [["check", "facts/covered-2024.json"], ["batch", "facts/batch.jsonl"],
                                  ["serve", "--port", "0"]])
def test_an_unknown_engine_is_a_usage_error_naming_the_variable_and_the_engines(args):
    done = _covkb(args, COVKB_ENGINE="bogus")
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "COVKB_ENGINE" in err and "'bogus'" in err
    assert all(name in err for name in ("auto", "compiled", "clingo"))
    assert "Traceback" not in err


def test_the_known_engines_are_accepted(monkeypatch):
    for name in ("auto", "compiled", "clingo"):
        monkeypatch.setenv("COVKB_ENGINE", name)
        assert choose.engine_name() == name
    monkeypatch.delenv("COVKB_ENGINE")
    assert choose.engine_name() == "auto"
    monkeypatch.setenv("COVKB_ENGINE", "Compiled")
    with pytest.raises(choose.EngineChoice):
        choose.engine_name()


def test_batch_says_the_compiler_refuses_kb_without_verbose(tmp_path):
    kb = _refused_kb(tmp_path)
    done = _covkb(["batch", "-"], _lines(choose.COMPILED_FROM), COVKB_KB=str(kb), COVKB_ENGINE="auto")
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "the compiled engine refuses kb/" in err and "choice" in err


def _health_of(documents, decider):
    status, body = documents.health(decider)
    return status, json.loads(body)


def test_health_is_503_and_failing_once_a_request_cannot_be_decided(monkeypatch):
    choice = choose.Choice("clingo", "clingo decides (COVKB_ENGINE=clingo)")
    documents = served.Documents(0, choice)
    decider = deciders.Decider(0, None)
    try:
        def ask():
            pending = deciders.Pending("check", from_object(case(date_of_service=IN_2025)), None, {}, None, False)
            decider.submit(pending)
            assert pending.done.wait(60)
            return pending.status

        assert ask() == 200
        status, health = _health_of(documents, decider)
        assert status == 200 and health["status"] == "ok" and health["engine"] == "clingo"

        def broken(requests, log, engine=None):
            raise TypeError("unsupported operand")

        monkeypatch.setattr(deciders, "decide_requests", broken)
        assert ask() == 500
        status, health = _health_of(documents, decider)
        assert status == 503 and health["status"] == "failing"
        assert "TypeError" in health["last_failure"]

        monkeypatch.undo()
        assert ask() == 200
        status, health = _health_of(documents, decider)
        assert status == 200 and health["status"] == "ok" and health["last_failure"] is None
    finally:
        decider.close()


def _served(env: dict) -> tuple[subprocess.Popen, list[str], int]:
    import re

    process = subprocess.Popen([sys.executable, "-m", "covkb", "serve", "--port", "0"], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    lines = []
    while True:
        line = process.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if found:
            lines.append(process.stderr.readline())  # which engine decides
            return process, lines, int(found.group(1))


def _get_health(port: int) -> tuple[int, dict]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("refused", [False, True])
def test_health_names_the_engine_and_whether_the_compiler_refused_kb(tmp_path, refused):
    env = {"COVKB_ENGINE": "auto"}
    if refused:
        env["COVKB_KB"] = str(_refused_kb(tmp_path))
    process, lines, port = _served(env)
    try:
        status, health = _get_health(port)
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()
    assert status == 200 and health["status"] == "ok"
    if refused:
        assert health["engine"] == "clingo" and "choice" in health["kb_refused_by_compiler"]
        assert any("the compiled engine refuses kb/" in line for line in lines)
    else:
        assert health["engine"] == "compiled" and health["kb_refused_by_compiler"] is None
