"""Names and lines as charts write them (reading 22–27 "Names as charts write them", §4.13,
§4.15, §4.16): each spelling class and rule, both versions where they differ."""

from decimal import Decimal

import pytest

from cases import IN_2024, IN_2025, case, decide, status

IMID, PI, CD38 = "3a", "3b", "3c"
CLASSES = (IMID, PI, CD38)
BOTH = pytest.mark.parametrize("service", [IN_2024, IN_2025])


def classes_met(result) -> set:
    return {c for c in CLASSES if status(result, c) == "met"}


# reading 24: regimens read compositionally from component codes (Isa, Dara, D, Elo, K, C,
# lower-case d dexamethasone, X selinexor, B belantamab), combinations in words, short names,
# route/formulation/phase/salt words after a name, Unicode dashes and spaces, NFKC.
@pytest.mark.parametrize("spelling, classes", [
    ("Isa-VRd", {CD38, PI, IMID}), ("D-VTd", {CD38, PI, IMID}), ("Dara-KRd", {CD38, PI, IMID}),
    ("IsaKRd", {CD38, PI, IMID}), ("D-VMP", {CD38, PI}), ("VMP", {PI}), ("MPT", {IMID}),
    ("KCd", {PI}), ("Elo-Pd", {IMID}), ("EloPd", {IMID}), ("XPd", {IMID}), ("BVd", {PI}),
    ("Dara-Rd", {CD38, IMID}), ("Tec-Dara", {CD38}),
    ("Len/dex", {IMID}), ("Pom/dex", {IMID}), ("Rev/dex", {IMID}),
    ("lenalidomide + dexamethasone", {IMID}), ("bortezomib and dexamethasone", {PI}),
    ("Dara", {CD38}), ("Isa", {CD38}), ("Vel", {PI}), ("Carfil", {PI}), ("Ixa", {PI}), ("Thal", {IMID}),
    ("Revlimid maintenance", {IMID}), ("VRd induction", {PI, IMID}), ("Darzalex SC", {CD38}),
    ("bortezomib IV", {PI}), ("ixazomib citrate", {PI}), ("Dara-KRd consolidation", {CD38, PI, IMID}),
    ("daratumumab-hyaluronidase", {CD38}), ("daratumumab-hyaluronidase-fihj", {CD38}),
    ("daratumumab/hyaluronidase", {CD38}), ("daratumumab/hyaluronidase-fihj", {CD38}), ("Boruzu", {PI}),
    ("D\u2010VRd", {CD38, PI, IMID}),           # U+2010 hyphen, pasted from a PDF
    ("Isa\u2013VRd", {CD38, PI, IMID}),         # en dash
    ("Isa\u00a0VRd", {CD38, PI, IMID}),         # no-break space
    ("\uff36\uff32\uff44", {PI, IMID}),          # full-width VRd: NFKC
    ("Revlimid\u2122 maintenance", {IMID}),
])
@BOTH
def test_a_chart_spelling_is_read_as_its_agents(spelling, classes, service):
    result = decide(case(prior_lines=[[spelling], ["dexamethasone"]], date_of_service=service))
    assert classes_met(result) == classes
    assert {status(result, c) for c in set(CLASSES) - classes} <= {"not_met"}
    assert result.advisories == []


# reading 24: "A spelling with more than one reading that differ in a drug class (an
# all-capitals D that could be daratumumab or dexamethasone where it matters) is not
# guessed: it is unrecognised and listed for clarification — unless a regimen the knowledge
# base lists by name settles it (VRD is VRd)."
@pytest.mark.parametrize("spelling", ["KCD", "DaraVMP", "MD"])
@BOTH
def test_a_spelling_whose_readings_differ_is_not_guessed(spelling, service):
    result = decide(case(prior_lines=[[spelling], ["dexamethasone"]], date_of_service=service))
    assert result.decision == "pending"
    assert {status(result, c) for c in CLASSES} == {"unknown"}
    assert result.advisories == [f"prior_lines line 1: '{spelling}' is not a recognised name; please clarify it"]


