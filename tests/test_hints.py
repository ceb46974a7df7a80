"""Did-you-mean hints (reading 28: unrecognised names are kept and reported): a hint is
offered only for a likely typo, never another real drug, and it is part of the JSON
result as well as of `explain`."""

import json

import pytest
from typer.testing import CliRunner

from cases import case, decide
from covkb.input import case as cases
from covkb.surfaces.cli import app
from covkb.api import explain
from covkb.results.explain import as_text

runner = CliRunner()


def hints(data):
    return [(s.field, s.name, s.nearest) for s in decide(data).did_you_mean]


@pytest.mark.parametrize("changes, name", [
    # mezigdomide is a real cereblon modulator (-mide), not a misspelt pomalidomide
    ({"prior_lines": [["mezigdomide"], ["VRd", "daratumumab"]]}, "mezigdomide"),
    # siltuximab is a real anti-IL-6 antibody (-mab), two letters from isatuximab, not a
    # misspelt isatuximab
    ({"prior_lines": [["siltuximab"], ["VRd", "daratumumab"]]}, "siltuximab"),
    # a three-letter shorthand (venetoclax's) is one letter from 'len' and from 'vel': no guess
    ({"prior_lines": [["Ven"], ["VRd", "daratumumab"]]}, "Ven"),
    # as near karmma-2 as karmma-3: no one name to offer
    ({"clinical_trials": ["KarMMa-8"]}, "KarMMa-8"),
])
def test_a_name_that_is_no_likely_typo_is_offered_no_known_name(changes, name):
    data = case(**changes)
    assert any(n.name == name for n in explain(cases.from_object(data)).unrecognised)
    assert hints(data) == []
    text = as_text(explain(cases.from_object(data)))
    assert "did you mean" not in text and "may be a typo" not in text


def test_a_likely_typo_is_offered_the_known_name_in_the_json_result():
    data = case(prior_lines=[["Revlimid", "Velcaid"], ["Darzalx"]])
    assert hints(data) == [("prior_lines line 1", "Velcaid", "velcade"),
                           ("prior_lines line 2", "Darzalx", "darzalex")]
    out = runner.invoke(app, ["check", "-", "--format", "json"], input=json.dumps(data))
    assert json.loads(out.stdout)["did_you_mean"] == [
        {"field": "prior_lines line 1", "name": "Velcaid", "nearest": "velcade"},
        {"field": "prior_lines line 2", "name": "Darzalx", "nearest": "darzalex"}]


def test_a_result_with_no_hint_has_no_did_you_mean_field():
    out = runner.invoke(app, ["check", "-", "--format", "json"], input=json.dumps(case()))
    assert "did_you_mean" not in json.loads(out.stdout)


# kb/words.lp declares how near a likely typo is: typo_edits(from(4),1) and
# typo_edits(from(7),2): a name of 4 to 6 characters may be one edit from the known name, a
# name of 7 or more two, a name of 3 or fewer is offered nothing. Each edge, on both sides.
@pytest.mark.parametrize("name, nearest", [
    ("VRx", None),            # 3 characters, one edit from VRd: too short to guess
    ("Dexa", "dex"),          # 4 characters, one edit
    ("Abecna", "abecma"),     # 6 characters, one edit
    ("Abxcna", None),         # 6 characters, two edits: one is the most below 7
    ("Cxtoxn", None),         # 6 characters, two edits from cytoxan
    ("Vxlcadx", "velcade"),   # 7 characters, two edits
    ("Kyprolx", "kyprolis"),  # 7 characters, two edits
    ("Vxlcxdx", None),        # 7 characters, three edits
    ("Pxmxlxst", None),       # 8 characters, three edits from pomalyst
])
def test_a_typo_is_offered_a_known_name_within_the_declared_edits_and_no_further(name, nearest):
    got = hints(case(prior_lines=[[name], ["VRd", "daratumumab"]]))
    assert got == ([("prior_lines line 1", name, nearest)] if nearest else [])


# kb/words.lp's drug_stem(S): a name with a word ending in S is spelled as a drug of its own
# (USAN/INN stems) and is offered no known name, however near. Each name below is within
# the declared edits of exactly one known name (the second column), which it would be
# offered were its stem not declared.
@pytest.mark.parametrize("name, stem, near", [
    ("xelantamab mafodotin", "mab", "belantamab mafodotin"),
    ("xenalidomide", "mide", "lenalidomide"),
    ("xnito-cel", "cel", "anito-cel"),
    ("xortezomib", "zomib", "bortezomib"),
    ("bendamustinib", "tinib", "bendamustine"),
    ("xenetoclax", "toclax", "venetoclax"),
    ("xanobinostat", "inostat", "panobinostat"),
    ("xisplatin", "platin", "cisplatin"),
    ("xoxorubicin", "rubicin", "doxorubicin"),
    ("xendamustine", "mustine", "bendamustine"),
    ("bendamustide", "tide", "bendamustine"),
    ("linvoseltamxb-gcept", "cept", "linvoseltamab-gcpt"),
    ("idecabtagene vicleucxl", "gene", "idecabtagene vicleucel"),
    ("majestvec-1", "vec", "majestec-1"),
])
def test_a_name_spelled_with_a_declared_drug_stem_is_offered_no_known_name(name, stem, near):
    assert any(word.endswith(stem) for word in name.lower().replace("-", " ").split())
    from covkb.engine.reference import policy
    from covkb.results.result import nearest

    assert near in policy().names and name.lower() not in policy().names
    assert nearest(name.lower(), policy()) is None
    assert hints(case(prior_lines=[[name], ["VRd", "daratumumab"]])) == []
