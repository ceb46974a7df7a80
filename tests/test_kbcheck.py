"""One bound, one place: each criterion states its bound once (bound/5), and the kb
self-check refuses a comparison no bound declares (issue 11, item 7)."""

import shutil

import pytest

from covkb.engine import kb
from covkb.analysis.kbcheck import problems

KB = kb.kb_dir()


def _replaced(tmp_path, name: str, old: str, new: str = ""):
    """A copy of kb/ whose file `name` has its one `old` replaced by `new`."""
    copy = tmp_path / "kb"
    shutil.copytree(KB, copy)
    path = copy / name
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return copy


def _with(tmp_path, text: str):
    copy = tmp_path / "kb"
    shutil.copytree(KB, copy)
    version = copy / "v2024-08-21.lp"
    version.write_text(version.read_text() + text)
    return copy


def test_the_knowledge_base_passes_its_self_check():
    assert problems() == []


def test_a_comparison_with_an_undeclared_point_is_refused(tmp_path):
    copy = _with(tmp_path, '\nnot_met(K,"5d") :- in2024(K), compared(K,"creatinine_clearance_ml_min",44,below).\n')
    found = problems(copy)
    assert len(found) == 1 and "creatinine_clearance_ml_min with 44" in found[0]
    assert found[0].startswith("v2024-08-21.lp:")


def test_a_rule_reading_a_predicate_no_rule_defines_is_refused(tmp_path):
    # the comparison predicates of an earlier vocabulary are gone: a rule using one never fires
    copy = _with(tmp_path, '\nnot_met(K,"5d") :- in2024(K), below(K,"creatinine_clearance_ml_min",45).\n')
    found = problems(copy)
    assert any("below" in line for line in found)


def test_a_reason_that_types_its_bounds_number_is_refused(tmp_path):
    # issue 28: a number is stated once, in bound/5; a reason's words take it from there
    copy = _with(tmp_path, '\nbecause(K,"5d",requires("creatinine_clearance_ml_min","more than 45")) :- in2024(K).\n')
    found = problems(copy)
    assert len(found) == 1 and "types 45, which bound/5 declares" in found[0]
    assert found[0].startswith("v2024-08-21.lp:")


def test_a_reason_typing_a_number_no_bound_declares_is_not_refused(tmp_path):
    copy = _with(tmp_path, '\nbecause(K,"5d",named("clinical_trials","x","is one of 3 trials")) :- in2024(K).\n')
    assert problems(copy) == []


@pytest.mark.parametrize("line, name", [
    ('sentence(because, absent, "{0.spelled} not documented").', "{0.spelled}"),
    ('sentence(fact, requires, "{field} is not {1}").', "{field}"),
    ('phrase(and, " and {0.day}").', "{0.day}"),
])
def test_a_template_naming_what_the_writer_cannot_fill_is_refused(tmp_path, line, name):
    head = line.split(",")[0] + ","
    text = (KB / "words.lp").read_text()
    kept = [row for row in text.splitlines() if row.startswith(head + line.split(",")[1].split('"')[0])]
    assert len(kept) == 1, kept  # the template replaced is kb/words.lp's own
    found = problems(_replaced(tmp_path, "words.lp", kept[0], line))
    assert len(found) == 1 and name in found[0] and "cannot fill" in found[0]


@pytest.mark.parametrize("version", ["2024-08-21", "2025-11-01"])
def test_each_bound_is_declared_once_per_criterion(version):
    text = (KB / f"v{version}.lp").read_text()
    # "18 years of age or older"; "300 to 510 x 1 million CAR-positive T cells"
    assert text.count(f'bound("{version}","1","age",ge,18).') == 1
    ident = "9" if version == "2024-08-21" else "dose"
    assert text.count(f'bound("{version}","{ident}","dose_million_car_t_cells",ge,300).') == 1
    assert text.count(f'bound("{version}","{ident}","dose_million_car_t_cells",le,510).') == 1
    assert "threshold(" not in text


# --- the shown vocabulary: every shown atom is declared, and read by one reader ----------------
def test_a_shown_atom_the_vocabulary_does_not_declare_is_named_by_the_self_check(tmp_path):
    copy = _with(tmp_path, '\nnote(K,"5d") :- in2024(K).\n#show note/2.\n')
    found = problems(copy)
    assert len(found) == 1 and "#show note/2" in found[0] and found[0].startswith("v2024-08-21.lp:")


