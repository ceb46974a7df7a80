"""Properties of the knowledge base over the whole case space (docs/reading.md).

Each test states one property; the strategies live in strategies.py.
"""

from __future__ import annotations

import copy
import random
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import assume, given, note, strategies as st

from cases import V2024, V2025, decide, decide_all, statuses
from strategies import (CD38, CREATININE, DOSE, IMID, LVEF, LYMPHODEPLETING, OTHER, PI, PRODUCTS,
                        REGIMENS, SAME, TRIALS, UNRECOGNISED, cases, eligible, service_dates,
                        six_months_back, spelled, written)

FIRST, SECOND = date(2024, 8, 21), date(2025, 11, 1)


def _plain(data: dict) -> dict:
    # no plan exclusion, so the date alone selects the version
    data = copy.deepcopy(data)
    data["plan"] = {k: v for k, v in data.get("plan", {}).items()
                    if k == "primary_coverage_criteria"}
    return data


@given(cases())
def test_version_selection_is_exactly_the_effective_dates(data):
    data = _plain(data)
    when = date.fromisoformat(data["date_of_service"])
    expected = None if when < FIRST else V2024 if when < SECOND else V2025
    result = decide(data)
    assert result.version == expected
    if expected is None:
        assert (result.decision, result.label) == ("not_applicable", "criteria_not_on_file")


@given(cases())
def test_plan_exclusions_precede_everything(data):
    plan = data.get("plan", {})
    result = decide(data)
    if plan.get("walmart_associates_plan"):
        assert result.label == "plan_excluded"
    elif plan.get("group_specific_policy"):
        assert result.label == "group_policy_supersedes"
    else:
        assert result.label not in ("plan_excluded", "group_policy_supersedes")


# -- the versions differ only where the policy differs (reading 11, 14, 16, 17, 18) -------------------

def _carries_a_difference(data: dict) -> list[str]:
    """Which of the differences between the versions this case carries."""
    when = date.fromisoformat(data["date_of_service"])
    found = []
    if data.get("prior_allogeneic_transplant") is not False:
        found.append("5b allogeneic transplant (2024-08-21 only)")
    crcl = data.get("creatinine_clearance_ml_min")
    if crcl is None or crcl <= 45:
        found.append("5d creatinine clearance")
    lvef = data.get("lvef_percent")
    if lvef is None or lvef < 45:
        found.append("5e LVEF")
    cardiac = data.get("significant_cardiac_disease_dates")
    if cardiac is None or any(date.fromisoformat(d) >= six_months_back(when) for d in cardiac):
        found.append("5e cardiac disease")
    infections = data.get("infections") or {}
    if any(infections.get(k) is not False for k in ("hepatitis_b", "hepatitis_c", "hiv", "uncontrolled")):
        found.append("5f infection")
    names = [" ".join(n.casefold().split()) for n in
             (data.get("prior_cell_therapies") or []) + (data.get("clinical_trials") or [])
             + [a for line in data.get("prior_lines") or [] for a in line]]
    cilta = ("cilta-cel", "carvykti", "ciltacabtagene autoleucel") + tuple(
        t.casefold() for t, product in TRIALS.items() if product == "cilta-cel")
    if any(n in cilta for n in names):
        found.append("cilta-cel (5g, 8, 4)")
    return found


@given(cases())
def test_versions_decide_differently_only_on_a_policy_difference(data):
    old, new = decide(data, V2024), decide(data, V2025)
    if old.decision != new.decision:
        note(f"{old.decision} under 2024-08-21, {new.decision} under 2025-11-01")
        assert _carries_a_difference(data)


