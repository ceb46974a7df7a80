"""Drug and product names: generic, suffixed, short, brand, regimen; any letter case and
white space (SPEC §1); unrecognised names (SPEC §4.13); one line with every class (§4.4)."""

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


# SPEC §1: R lenalidomide, V bortezomib, K carfilzomib, I ixazomib, P pomalidomide,
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
])
def test_a_regimen_abbreviation_stands_for_its_agents(regimen, classes):
    result = decide(case(prior_lines=[[regimen], ["melphalan"]]))
    assert {c for c in CLASS_OF if status(result, c) == "met"} == classes


# "3. ... two or more prior lines of therapy including ALL the following" (SPEC §4.4)
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


# SPEC §4.13: an unrecognised agent keeps a class the known names miss unknown.
def test_unrecognised_agent_leaves_unmet_classes_unknown_and_is_reported():
    result = decide(case(prior_lines=[["Revlimid", "Velcaid"], ["Darzalex"]]))
    assert [status(result, c) for c in ("3a", "3b", "3c")] == ["met", "unknown", "met"]
    assert result.decision == "pending"
    assert any("'Velcaid'" in a and "recognised" in a for a in result.advisories)


def test_unrecognised_agent_does_not_hide_a_failure_elsewhere():
    result = decide(case(prior_lines=[["Velcaid"]]))
    assert status(result, "3") == "not_met"
    assert result.decision == "not_covered"


# SPEC §4.13: an unrecognised product is still a prior cell therapy, but counts for 5g/8
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


@pytest.mark.parametrize("trial, advisory", [
    ("Kymriah", False), ("teclistamab", False), ("VRd", False), ("mystery-cel", True),
])
def test_an_unrecognised_trial_name_is_reported(trial, advisory):
    result = decide(case(clinical_trials=[trial]))
    assert status(result, "4") == "met"
    assert bool(result.advisories) is advisory
    if advisory:
        assert result.advisories == [f"clinical_trials: '{trial}' is not a recognised name; please clarify it"]