@pytest.mark.parametrize("spelling, classes", [
    ("VRD", {PI, IMID}), ("DVRD", {CD38, PI, IMID}), ("D-VMP", {CD38, PI}), ("KRD", {PI, IMID}),
    # every other regimen of kb/names.lp's table, in capitals, as its agents' classes
    ("IRD", {PI, IMID}), ("DRD", {CD38, IMID}), ("DPD", {CD38, IMID}), ("DKD", {CD38, PI}),
    ("DVD", {CD38, PI}), ("ISAPD", {CD38, IMID}), ("ISAKD", {CD38, PI}), ("EPD", {IMID}),
    ("ERD", {IMID}), ("VTD", {PI, IMID}), ("VCD", {PI}), ("CYBORD", {PI}), ("PVD", {IMID, PI}),
    ("KPD", {PI, IMID}), ("SVD", {PI}), ("KD", {PI}), ("PD", {IMID}), ("RD", {IMID}), ("VD", {PI}),
    ("FLUCY", set()), ("FC", set()), ("MP", set()), ("VMP", {PI}), ("MPT", {IMID}),
    ("DVMP", {CD38, PI}),
])
def test_a_regimen_listed_by_name_settles_an_all_capitals_d(spelling, classes):
    result = decide(case(prior_lines=[[spelling], ["dexamethasone"]]))
    assert classes_met(result) == classes and result.advisories == []


# reading 24: a regimen no table lists is read from its component codes (kb/names.lp
# letter_code, short_code): each letter and code as its agent, an upper-case D as
# daratumumab and a lower-case d as dexamethasone. Statuses of 3a, 3b and 3c.
@pytest.mark.parametrize("spelling, statuses", [
    ("RCd", "mnn"), ("IPd", "mmn"), ("CTd", "mnn"), ("KTd", "mmn"), ("SPd", "mnn"), ("SKd", "nmn"),
    ("EVd", "nmn"), ("KCd", "nmn"), ("Bor-Dex", "nmn"), ("Cyc-Bor-Dex", "nmn"), ("D-Len", "mnm"),
])
def test_a_regimen_no_table_lists_is_read_from_its_codes(spelling, statuses):
    result = decide(case(prior_lines=[[spelling], ["dexamethasone"]]))
    expected = {"m": "met", "n": "not_met"}
    assert [status(result, c) for c in ("3a", "3b", "3c")] == [expected[s] for s in statuses]
    assert result.advisories == []


# Letters that are codes but no regimen, and a code beside a full name, are not read.
@pytest.mark.parametrize("spelling", ["RT", "XRT", "MRI", "BMT", "Velcade-x", "ASCT-x", "Isa-Pd-Q", "DPdd"])
def test_letters_that_make_no_regimen_stay_unrecognised(spelling):
    result = decide(case(prior_lines=[[spelling], ["dexamethasone"]]))
    assert result.decision == "pending"
    assert any(f"'{spelling}' is not a recognised name" in a for a in result.advisories)


# reading 15, 22, §4.6: the lymphodepleting agents by brand, short name and combination.
@pytest.mark.parametrize("agent, purpose, expected", [
    ("Cytoxan", "lymphodepletion", "met"), ("Cy", "lymphodepletion", "met"),
    ("Flu", "lymphodepletion", "met"), ("FC", "lymphodepletion", "met"),
    ("Flu/Cy", "lymphodepletion", "met"), ("Flu + Cy", "lymphodepletion", "met"),
    ("Fludara", "lymphodepletion", "met"), ("Belrapzo", "lymphodepletion", "met"),
    ("Benda", "lymphodepletion", "met"), ("cyclophosphamide IV", "lymphodepletion", "met"),
    ("dex", "supportive", "met"), ("Decadron", "supportive", "met"), ("pred", "supportive", "met"),
    ("Dara", "lymphodepletion", "not_met"), ("Len/dex", "supportive", "not_met"),
    ("Mel", "lymphodepletion", "not_met"),
])
@BOTH
def test_lymphodepletion_names_as_charts_write_them(agent, purpose, expected, service):
    therapies = [{"agent": agent, "purpose": purpose}]
    result = decide(case(concurrent_therapies=therapies, date_of_service=service))
    assert status(result, "5a") == expected
    assert result.advisories == []


