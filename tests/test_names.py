"""Drug and product names: generic, suffixed, short, brand, regimen; any letter case and
white space (reading 21, 23); unrecognised names (reading 28); one line with every class (reading 12)."""

import pytest

from cases import IN_2024, IN_2025, case, decide, status

CLASS_OF = {"3a": "immunomodulatory", "3b": "proteasome inhibitor", "3c": "anti-CD38"}


@pytest.mark.parametrize("name, criterion", [
    ("thalidomide", "3a"), ("lenalidomide", "3a"), ("pomalidomide", "3a"),
    ("bortezomib", "3b"), ("carfilzomib", "3b"), ("daratumumab", "3c"),
    ("daratumumab and hyaluronidase", "3c"),
    ("Revlimid", "3a"), ("THALOMID", "3a"), ("pomalyst", "3a"), ("  Lenalidomide ", "3a"),
    ("Velcade", "3b"), ("KYPROLIS", "3b"), ("Ninlaro", "3b"), ("ixazomib", "3b"),
    ("Darzalex", "3c"), ("Darzalex   Faspro", "3c"), ("daratumumab and hyaluronidase-fihj", "3c"),
    ("Isatuximab-IRFC", "3c"), ("Sarclisa", "3c"), ("isatuximab", "3c"),
])
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_a_class_is_found_by_any_of_its_names(name, criterion, service):
    lines = [[name], ["dexamethasone"]]
    result = decide(case(prior_lines=lines, date_of_service=service))
    assert status(result, criterion) == "met"
    others = set(CLASS_OF) - {criterion}
    assert {status(result, c) for c in others} == {"not_met"}


# reading 23: R lenalidomide, V bortezomib, K carfilzomib, I ixazomib, P pomalidomide,
# T thalidomide, D daratumumab, Isa isatuximab, E elotuzumab, S selinexor,
# C/Cy cyclophosphamide, d dexamethasone.
IMID, PI, CD38 = "3a", "3b", "3c"


@pytest.mark.parametrize("regimen, classes", [
    ("VRd", {PI, IMID}), ("KRd", {PI, IMID}), ("DRd", {CD38, IMID}), ("IRd", {PI, IMID}),
    ("DVRd", {CD38, PI, IMID}), ("D-VRd", {CD38, PI, IMID}), ("DPd", {CD38, IMID}),
    ("DKd", {CD38, PI}), ("DVd", {CD38, PI}), ("IsaPd", {CD38, IMID}), ("IsaKd", {CD38, PI}),
    ("EPd", {IMID}), ("ERd", {IMID}), ("VTd", {PI, IMID}), ("VCd", {PI}), ("CyBorD", {PI}),
    ("PVd", {IMID, PI}), ("KPd", {PI, IMID}), ("SVd", {PI}), ("Kd", {PI}), ("Pd", {IMID}),
    ("Rd", {IMID}), ("Vd", {PI}), ("vrd", {PI, IMID}), ("KRD", {PI, IMID}),
    # RVd is VRd, in any letter case; Dara stands for D (kb/names.lp regimen_spelling, dara)
    ("RVd", {PI, IMID}), ("rvd", {PI, IMID}), ("RVD", {PI, IMID}),
    ("DaraRd", {CD38, IMID}), ("darard", {CD38, IMID}), ("DaraVRd", {CD38, PI, IMID}),
    ("DARAVRD", {CD38, PI, IMID}), ("DaraRVd", {CD38, PI, IMID}), ("DRVd", {CD38, PI, IMID}),
    ("drvd", {CD38, PI, IMID}), ("DaraPd", {CD38, IMID}), ("DaraKd", {CD38, PI}), ("DaraVd", {CD38, PI}),
    # regimens whose P is prednisone (VMP, MPT) and the lymphodepleting FluCy
    ("VMP", {PI}), ("vmp", {PI}), ("MPT", {IMID}), ("FluCy", set()), ("flucy", set()),
])
def test_a_regimen_abbreviation_stands_for_its_agents(regimen, classes):
    result = decide(case(prior_lines=[[regimen], ["melphalan"]]))
    assert {c for c in CLASS_OF if status(result, c) == "met"} == classes


