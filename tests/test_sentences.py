"""Every sentence a result writes is a template of kb/words.lp (issue 28, item 1): the
writer fills templates and knows no words of its own. Rewriting the templates in kb/
rewrites every reason, advisory and request for documentation, and nothing else speaks."""

import re
import shutil
from pathlib import Path

import pytest

from covkb.api import check
from covkb.engine import kb
from covkb.input.files import load

KB = kb.kb_dir()
FACTS = sorted((Path(__file__).resolve().parents[1] / "facts").glob("*.json"))
TEMPLATE = re.compile(r'^((?:sentence|phrase)\(.*?, ?)"((?:[^"\\]|\\.)*)"\)\.$', re.M)


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """kb/ with every sentence template wrapped in « », and the phrases a writer joins
    with (and, none, yes, no, the citations) in other words."""
    copy = tmp_path_factory.mktemp("marked") / "kb"
    shutil.copytree(KB, copy)
    words = copy / "words.lp"
    text = words.read_text()
    text, count = TEMPLATE.subn(lambda m: f'{m.group(1)}"«{m.group(2)}»").'
                                if m.group(1).startswith("sentence") else m.group(0), text)
    assert count > 20
    for name, other in (("and", " & "), ("none", "nil"), ("yes", "ja"), ("no", "nein"),
                        ("criterion", "Kriterium {0}"), ("criteria", "Kriterien {0}"),
                        ("stated", "{path} := {value}")):
        line = re.search(rf'^phrase\({name}, "[^"]*"\)\.$', text, re.M)
        assert line, name
        text = text.replace(line.group(0), f'phrase({name}, "{other}").')
    words.write_text(text)
    return copy


@pytest.mark.parametrize("path", FACTS, ids=lambda p: p.stem)
def test_every_reason_and_advisory_is_a_template_of_kb(path, marked):
    result = check(load(path), directory=marked)
    for criterion in result.criteria:
        for said in criterion.because:
            assert said.startswith("«") and said.endswith("»"), (criterion.id, said)
    for said in result.advisories:
        assert said.startswith("«") and said.endswith("»"), said
    for document in result.documentation:
        if "clarification" in document.words or "confirmation" in document.words:
            assert document.words.startswith("«"), document.words


def test_the_phrases_a_writer_joins_with_are_kbs(marked):
    one_line = load(FACTS[0].parent / "not-covered-one-line-2025.json")
    result = check(one_line, directory=marked)
    assert "Kriterium 3" in result.reason or "Kriterien" in result.reason, result.reason
    stated = [s for c in result.criteria for s in c.because if ":=" in s]
    assert stated, "a documented field is written with phrase(stated, ...)"
    two = check(load(FACTS[0].parent / "not-covered-prior-cilta-cel-2025.json"), directory=marked)
    assert two.reason.endswith("(Kriterien 4 & 5b)"), two.reason


def test_the_bound_in_a_reason_is_the_one_bound_declares(tmp_path):
    # a number is typed once (issue 28): move 5d's bound, and its reason moves with it
    copy = tmp_path / "kb"
    shutil.copytree(KB, copy)
    version = copy / "v2024-08-21.lp"
    text = version.read_text()
    line = 'bound("2024-08-21","5d","creatinine_clearance_ml_min",gt,45).'
    assert text.count(line) == 1
    version.write_text(text.replace(line, line.replace("45", "50")))
    result = check(load(FACTS[0].parent / "not-covered-crcl-45-2024.json"),
                   directory=copy)
    said = next(c for c in result.criteria if c.id == "5d").because
    assert said == ["creatinine_clearance_ml_min = 45, and 5d requires more than 50"]