# reading 21, 22: brands of the other myeloma agents are recognised and of no class.
@pytest.mark.parametrize("name", ["Cytoxan", "Decadron", "Belrapzo", "Evomela", "Alkeran",
                                  "Empliciti", "Xpovio", "Blenrep", "Tecvayli", "Elrexfio",
                                  "Talvey", "Lynozyfic", "Mel", "Benda", "pred", "Sel", "dex"])
def test_brands_of_other_agents_are_recognised_and_of_no_class(name):
    result = decide(case(prior_lines=[[name], ["dexamethasone"]]))
    assert [status(result, c) for c in CLASSES] == ["not_met"] * 3
    assert result.advisories == []


# reading 22, 26: development codes and unhyphenated short names of the two listed products; other
# CAR-T and genetically modified T-cell products. 5g and 8 of 2024-08-21 fail on either
# listed product, 8 of 2025-11-01 on ide-cel alone (§4.7, §4.8).
@pytest.mark.parametrize("name, product", [
    ("bb2121", "ide"), ("BB2121", "ide"), ("ide cel", "ide"), ("idecel", "ide"), ("ide\u2011cel", "ide"),
    ("JNJ-4528", "cilta"), ("JNJ-68284528", "cilta"), ("LCAR-B38M", "cilta"), ("cilta cel", "cilta"),
    ("ciltacel", "cilta"),
    ("anito-cel", None), ("zevor-cel", None), ("equecabtagene autoleucel", None), ("arlo-cel", None),
    ("orva-cel", None), ("Descartes-08", None), ("afami-cel", None), ("Tecelra", None),
    ("anitocabtagene autoleucel", None), ("zevorcabtagene autoleucel", None), ("eque-cel", None),
    ("Fucaso", None), ("arlocabtagene autoleucel", None), ("orvacabtagene autoleucel", None),
    ("afamitresgene autoleucel", None),
])
def test_product_codes_and_other_products(name, product):
    old = decide(case(prior_cell_therapies=[name], date_of_service=IN_2024))
    new = decide(case(prior_cell_therapies=[name], date_of_service=IN_2025))
    assert [status(old, c) for c in ("4", "5c")] == ["not_met", "not_met"]
    assert [status(new, c) for c in ("4", "5b")] == ["not_met", "not_met"]
    listed = "not_met" if product else "met"
    assert status(old, "5g") == status(old, "8") == listed
    assert status(new, "8") == ("not_met" if product == "ide" else "met")
    assert old.advisories == new.advisories == []


# reading 26: every ide-cel and cilta-cel trial, in any spacing and case and by NCT number;
# trials of other therapies are of no listed therapy (§4.5: 2024-08-21 lists ide-cel and
# cilta-cel, 2025-11-01 ide-cel alone).
@pytest.mark.parametrize("trial, product", [
    ("KarMMa-9", "ide"), ("KarMMa-7", "ide"), ("KarMMa-4", "ide"), ("KarMMa 3", "ide"),
    ("KARMMA-3", "ide"), ("NCT03651128", "ide"), ("CRB-401", "ide"), ("nct03361748", "ide"),
    ("Abecma (KarMMa-3)", "ide"),
    ("CARTIFAN-1", "cilta"), ("LEGEND-2", "cilta"), ("CARTITUDE 4", "cilta"), ("NCT04181827", "cilta"),
    ("Carvykti (CARTITUDE-1)", "cilta"),
    ("MajesTEC-1", None), ("MonumenTAL-1", None), ("MagnetisMM-3", None), ("DREAMM-7", None),
    ("IMROZ", None), ("PERSEUS", None), ("DREAMM-8", None), ("CEPHEUS", None), ("LINKER-MM1", None),
    ("iMMagine-1", None),
    # ClinicalTrials.gov numbers of the trials kb/names.lp cites
    ("NCT02658929", "ide"), ("NCT03601078", "ide"), ("NCT04196491", "ide"), ("NCT06045806", "ide"),
    ("NCT03090659", "cilta"), ("NCT03548207", "cilta"), ("NCT04133636", "cilta"), ("NCT04923893", "cilta"),
    ("NCT05257083", "cilta"), ("NCT03758417", "cilta"),
])
def test_trials_by_name_in_any_spacing_and_by_nct_number(trial, product):
    old = decide(case(clinical_trials=[trial], date_of_service=IN_2024))
    new = decide(case(clinical_trials=[trial], date_of_service=IN_2025))
    assert status(old, "4") == ("not_met" if product else "met")
    assert status(new, "4") == ("not_met" if product == "ide" else "met")
    assert old.advisories == new.advisories == []