# "3. ... two or more prior lines of therapy including ALL the following" (reading 12)
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_one_line_holding_all_three_classes_still_fails_3(service):
    result = decide(case(prior_lines=[["DVRd"]], date_of_service=service))
    assert [status(result, c) for c in ("3", "3a", "3b", "3c")] == ["not_met", "met", "met", "met"]
    assert result.decision == "not_covered"


@pytest.mark.parametrize("lines, expected", [
    ([], "not_met"), ([["Rd"]], "not_met"), ([["Rd"], ["Vd"]], "met"),
    ([["Rd"], ["Vd"], ["Dd"]], "met"),
])
def test_two_or_more_prior_lines(lines, expected):
    assert status(decide(case(prior_lines=lines)), "3") == expected


def test_classes_may_come_from_different_lines():
    result = decide(case(prior_lines=[["Revlimid"], ["Velcade"], ["Darzalex"]]))
    assert result.decision == "covered"


def test_other_myeloma_agents_belong_to_no_class():
    lines = [["dexamethasone", "prednisone", "melphalan", "cyclophosphamide", "bendamustine",
              "doxorubicin", "cisplatin", "etoposide", "elotuzumab"],
             ["selinexor", "venetoclax", "panobinostat", "belantamab mafodotin", "teclistamab",
              "elranatamab", "talquetamab", "linvoseltamab"]]
    result = decide(case(prior_lines=lines))
    assert [status(result, c) for c in ("3", "3a", "3b", "3c")] == ["met", "not_met", "not_met", "not_met"]
    assert not any("recognised" in a for a in result.advisories)


# reading 28: an unrecognised agent keeps a class the known names miss unknown.
def test_unrecognised_agent_leaves_unmet_classes_unknown_and_is_reported():
    result = decide(case(prior_lines=[["Revlimid", "Velcaid"], ["Darzalex"]]))
    assert [status(result, c) for c in ("3a", "3b", "3c")] == ["met", "unknown", "met"]
    assert result.decision == "pending"
    assert any("'Velcaid'" in a and "recognised" in a for a in result.advisories)


def test_unrecognised_agent_does_not_hide_a_failure_elsewhere():
    result = decide(case(prior_lines=[["Velcaid"]]))
    assert status(result, "3") == "not_met"
    assert result.decision == "not_covered"


# reading 29: an unrecognised product is still a prior cell therapy, but counts for 5g/8
# only when recognised.
@pytest.mark.parametrize("service, expected", [
    (IN_2024, {"4": "not_met", "5c": "not_met", "5g": "met", "8": "met"}),
    (IN_2025, {"4": "not_met", "5b": "not_met", "8": "met"}),
])
def test_unrecognised_prior_product(service, expected):
    result = decide(case(prior_cell_therapies=["abc-cel"], date_of_service=service))
    assert {k: status(result, k) for k in expected} == expected
    assert any("'abc-cel'" in a for a in result.advisories)


@pytest.mark.parametrize("name", ["ABECMA", "Idecabtagene  Vicleucel", "ide-cel", " abecma "])
def test_ide_cel_by_any_name_fails_8(name):
    assert status(decide(case(prior_cell_therapies=[name])), "8") == "not_met"


@pytest.mark.parametrize("name", ["Carvykti", "CILTA-CEL", "ciltacabtagene autoleucel"])
def test_cilta_cel_by_any_name_fails_5g_under_2024_08_21(name):
    result = decide(case(prior_cell_therapies=[name], date_of_service=IN_2024))
    assert status(result, "5g") == "not_met"