def _failing(kind: str, draw) -> dict:
    when = draw(service_dates(date(2025, 1, 1), date(2027, 12, 31)))
    data = eligible(when)
    if kind == "allo":
        data["prior_allogeneic_transplant"] = True
    elif kind == "crcl":
        data["creatinine_clearance_ml_min"] = draw(CREATININE.filter(lambda v: v <= 45))
    elif kind == "lvef":
        data["lvef_percent"] = draw(LVEF.filter(lambda v: v < 45))
    elif kind == "cardiac":
        edge = six_months_back(when)
        days = (when - edge).days
        data["significant_cardiac_disease_dates"] = [(edge + timedelta(days=draw(st.integers(0, days)))).isoformat()]
    elif kind == "infection":
        key = draw(st.sampled_from(["hepatitis_b", "hepatitis_c", "hiv", "uncontrolled"]))
        data["infections"] = {**data["infections"], key: True}
    elif kind == "cilta_trial":
        data["clinical_trials"] = [draw(spelled(["cilta-cel", "Carvykti", "ciltacabtagene autoleucel"]))]
    elif kind == "cilta_prior":
        data["prior_cell_therapies"] = [draw(spelled(["cilta-cel", "Carvykti"]))]
    elif kind == "undocumented_2024_only":
        key = draw(st.sampled_from(["prior_allogeneic_transplant", "creatinine_clearance_ml_min",
                                    "lvef_percent", "significant_cardiac_disease_dates", "infections"]))
        del data[key]
    return data


# The decision each difference predicts under (2024-08-21, 2025-11-01).
PREDICTED = {
    "allo": ("not_covered", "covered"),
    "crcl": ("not_covered", "covered"),
    "lvef": ("not_covered", "covered"),
    "cardiac": ("not_covered", "covered"),
    "infection": ("not_covered", "covered"),
    "cilta_trial": ("not_covered", "covered"),
    "cilta_prior": ("not_covered", "not_covered"),   # any prior cell therapy fails 4 in both
    "undocumented_2024_only": ("pending", "covered"),
}


@given(st.sampled_from(sorted(PREDICTED)), st.data())
def test_each_difference_alone_gives_its_predicted_pair_of_decisions(kind, data):
    case = _failing(kind, data.draw)
    assert (decide(case, V2024).decision, decide(case, V2025).decision) == PREDICTED[kind]


# -- monotonicity -----------------------------------------------------------------------

WORSE = {
    "prescriber": lambda d: d.update(prescriber={**(d.get("prescriber") or {}), "specialist": False}),
    "center": lambda d: d.update(prescriber={**(d.get("prescriber") or {}), "approved_car_t_center": False}),
    "cns": lambda d: d.update(diagnosis={**(d.get("diagnosis") or {}), "cns_involvement": True}),
    "organ": lambda d: d.update(organ_function_adequate=False),
    "allo": lambda d: d.update(prior_allogeneic_transplant=True),
    "anti_cancer": lambda d: d.update(concurrent_therapies=(d.get("concurrent_therapies") or [])
                                      + [{"agent": "daratumumab", "purpose": "anti_cancer"}]),
    "prior_product": lambda d: d.update(prior_cell_therapies=(d.get("prior_cell_therapies") or []) + ["Kymriah"]),
    "crcl_down": lambda d: d.update(creatinine_clearance_ml_min=min(d.get("creatinine_clearance_ml_min") or Decimal(45), Decimal(45)) - Decimal("0.01") if (d.get("creatinine_clearance_ml_min") or 1) > 0 else Decimal(0)),
    "lvef_down": lambda d: d.update(lvef_percent=max(Decimal(0), (d.get("lvef_percent") or Decimal(45)) - 1)),
    "infection": lambda d: d.update(infections={**(d.get("infections") or {}), "hiv": True}),
    "drop_line": lambda d: d.update(prior_lines=_drop_last_line(d.get("prior_lines") or [])),
}


def _folded(name: str) -> str:
    return " ".join(name.casefold().split())


def _drop_last_line(lines: list) -> list:
    # a CAR-T product in a line is a prior cell therapy: dropping it would make the case better
    kept = [a for a in (lines[-1] if lines else []) if _folded(a) in {_folded(p) for p in PRODUCTS}]
    return lines[:-1] + ([kept] if kept else [])


@given(cases(), st.sampled_from(sorted(WORSE)))
def test_making_one_fact_worse_never_turns_not_covered_into_covered(data, worse):
    before = decide(data).decision
    worsened = copy.deepcopy(data)
    WORSE[worse](worsened)
    after = decide(worsened).decision
    assert not (before == "not_covered" and after == "covered")
    assert not (before != "covered" and after == "covered")