# reading 29: a name in prior_cell_therapies recognised as a drug or a procedure is
# misfiled: 4 and 5b/5c unknown on its account, an advisory naming what it is.
@pytest.mark.parametrize("name, what", [
    ("teclistamab", "is a drug"), ("Tecvayli", "is a drug"), ("VRd", "is a drug"),
    ("autologous stem cell transplant", "is an autologous stem cell transplant, a procedure"),
    ("allogeneic stem cell transplant", "is an allogeneic stem cell transplant, a procedure"),
    ("stem cell transplant", "is a stem cell transplant, a procedure"),
    ("ASCT", "is an autologous stem cell transplant, a procedure"),
    ("Mel200", "is high-dose melphalan"),
])
@pytest.mark.parametrize("service, cell, more", [(IN_2024, "5c", {"5g": "met", "8": "met"}),
                                                 (IN_2025, "5b", {"8": "met"})])
def test_a_misfiled_name_leaves_4_and_the_cell_criterion_unknown(name, what, service, cell, more):
    result = decide(case(prior_cell_therapies=[name], date_of_service=service))
    assert {c: status(result, c) for c in ["4", cell, *more]} == {"4": "unknown", cell: "unknown", **more}
    assert result.decision == "pending"
    [advisory] = result.advisories
    assert advisory.startswith(f"prior_cell_therapies: '{name}' {what}") and "not a recognised" not in advisory
    assert any(name in d.words and "misfiled" in d.words for d in result.documentation)


@pytest.mark.parametrize("service, cell", [(IN_2024, "5c"), (IN_2025, "5b")])
def test_the_criteria_a_misfiled_name_leaves_unknown_give_it_as_their_reason(service, cell):
    result = decide(case(prior_cell_therapies=["teclistamab"], date_of_service=service))
    reason = ("prior_cell_therapies: 'teclistamab' is recognised as something other than a cell therapy: "
              "it may be misfiled, and is not read as one")
    for criterion in result.criteria:
        if criterion.id in ("4", cell):
            assert reason in criterion.because


@BOTH
def test_criterion_4_says_a_recognised_trial_is_of_no_listed_therapy(service):
    result = decide(case(clinical_trials=["MajesTEC-1"], date_of_service=service))
    [because] = [c.because for c in result.criteria if c.id == "4"]
    assert ("clinical_trials: 'MajesTEC-1' is neither a therapy listed in this policy nor a clinical "
            "trial of one") in because


# 5g and 8 of 2024-08-21 name ide-cel and cilta-cel, 8 of 2025-11-01 ide-cel alone (readings
# 16, 18): another product is met on, and its reason says so.
@pytest.mark.parametrize("service, criteria, listed", [
    (IN_2024, ("5g", "8"), "idecabtagene vicleucel or ciltacabtagene autoleucel"),
    (IN_2025, ("8",), "idecabtagene vicleucel"),
])
def test_another_product_meets_the_listed_product_criteria_and_says_why(service, criteria, listed):
    result = decide(case(prior_cell_therapies=["Kymriah"], date_of_service=service))
    for ident in criteria:
        assert status(result, ident) == "met"
        [because] = [c.because for c in result.criteria if c.id == ident]
        assert because == [f"prior_cell_therapies: 'Kymriah' is a prior cell therapy, not recognised as {listed}"]