# Further US brand and generic names of myeloma agents and CAR-T products; none of them is
# an agent of the three classes, and each is recognised (no clarification asked).
@pytest.mark.parametrize("name", [
    "Alkeran", "Evomela", "Treanda", "Bendeka", "Doxil", "liposomal doxorubicin", "Empliciti",
    "Xpovio", "Venclexta", "Farydak", "Blenrep", "belantamab mafodotin-blmf", "Tecvayli",
    "teclistamab-cqyv", "Elrexfio", "elranatamab-bcmm", "Talvey", "talquetamab-tgvs",
    "Lynozyfic", "linvoseltamab-gcpt",
])
def test_other_agent_names_are_recognised_and_of_no_class(name):
    result = decide(case(prior_lines=[[name], ["dexamethasone"]]))
    assert [status(result, c) for c in ("3a", "3b", "3c")] == ["not_met"] * 3
    assert result.advisories == []


@pytest.mark.parametrize("name", [
    "tisagenlecleucel", "tisa-cel", "Kymriah", "axicabtagene ciloleucel", "axi-cel", "Yescarta",
    "brexucabtagene autoleucel", "brexu-cel", "Tecartus", "lisocabtagene maraleucel", "liso-cel",
    "Breyanzi", "obecabtagene autoleucel", "obe-cel", "Aucatzyl",
])
def test_other_car_t_products_are_recognised_prior_cell_therapies(name):
    result = decide(case(prior_cell_therapies=[name], date_of_service=IN_2024))
    assert [status(result, c) for c in ("4", "5c", "5g", "8")] == ["not_met", "not_met", "met", "met"]
    assert result.advisories == []


# reading 14: "A clinical_trials entry is read by product or trial name (reading 2); a recognised
# name of anything else (another agent or product) is no listed therapy; an unrecognised
# name leaves 4 unknown (unless something else fails it) and is listed for clarification."
@pytest.mark.parametrize("trial, expected", [
    ("Kymriah", "met"), ("teclistamab", "met"), ("VRd", "met"), ("mystery-cel", "unknown"),
    ("KarMMa-5", "unknown"), ("CARTITUDE-3", "unknown"),
])
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_a_trial_entry_is_read_by_product_or_trial_name(trial, expected, service):
    result = decide(case(clinical_trials=[trial], date_of_service=service))
    assert status(result, "4") == expected
    four = next(c for c in result.criteria if c.id == "4")
    if expected == "unknown":
        assert result.decision == "pending"
        assert result.advisories == [f"clinical_trials: '{trial}' is not a recognised name; please clarify it"]
        assert any(f"'{trial}' is not a recognised therapy or trial name" in b for b in four.because)
    else:
        assert result.advisories == []


# reading 26: "KarMMa, KarMMa-2, KarMMa-3 are ide-cel trials; CARTITUDE-1, -2, -4, -5, -6 are
# cilta-cel trials"; §4.5: ide-cel and cilta-cel are listed in 2024-08-21, ide-cel alone in
# 2025-11-01.
@pytest.mark.parametrize("trial, in_2024, in_2025", [
    ("KarMMa", "not_met", "not_met"), ("KarMMa-2", "not_met", "not_met"),
    ("KarMMa-3", "not_met", "not_met"), ("karmma-3", "not_met", "not_met"),
    ("CARTITUDE-1", "not_met", "met"), ("CARTITUDE-2", "not_met", "met"),
    ("CARTITUDE-4", "not_met", "met"), ("Cartitude-5", "not_met", "met"),
    ("CARTITUDE-6", "not_met", "met"),
])
def test_a_trial_name_is_a_trial_of_its_product(trial, in_2024, in_2025):
    for date, expected in ((IN_2024, in_2024), (IN_2025, in_2025)):
        result = decide(case(clinical_trials=[trial], date_of_service=date))
        assert status(result, "4") == expected
        if expected == "not_met":  # the reason says why, in each version that lists the trial's product
            four = next(c for c in result.criteria if c.id == "4")
            assert f"clinical_trials: '{trial}' is a clinical trial of a therapy listed in this policy" in four.because


def test_an_unrecognised_trial_does_not_hide_a_failure_of_4():
    result = decide(case(clinical_trials=["mystery-cel"], prior_cell_therapies=["Kymriah"]))
    assert status(result, "4") == "not_met" and result.decision == "not_covered"