DOCUMENTABLE = {
    "member": {"age": 60}, "prescriber": {"specialist": True, "approved_car_t_center": True},
    "diagnosis": {"multiple_myeloma": True, "relapsed": True, "refractory": True, "cns_involvement": False},
    "prior_lines": [["VRd"], ["DPd"]], "prior_cell_therapies": [], "clinical_trials": [],
    "concurrent_therapies": [], "prior_allogeneic_transplant": False,
    "creatinine_clearance_ml_min": Decimal(80), "lvef_percent": Decimal(60),
    "significant_cardiac_disease_dates": [],
    "infections": {"hepatitis_b": False, "hepatitis_c": False, "hiv": False, "uncontrolled": False},
    "organ_function_adequate": True, "dose_million_car_t_cells": Decimal(400),
}


@given(cases(), st.sampled_from(sorted(DOCUMENTABLE)), st.data())
def test_documenting_a_missing_field_never_rescues_not_covered(data, key, more):
    before = decide(data)
    assume(before.decision == "not_covered")
    documented = copy.deepcopy(data)
    value = DOCUMENTABLE[key]
    if isinstance(value, dict):
        current = documented.get(key) or {}
        documented[key] = {k: current.get(k) if current.get(k) is not None else v for k, v in value.items()}
    elif documented.get(key) is None:
        documented[key] = value
    after = decide(documented)
    assert after.decision == "not_covered"


# -- the decision follows from the statuses (reading 30) ---------------------------------

@given(cases())
def test_decision_and_label_follow_from_the_statuses(data):
    result = decide(data)
    assume(result.decision != "not_applicable")
    seen = statuses(result)
    compendium = data.get("compendium") or {}
    pathway = compendium.get("fda_approved_indication") is True or compendium.get("nccn_category") in ("1", "2A")
    refused = "investigational" if (data.get("plan") or {}).get("primary_coverage_criteria") is False \
        else "does_not_meet_primary_coverage_criteria"
    # Kleene's three-valued logic: True, False, None for undecided
    def met(ident):
        return {"met": True, "not_met": False}.get(seen[ident])

    def conj(*values):
        return False if False in values else None if None in values else True

    def disj(*values):
        return True if True in values else None if None in values else False

    every = conj(*(met(i) for i in seen))
    two_not_met = None if met("2") is None else not met("2")
    covered = disj(every, conj(pathway, two_not_met, met("specialist"), met("center")))
    expected = {True: ("covered", "meets_primary_coverage_criteria" if every else "covered_by_compendium"),
                False: ("not_covered", refused),
                None: ("pending", "documentation_required")}[covered]
    assert (result.decision, result.label) == expected


# Fields each criterion reads (reading 2, 8, §4), written independently of kb/.
READS = {
    "specialist": ["prescriber.specialist"], "center": ["prescriber.approved_car_t_center"],
    "1": ["member.birth_date", "member.age"],
    "2": ["diagnosis.multiple_myeloma", "diagnosis.relapsed", "diagnosis.refractory"],
    "3": ["prior_lines"], "3a": ["prior_lines"], "3b": ["prior_lines"], "3c": ["prior_lines"],
    "4": ["prior_cell_therapies", "clinical_trials"], "5a": ["concurrent_therapies"],
    "5b@2024-08-21": ["prior_allogeneic_transplant"], "5b@2025-11-01": ["prior_cell_therapies"],
    "5c": ["prior_cell_therapies"], "5d": ["creatinine_clearance_ml_min"],
    "5e": ["lvef_percent", "significant_cardiac_disease_dates"],
    "5f": ["infections.hepatitis_b", "infections.hepatitis_c", "infections.hiv", "infections.uncontrolled"],
    "5g": ["prior_cell_therapies"], "6": ["organ_function_adequate"],
    "7": ["diagnosis.cns_involvement"], "8": ["prior_cell_therapies"],
    "9": ["dose_million_car_t_cells"], "dose": ["dose_million_car_t_cells"],
}


def _documented(data: dict, path: str) -> bool:
    node = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node is not None