@pytest.mark.parametrize("service, cell", [(IN_2024, "5c"), (IN_2025, "5b")])
def test_a_misfiled_name_does_not_hide_a_real_prior_cell_therapy(service, cell):
    result = decide(case(prior_cell_therapies=["teclistamab", "Kymriah"], date_of_service=service))
    assert status(result, "4") == status(result, cell) == "not_met"
    assert result.decision == "not_covered"


# reading 27: "A procedure named in prior_lines (ASCT, high-dose melphalan) is no
# unrecognised agent and gives no class."
@BOTH
def test_a_procedure_in_prior_lines_is_recognised_and_gives_no_class(service):
    result = decide(case(prior_lines=[["ASCT", "HDM"], ["auto-SCT"]], date_of_service=service))
    assert [status(result, c) for c in ("3", *CLASSES)] == ["met", "not_met", "not_met", "not_met"]
    assert not any("recognised" in a for a in result.advisories)


# Each spelling of a procedure kb/names.lp declares, alone in a line, is recognised.
@pytest.mark.parametrize("spelling", [
    "ASCT", "auto-SCT", "autoSCT", "auto SCT", "autologous stem cell transplant",
    "autologous stem cell transplantation", "autologous transplant", "auto-HCT", "autoHCT",
    "allo-SCT", "alloSCT", "allo SCT", "allogeneic stem cell transplant",
    "allogeneic stem cell transplantation", "allogeneic transplant", "stem cell transplant", "SCT",
    "high-dose melphalan", "high dose melphalan", "HDM", "Mel200", "Mel 200", "Mel140", "Mel 140",
])
def test_every_spelling_of_a_procedure_is_recognised(spelling):
    result = decide(case(prior_lines=[["VRd"], [spelling], ["DPd"]]))
    assert not any("recognised" in a for a in result.advisories)


# reading 25 `X (Y)`: two parts naming the same agents name one thing, however each is
# written: two listed regimens, a part read from its codes beside a listed regimen, two
# readings of a transplant with its conditioning (a qualifier word after it).
@pytest.mark.parametrize("spelling, advisory", [
    ("CyBorD (VCd)", None), ("Elo-Pd (EPd) maintenance", None),
    ("HDM/ASCT (Mel200/ASCT) consolidation", "holds only a transplant or its conditioning"),
])
def test_two_parts_with_the_same_agents_name_one_thing(spelling, advisory):
    result = decide(case(prior_lines=[["VRd"], [spelling], ["DPd"]]))
    assert not any("not a recognised name" in a for a in result.advisories)
    assert [advisory in a for a in result.advisories] == ([True] if advisory else [])


# Typos of a short name and of a procedure are suggested the name they miss.
@pytest.mark.parametrize("typo, nearest", [
    ("Bennda", "benda"), ("Carfill", "carfil"),
    ("autologous stem cell transplnt", "autologous stem cell transplant"),
])
def test_a_typo_of_a_short_name_or_procedure_is_suggested(typo, nearest):
    result = decide(case(prior_lines=[["VRd"], [typo], ["DPd"]]))
    assert [(s.name, s.nearest) for s in result.did_you_mean] == [(typo, nearest)]


# A transplant written with its conditioning in one name is read from its parts (reading 24, 27:
# joined with `/`, `+` or "and"), a line of a transplant alone (reading 13).
@pytest.mark.parametrize("spelling", ["HDM/ASCT", "Mel200/ASCT", "high-dose melphalan and ASCT"])
def test_a_transplant_with_its_conditioning_is_read_from_its_parts(spelling):
    result = decide(case(prior_lines=[["VRd"], [spelling], ["DPd"]]))
    [advisory] = result.advisories
    assert advisory.startswith("prior_lines line 2 holds only a transplant or its conditioning")