def test_a_shown_atom_of_another_arity_is_named_by_the_self_check(tmp_path):
    copy = _with(tmp_path, '\nrule_words(a,"x","y").\n#show rule_words/3.\n')
    assert any("#show rule_words/3" in line for line in problems(copy))


def test_deciding_refuses_a_shown_atom_the_vocabulary_does_not_declare(tmp_path):
    from covkb.api import check
    from covkb.engine.vocabulary import Undeclared
    from covkb.input.case import from_object

    for extra in ('\nnote(K,"5d") :- in2024(K).\n#show note/2.\n', '\nnote("x").\n#show note/1.\n'):
        copy = _with(tmp_path / str(len(extra)), extra)
        with pytest.raises(Undeclared, match="note/"):
            check(from_object({"case_id": "A", "date_of_service": "2025-01-15"}), directory=copy)


def test_a_criterion_without_a_remedy_kind_is_named_by_the_self_check(tmp_path):
    copy = _replaced(tmp_path, "v2025-11-01.lp", 'remedy_class("2025-11-01","dose",request).\n')
    assert problems(copy) == ["criterion dose of version 2025-11-01 has no remedy kind (remedy_class/3)"]


def test_a_criterion_with_two_remedy_kinds_is_named_by_the_self_check(tmp_path):
    copy = _with(tmp_path, '\nremedy_class("2024-08-21","9",clinical).\n')
    assert problems(copy) == ["criterion 9 of version 2024-08-21 has 2 remedy kinds (clinical, request)"]


# --- one criterion, one block (issue 28, item 2): what each criterion must state beside it ------
def _without(tmp_path, name: str, line: str):
    return problems(_replaced(tmp_path, name, line))


def test_a_criterion_met_with_time_without_its_timed_source_is_named(tmp_path):
    found = _without(tmp_path, "v2025-11-01.lp", 'timed("2025-11-01","1",age).\n')
    assert found == ["criterion 1 of version 2025-11-01 is met with time (remedy kind on_date) "
                     "but has no timed/3 saying from when"]


def test_a_criterion_reading_several_fields_without_failed_by_is_named(tmp_path):
    # 5f reads four infections; fails_when/3 is what names the ones that failed it
    found = _without(tmp_path, "v2024-08-21.lp", 'fails_when("2024-08-21","5f",true).\n')
    assert len(found) == 1 and found[0].startswith("criterion 5f of version 2024-08-21 reads 4 fields")


def test_a_criterion_a_later_version_drops_without_saying_what_became_of_it_is_named(tmp_path):
    found = _without(tmp_path, "v2025-11-01.lp", 'correspond("2024-08-21","9","2025-11-01","dose").\n')
    assert found == ["criterion 9 of version 2024-08-21 has no counterpart in version 2025-11-01, and neither "
                     "correspond/4 nor no_counterpart/3 says what became of it"]
    found = _without(tmp_path / "5g", "v2024-08-21.lp", 'no_counterpart("2024-08-21","5g","2025-11-01").\n')
    assert len(found) == 1 and found[0].startswith("criterion 5g of version 2024-08-21 has no counterpart")


def test_an_id_the_later_version_gives_to_another_criterion_is_no_counterpart(tmp_path):
    # 2025's 5b is 2024's 5c (correspond/4), not 2024's 5b, the allogeneic transplant
    found = _without(tmp_path, "v2024-08-21.lp", 'no_counterpart("2024-08-21","5b","2025-11-01").\n')
    assert found == ["criterion 5b of version 2024-08-21 has no counterpart in version 2025-11-01, and neither "
                     "correspond/4 nor no_counterpart/3 says what became of it"]


@pytest.mark.parametrize("version", ["2024-08-21", "2025-11-01"])
def test_each_criterion_states_its_remedy_kind_beside_it(version):
    # one block per criterion: the remedy kind follows the criterion's own words in its version file
    text = (KB / f"v{version}.lp").read_text()
    blocks = text.split("\ncriterion(")[1:]
    assert blocks
    for block in blocks:
        ident = block.split(",")[1].strip('"')
        assert f'remedy_class("{version}","{ident}",' in block, ident


def test_a_template_with_a_format_or_conversion_is_refused(tmp_path):
    # the writer fills fields with its renderings only: {0!r} or {1:>9} would be ignored
    line = 'sentence(because, absent, "{0} not documented").'
    found = problems(_replaced(tmp_path, "words.lp", line, line.replace("{0}", "{0!r}")))
    assert len(found) == 1 and "format or conversion" in found[0]