@given(cases())
def test_missing_names_exactly_the_undocumented_fields_behind_unknown_criteria(data):
    result = decide(data)
    expected = set()
    for ident, status in statuses(result).items():
        if status != "unknown":
            continue
        fields = [f for f in READS.get(f"{ident}@{result.version}", READS.get(ident, []))
                  if not _documented(data, f)]
        if ident == "2":   # an "any of": a documented true relapsed/refractory settles its half
            diagnosis = data.get("diagnosis") or {}
            if diagnosis.get("relapsed") is True or diagnosis.get("refractory") is True:
                fields = [f for f in fields if f not in ("diagnosis.relapsed", "diagnosis.refractory")]
        # an unrecognised name leaves 3a-3c, 4 (a trial) or 5a (lymphodepletion) open
        assert fields or ident in ("3a", "3b", "3c", "4", "5a"), f"{ident} unknown with nothing missing"
        expected.update(fields)
    assert set(result.missing) == expected
    assert result.missing == sorted(result.missing)


# -- invariance -------------------------------------------------------------------------

def _respelled(data: dict, rng: random.Random) -> dict:
    def respell(name: str) -> str:
        name = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)
        return "  " + name.replace(" ", "   ") + " "
    data = copy.deepcopy(data)
    if data.get("prior_lines"):
        lines = [[respell(a) for a in line] for line in data["prior_lines"]]
        for line in lines:
            rng.shuffle(line)
        rng.shuffle(lines)
        data["prior_lines"] = lines
    for key in ("prior_cell_therapies", "clinical_trials", "significant_cardiac_disease_dates"):
        if data.get(key):
            items = [respell(x) if key != "significant_cardiac_disease_dates" else x for x in data[key]]
            rng.shuffle(items)
            data[key] = items
    if data.get("concurrent_therapies"):
        items = [{**t, "agent": respell(t["agent"])} for t in data["concurrent_therapies"]]
        rng.shuffle(items)
        data["concurrent_therapies"] = items
    data["case_id"] = 'other "id" \\ %' + str(rng.random())
    return data


def _decided(result):
    return (result.version, result.decision, result.label, statuses(result), result.missing)


@given(cases(), st.randoms(use_true_random=False))
def test_order_letter_case_white_space_and_case_id_never_change_the_decision(data, rng):
    assert _decided(decide(_respelled(data, rng))) == _decided(decide(data))


@given(st.lists(cases(), min_size=1, max_size=8))
def test_check_equals_batch_and_runs_repeat_exactly(items):
    together = decide_all(items)
    alone = [decide(d) for d in items]
    assert together == alone
    assert decide_all(items) == together


# -- names as reviewers write them (reading 21–29, §4.5, §4.6, §4.13) ------------------------

PRIOR_CELL = {"2024-08-21": ("4", "5b", "5c", "5g", "8"), "2025-11-01": ("4", "5b", "8")}


@given(cases(), st.sampled_from(PRODUCTS), st.data())
def test_a_car_t_product_in_a_prior_line_counts_as_in_prior_cell_therapies(data, product, more):
    data = {**data, "prior_cell_therapies": data.get("prior_cell_therapies") or []}
    lines = copy.deepcopy(data.get("prior_lines") or [])
    at = more.draw(st.integers(0, len(lines)))
    in_line = copy.deepcopy(data)
    in_line["prior_lines"] = lines[:at] + [lines[at] + [product] if at < len(lines) else [product]] + lines[at + 1:]
    in_list = copy.deepcopy(in_line)
    in_list["prior_lines"] = lines[:at] + [lines[at] if at < len(lines) else ["dexamethasone"]] + lines[at + 1:]
    in_list["prior_cell_therapies"] = in_list["prior_cell_therapies"] + [product]
    one, other = decide(in_line), decide(in_list)
    assume(one.version is not None)
    ids = PRIOR_CELL[one.version]
    assert {i: statuses(one)[i] for i in ids} == {i: statuses(other)[i] for i in ids}
    assert statuses(one)["4"] == "not_met"
    assert any(a.startswith(f"prior_lines line {at + 1}: ") and "prior cell therapy" in a for a in one.advisories)


@given(cases(), st.sampled_from(sorted(TRIALS)))
def test_a_trial_name_reads_as_a_trial_of_its_product(data, trial):
    by_trial = decide({**data, "clinical_trials": [trial]})
    by_product = decide({**data, "clinical_trials": [TRIALS[trial]]})
    assert _decided(by_trial) == _decided(by_product)