# reading 13: counted as listed, with an advisory where the list looks like one sequence.
@pytest.mark.parametrize("lines, flagged", [
    ([["VRd"], ["ASCT"], ["lenalidomide"]], [2, 3]),
    ([["Dara-VRd"], ["Mel200", "auto-SCT"], ["Revlimid maintenance"]], [2, 3]),
    ([["VRd"], ["Revlimid maintenance"]], [2]),
    ([["VRd"], ["DPd"]], []), ([["VRd"], ["pomalidomide"]], []), ([["ASCT"], ["VRd"]], []),
    ([["Rd"], ["Vd"]], []),
    # a line holding more than maintenance agents: a name no table holds, a procedure
    ([["VRd"], ["lenalidomide", "mystery-mab"]], []), ([["VRd"], ["lenalidomide", "ASCT"]], []),
])
@BOTH
def test_a_sequence_split_into_lines_is_counted_as_written_with_an_advisory(lines, flagged, service):
    result = decide(case(prior_lines=lines, date_of_service=service))
    assert status(result, "3") == "met"   # two or more lines, as the request lists them
    notes = [a for a in result.advisories if "one planned sequence" in a]
    assert [int(a.split()[2]) for a in notes] == flagged
    assert all("IMWG" in a and "counted as the request lists them" in a for a in notes)


# reading 20: a likely unit slip decides nothing: the criteria reading it are unknown,
# `missing` asks to confirm it, one advisory names the value and its likely unit (and, for
# issue #30, no second advisory contradicts it).
@pytest.mark.parametrize("field, value, unit, criterion_2024, criterion_2025", [
    ("lvef_percent", Decimal("0.55"), "fraction", "5e", None),
    ("lvef_percent", Decimal("1"), "fraction", "5e", None),
    ("dose_million_car_t_cells", Decimal("0.45"), "billions", "9", "dose"),
    ("dose_million_car_t_cells", 450000000, "count of cells", "9", "dose"),
    # kb/core.lp's words: "a dose of a million or more x 10^6", "above 250 mL/min"
    ("dose_million_car_t_cells", 1000000, "count of cells", "9", "dose"),
    ("creatinine_clearance_ml_min", 300, "another measure or unit", "5d", None),
    ("creatinine_clearance_ml_min", Decimal("250.01"), "another measure or unit", "5d", None),
])
def test_a_doubtful_value_decides_nothing_and_gets_one_advisory(field, value, unit, criterion_2024, criterion_2025):
    for service, criterion in ((IN_2024, criterion_2024), (IN_2025, criterion_2025)):
        result = decide(case(**{field: value}, date_of_service=service))
        [advisory] = result.advisories
        assert advisory.startswith(f"{field} = {value}:") and unit in advisory and "confirm" in advisory
        if criterion:
            assert status(result, criterion) == "unknown" and result.decision == "pending"
            # the criterion's reason is the doubted value itself
            [because] = [c.because for c in result.criteria if c.id == criterion]
            assert any(b.startswith(f"{field} = {value}") and "doubted" in b for b in because)
            assert result.missing == [field]
            assert any("confirmation" in d.words for d in result.documentation)
        else:   # 2025-11-01: no criterion reads it (Policy Guidelines), so the decision stays
            assert result.decision == "covered" and result.missing == []


def test_a_doubtful_lvef_does_not_hide_recent_cardiac_disease():
    result = decide(case(lvef_percent=Decimal("0.55"), significant_cardiac_disease_dates=[IN_2024],
                         date_of_service=IN_2024))
    assert status(result, "5e") == "not_met" and result.decision == "not_covered"


@pytest.mark.parametrize("field, value", [
    ("lvef_percent", Decimal("1.01")), ("lvef_percent", 45), ("dose_million_car_t_cells", 1),
    ("dose_million_car_t_cells", Decimal("999999.99")), ("creatinine_clearance_ml_min", 250),
])
def test_a_value_inside_the_plausibility_bounds_is_not_doubted(field, value):
    result = decide(case(**{field: value}, date_of_service=IN_2024))
    assert not any("confirm" in a for a in result.advisories)
    assert field not in result.missing