# reading 29: "A recognised CAR-T product named in prior_lines is a prior cell therapy as if
# it were in prior_cell_therapies (it fails 4, 5b/5c, and 5g/8 by product), with an
# advisory saying where it was found; it is not an unrecognised agent."
@pytest.mark.parametrize("product, service, expected", [
    ("Abecma", IN_2024, {"4": "not_met", "5c": "not_met", "5g": "not_met", "8": "not_met"}),
    ("Abecma", IN_2025, {"4": "not_met", "5b": "not_met", "8": "not_met"}),
    ("cilta-cel", IN_2024, {"4": "not_met", "5c": "not_met", "5g": "not_met", "8": "not_met"}),
    ("cilta-cel", IN_2025, {"4": "not_met", "5b": "not_met", "8": "met"}),
    ("Kymriah", IN_2024, {"4": "not_met", "5c": "not_met", "5g": "met", "8": "met"}),
    ("Kymriah", IN_2025, {"4": "not_met", "5b": "not_met", "8": "met"}),
])
def test_a_car_t_product_in_prior_lines_is_a_prior_cell_therapy(product, service, expected):
    result = decide(case(prior_lines=[["VRd"], ["DPd"], [product]], date_of_service=service))
    assert {k: status(result, k) for k in expected} == expected
    assert result.decision == "not_covered"
    assert [status(result, c) for c in ("3a", "3b", "3c")] == ["met"] * 3
    assert not any("not a recognised name" in a for a in result.advisories)
    assert any(a.startswith(f"prior_lines line 3: '{product}'") and "prior cell therapy" in a
               for a in result.advisories)


# reading 15: "purpose lymphodepletion is exempt only for a lymphodepleting chemotherapy
# agent (reading 15). A recognised agent of any other kind given for lymphodepletion, or a myeloma
# agent of §1 (the three classes and the other myeloma agents, less dexamethasone and
# prednisone) given as supportive, is combination use: 5a not met, the reason naming the
# agent and its stated purpose. An unrecognised agent given for lymphodepletion leaves 5a
# unknown (unless something else fails it)."
@pytest.mark.parametrize("agent, purpose, expected", [
    ("fludarabine", "lymphodepletion", "met"), ("Cyclophosphamide", "lymphodepletion", "met"),
    ("bendamustine", "lymphodepletion", "met"), ("Treanda", "lymphodepletion", "met"),
    ("daratumumab", "lymphodepletion", "not_met"), ("melphalan", "lymphodepletion", "not_met"),
    ("Abecma", "lymphodepletion", "not_met"), ("VCd", "lymphodepletion", "not_met"),
    ("pomalidomide", "supportive", "not_met"), ("Darzalex", "supportive", "not_met"),
    ("teclistamab", "supportive", "not_met"), ("Rd", "supportive", "not_met"),
    ("dexamethasone", "supportive", "met"), ("prednisone", "supportive", "met"),
    ("tocilizumab", "supportive", "met"), ("fludarabine", "supportive", "met"),
    ("daratumumab", "bridging", "met"), ("VRd", "bridging", "met"),
    ("fludarabine", "anti_cancer", "not_met"), ("tocilizumab", "anti_cancer", "not_met"),
    ("mystery-mab", "lymphodepletion", "unknown"), ("Flu/Cy", "lymphodepletion", "met"),
    ("Fludara", "lymphodepletion", "met"), ("Bendeka", "lymphodepletion", "met"),  # brand names (reading 22)
])
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_lymphodepletion_is_exempt_only_for_lymphodepleting_chemotherapy(agent, purpose, expected, service):
    therapies = [{"agent": "fludarabine", "purpose": "lymphodepletion"}, {"agent": agent, "purpose": purpose}]
    result = decide(case(concurrent_therapies=therapies, date_of_service=service))
    assert status(result, "5a") == expected
    five_a = next(c for c in result.criteria if c.id == "5a")
    if expected == "not_met":
        assert any(f"'{agent}'" in b for b in five_a.because)
        if purpose != "anti_cancer":
            assert any(f"'{agent}' is given {'for lymphodepletion' if purpose == 'lymphodepletion' else 'as supportive care'}"
                       in b for b in five_a.because)
    if expected == "unknown":
        assert result.decision == "pending"
        assert any(f"'{agent}'" in a and "recognised" in a for a in result.advisories)
        assert any(f"'{agent}' is given for lymphodepletion and is not a recognised agent name" in b
                   for b in five_a.because)