@given(cases(), st.sampled_from(UNRECOGNISED))
def test_an_unrecognised_trial_entry_never_meets_4(data, name):
    result = decide({**data, "clinical_trials": (data.get("clinical_trials") or []) + [name]})
    assume(result.version is not None)
    assert statuses(result)["4"] in ("unknown", "not_met")


@given(cases(), st.sampled_from(LYMPHODEPLETING))
def test_lymphodepleting_chemotherapy_for_lymphodepletion_changes_nothing(data, agent):
    assume(data.get("concurrent_therapies") is not None)
    more = {**data, "concurrent_therapies": data["concurrent_therapies"] + [
        {"agent": agent, "purpose": "lymphodepletion"}]}
    assert _decided(decide(more)) == _decided(decide(data))


MYELOMA = IMID + PI + CD38 + [a for a in OTHER if a not in ("dexamethasone", "prednisone")] + REGIMENS


@given(cases(), st.sampled_from(MYELOMA + PRODUCTS[:1]), st.sampled_from(["lymphodepletion", "supportive"]))
def test_an_agent_no_exemption_covers_fails_5a_naming_agent_and_purpose(data, agent, purpose):
    assume(purpose == "lymphodepletion" or agent not in PRODUCTS)
    assume(not (purpose == "lymphodepletion" and agent in ("cyclophosphamide", "bendamustine")))
    more = {**data, "concurrent_therapies": (data.get("concurrent_therapies") or []) + [
        {"agent": agent, "purpose": purpose}]}
    result = decide(more)
    assume(result.version is not None)
    five_a = next(c for c in result.criteria if c.id == "5a")
    assert five_a.status == "not_met"
    said = "for lymphodepletion" if purpose == "lymphodepletion" else "as supportive care"
    # the name as the case first spells it, wherever that is
    assert any(_folded(b).startswith(f"concurrent_therapies: '") and f"is given {said}" in b
               and _folded(agent) in _folded(b) for b in five_a.because)


@given(cases(), st.sampled_from(UNRECOGNISED))
def test_an_unrecognised_agent_for_lymphodepletion_never_meets_5a(data, agent):
    more = {**data, "concurrent_therapies": (data.get("concurrent_therapies") or []) + [
        {"agent": agent, "purpose": "lymphodepletion"}]}
    result = decide(more)
    assume(result.version is not None)
    assert statuses(result)["5a"] in ("unknown", "not_met")


@given(cases(), st.data())
def test_marks_broken_abbreviations_and_paired_names_never_change_the_decision(data, more):
    same = {_folded(a): b for pair in SAME for a, b in (pair, pair[::-1])}
    regimens = {_folded(r) for r in REGIMENS} | {_folded(r) for pair in SAME for r in pair if r[1:2].isupper()}

    def respell(name: str) -> str:
        return more.draw(written(name.strip(), same.get(_folded(name)),
                                 regimen=_folded(name) in regimens))
    data = copy.deepcopy(data)
    before = decide(data)
    if data.get("prior_lines"):
        data["prior_lines"] = [[respell(a) for a in line] for line in data["prior_lines"]]
    for key in ("prior_cell_therapies", "clinical_trials"):
        if data.get(key):
            data[key] = [respell(x) for x in data[key]]
    if data.get("concurrent_therapies"):
        data["concurrent_therapies"] = [{**t, "agent": respell(t["agent"])} for t in data["concurrent_therapies"]]
    assert _decided(decide(data)) == _decided(before)


# up to 37 places: 510 has 3 integer digits, and reading 4 allows 40 significant digits in all
@given(st.sampled_from([45, 300, 510]), st.integers(10, 37), st.booleans())
def test_a_number_compares_exactly_at_any_number_of_decimal_places(point, places, up):
    # reading 4 and §4.7, §4.10: 45 fails 5d, above it passes; 300 to 510 inclusive
    value = Decimal(f"{point}.{'0' * (places - 1)}1" if up else f"{point - 1}.{'9' * places}")
    crcl = decide({**eligible(date(2025, 3, 15)), "creatinine_clearance_ml_min": value})
    dose = decide({**eligible(date(2025, 11, 12)), "dose_million_car_t_cells": value})
    if point == 45:
        assert statuses(crcl)["5d"] == ("met" if up else "not_met")
    else:
        inside = (point == 300) == up
        assert statuses(dose)["dose"] == ("met" if inside else "not_met")