def test_an_unrecognised_lymphodepleting_agent_does_not_hide_combination_use():
    therapies = [{"agent": "mystery-mab", "purpose": "lymphodepletion"},
                 {"agent": "pomalidomide", "purpose": "supportive"}]
    assert status(decide(case(concurrent_therapies=therapies)), "5a") == "not_met"


# reading 21, 23: "Before matching, ® and ™ are dropped; in a regimen abbreviation hyphens, spaces
# and / are ignored (Isa-Pd = IsaPd, D-VRd = DVRd), Dara stands for D, and RVd is VRd. A
# name written X (Y) is recognised when X or Y is and the two do not name different things."
@pytest.mark.parametrize("spelling, classes", [
    ("Revlimid®", {IMID}), ("Velcade™", {PI}), ("DARZALEX FASPRO®", {CD38}),
    ("Isa-Pd", {CD38, IMID}), ("Isa Pd", {CD38, IMID}), ("Isa/Pd", {CD38, IMID}),
    ("D-VRd", {CD38, PI, IMID}), ("D VRd", {CD38, PI, IMID}), ("V/R/d", {PI, IMID}),
    ("RVd", {PI, IMID}), ("R-V-d", {PI, IMID}), ("Dara-VRd", {CD38, PI, IMID}),
    ("Dara-Rd", {CD38, IMID}), ("DaraPd", {CD38, IMID}), ("Dara-Kd", {CD38, PI}),
    ("Dara-Vd", {CD38, PI}), ("D-RVd", {CD38, PI, IMID}), ("Dara-RVd", {CD38, PI, IMID}),
    ("bortezomib (Velcade)", {PI}), ("Velcade (bortezomib)", {PI}), ("Velcade (Velcaid)", {PI}),
    ("Velcaid (bortezomib)", {PI}), ("VRd (bortezomib, lenalidomide, dexamethasone)", {PI, IMID}),
    ("Darzalex® (daratumumab)", {CD38}),
])
def test_spellings_reviewers_write_are_recognised(spelling, classes):
    result = decide(case(prior_lines=[[spelling], ["melphalan"]]))
    assert {c for c in CLASS_OF if status(result, c) == "met"} == classes
    assert not any("recognised" in a for a in result.advisories)


@pytest.mark.parametrize("spelling", ["Velcade (Revlimid)", "VRd (KRd)", "Velcade-x", "Isa-Pd-Q"])
def test_names_that_contradict_or_do_not_match_are_unrecognised(spelling):
    result = decide(case(prior_lines=[[spelling], ["melphalan"]]))
    assert any(f"'{spelling}'" in a and "not a recognised name" in a for a in result.advisories)


@pytest.mark.parametrize("name, service, failing", [
    ("idecabtagene vicleucel (Abecma)", IN_2025, "8"), ("Abecma®", IN_2025, "8"),
    ("Carvykti™", IN_2024, "5g"), ("ciltacabtagene autoleucel (Carvykti)", IN_2024, "8"),
])
def test_product_spellings_fail_5g_and_8(name, service, failing):
    result = decide(case(prior_cell_therapies=[name], date_of_service=service))
    assert status(result, failing) == "not_met"
    assert result.advisories == []


@pytest.mark.parametrize("spelling", ["ide cel", "idecel", "IDE-CEL", "ide\u2011cel", "bb2121"])
def test_ide_cel_however_joined_and_its_code_fail_8(spelling):
    # reading 22: the unhyphenated short names (`ide cel`, `idecel`) and the development code
    # bb2121 are ide-cel; a non-breaking hyphen (U+2011) is a hyphen
    result = decide(case(prior_cell_therapies=[spelling]))
    assert status(result, "8") == "not_met" and status(result, "4") == "not_met"
    assert result.advisories == []
