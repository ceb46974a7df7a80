"""Hypothesis strategies for valid cases, reused by every property.

Values crowd the policy's edges: each threshold exactly, ±0.01 and ±1; dates around both
effective dates, month ends and 29 February; drug names in every form and letter case.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import Context, Decimal, localcontext

from hypothesis import strategies as st

from cases import ELIGIBLE

EFFECTIVE = [date(2024, 8, 21), date(2025, 11, 1)]
ANCHORS = EFFECTIVE + [date(2025, 10, 31), date(2024, 8, 20), date(2025, 8, 31), date(2024, 8, 31),
                       date(2025, 3, 31), date(2026, 2, 28), date(2028, 2, 29), date(2025, 12, 31)]


@st.composite
def service_dates(draw, low=date(2024, 1, 1), high=date(2028, 12, 31)):
    if draw(st.booleans()):
        return draw(st.dates(low, high))
    return draw(st.sampled_from(ANCHORS)) + timedelta(days=draw(st.integers(-2, 2)))


def near(*thresholds: int, low: Decimal = Decimal(0), high: Decimal = Decimal(1000)):
    """Numbers exactly at, ±0.01, ±1 around each threshold, and anywhere in range."""
    with localcontext(Context(prec=80)):  # exact sums, never rounded to 28 digits
        edges = [Decimal(t) + Decimal(d) for t in thresholds
                 for d in ("0", "0.01", "-0.01", "1", "-1", "0.000000001", "-0.000000001",
                           "0.0000000001", "-0.0000000001", "0." + "0" * 35 + "1", "-0." + "0" * 35 + "1")]
    anywhere = st.decimals(low, high, places=2, allow_nan=False, allow_infinity=False)
    return st.one_of(st.sampled_from([e for e in edges if low <= e <= high]), anywhere,
                     long_decimals(thresholds, low, high))


@st.composite
def long_decimals(draw, thresholds, low: Decimal, high: Decimal):
    """A threshold plus or minus a fraction of 10 to 35 decimal places (reading 4)."""
    places = draw(st.integers(10, 35))
    step = Decimal(draw(st.integers(1, 10 ** 4))).scaleb(-places)
    with localcontext(Context(prec=80)):
        value = Decimal(draw(st.sampled_from(thresholds))) + (step if draw(st.booleans()) else -step)
    return min(max(value, low), high)


# Plausible values only: an LVEF of 1 or less, a dose under 1 and a creatinine clearance
# over 250 are doubted as unit slips and decide nothing (kb/core.lp plausible/5); those are
# tested on their own (tests/test_chart_names.py).
CREATININE = near(45, high=Decimal(200))
LVEF = near(45, low=Decimal("1.01"), high=Decimal(100))
DOSE = near(300, 510, low=Decimal(1), high=Decimal(900))

# The names of each class as a reviewer may write them (reading 21, 22).
IMID = ["thalidomide", "Thalomid", "lenalidomide", "Revlimid", "pomalidomide", "Pomalyst"]
PI = ["bortezomib", "Velcade", "carfilzomib", "Kyprolis", "ixazomib", "Ninlaro"]
CD38 = ["daratumumab", "Darzalex", "Darzalex Faspro", "daratumumab and hyaluronidase-fihj",
        "isatuximab", "isatuximab-irfc", "Sarclisa"]
OTHER = ["dexamethasone", "prednisone", "melphalan", "cyclophosphamide", "selinexor",
         "elotuzumab", "teclistamab", "venetoclax"]
REGIMENS = ["VRd", "KRd", "DRd", "IRd", "DVRd", "D-VRd", "DPd", "DKd", "DVd", "IsaPd", "IsaKd",
            "EPd", "ERd", "VTd", "VCd", "CyBorD", "PVd", "KPd", "SVd", "Kd", "Pd", "Rd", "Vd"]
AGENTS = IMID + PI + CD38 + OTHER + REGIMENS
PRODUCTS = ["Abecma", "ide-cel", "idecabtagene vicleucel", "Carvykti", "cilta-cel",
            "ciltacabtagene autoleucel", "Kymriah", "tisagenlecleucel", "Breyanzi"]
# reading 26: trial names of ide-cel and of cilta-cel, and names no table holds.
TRIALS = {"KarMMa": "ide-cel", "KarMMa-2": "ide-cel", "KarMMa-3": "ide-cel",
          "CARTITUDE-1": "cilta-cel", "CARTITUDE-2": "cilta-cel", "CARTITUDE-4": "cilta-cel",
          "CARTITUDE-5": "cilta-cel", "CARTITUDE-6": "cilta-cel"}
UNRECOGNISED = ["mystery-cel", "KarMMa-5", "Velcaid"]
# reading 15 and §4.6: the lymphodepleting chemotherapy agents, and agents given around the
# infusion that are none.
LYMPHODEPLETING = ["fludarabine", "cyclophosphamide", "bendamustine", "Treanda"]
SUPPORTIVE = ["tocilizumab", "dexamethasone", "prednisone"]
# Names of one thing, each X (Y) spelling of which names it too.
SAME = [("bortezomib", "Velcade"), ("lenalidomide", "Revlimid"), ("daratumumab", "Darzalex"),
        ("idecabtagene vicleucel", "Abecma"), ("ciltacabtagene autoleucel", "Carvykti"),
        ("VRd", "RVd"), ("DVRd", "Dara-VRd"), ("IsaPd", "Isa-Pd")]


@st.composite
def spelled(draw, names):
    """One of names in a random letter case, padded and with doubled inner spaces."""
    name = draw(st.sampled_from(names))
    name = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name) \
        if draw(st.booleans()) else name
    if draw(st.booleans()):
        name = " " + name.replace(" ", "  ") + "\t"
    return name


@st.composite
def written(draw, name: str, same: str | None = None, regimen: bool = False):
    """name as reviewers write it (reading 22, 23): ® or ™ after it; a regimen abbreviation broken
    by hyphens, spaces or `/`; or `X (Y)` with a name `same` of the same thing."""
    kind = draw(st.sampled_from(["mark", "broken", "paired"] if same else ["mark", "broken"]))
    if kind == "mark":
        return name + draw(st.sampled_from(["®", "™", " ®"]))
    if kind == "paired":
        pair = (name, same) if draw(st.booleans()) else (same, name)
        return f"{pair[0]} ({pair[1]})"
    if not regimen:
        return name  # only regimen abbreviations ignore hyphens, spaces and /
    breaks = [draw(st.sampled_from(["", "-", " ", "/"])) for _ in name]
    return "".join(c + b for c, b in zip(name, breaks)).rstrip("-/ ")


def maybe(strategy, absent_weight: int = 1):
    """A documented value or, sometimes, not documented (None)."""
    return st.one_of(*([st.none()] * absent_weight), strategy, strategy, strategy)


@st.composite
def cases(draw, documented: bool = False, service=None):
    """A valid case; documented=True fills every field the criteria read."""
    pick = (lambda s: draw(s)) if documented else (lambda s: draw(maybe(s)))
    when = service or draw(service_dates())
    data: dict = {"case_id": draw(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)),
                  "date_of_service": when.isoformat()}
    plan = {k: draw(st.sampled_from([None, False, True] if k == "primary_coverage_criteria"
                                    else [None, False, False, False, True]))
            for k in ("primary_coverage_criteria", "group_specific_policy", "walmart_associates_plan")}
    data["plan"] = {k: v for k, v in plan.items() if v is not None}
    if draw(st.booleans()):
        data["member"] = {"birth_date": pick(birth_dates(when))}
    else:
        data["member"] = {"age": pick(st.integers(0, 130) | st.sampled_from([17, 18, 19]))}
    data["prescriber"] = {"specialist": pick(likely_true()), "approved_car_t_center": pick(likely_true())}
    data["diagnosis"] = {"multiple_myeloma": pick(likely_true()), "relapsed": pick(st.booleans()),
                         "refractory": pick(st.booleans()), "cns_involvement": pick(likely_false())}
    # a CAR-T product now and then in a line (reading 29)
    line_names = st.one_of(*[spelled(AGENTS)] * 12, spelled(PRODUCTS), spelled(UNRECOGNISED))
    data["prior_lines"] = pick(st.lists(st.lists(line_names, min_size=1, max_size=4), max_size=5))
    data["prior_cell_therapies"] = pick(st.lists(spelled(PRODUCTS), max_size=2) | st.just([]))
    data["clinical_trials"] = pick(st.lists(spelled(PRODUCTS + OTHER + list(TRIALS) + UNRECOGNISED[:2]),
                                            max_size=2) | st.just([]))
    data["concurrent_therapies"] = pick(st.lists(st.fixed_dictionaries({
        "agent": spelled(AGENTS + LYMPHODEPLETING * 4 + SUPPORTIVE + PRODUCTS[:1] + UNRECOGNISED[:1]),
        "purpose": st.sampled_from(["lymphodepletion", "bridging", "supportive", "anti_cancer"])}),
        max_size=3))
    data["prior_allogeneic_transplant"] = pick(likely_false())
    data["creatinine_clearance_ml_min"] = pick(CREATININE)
    data["lvef_percent"] = pick(LVEF)
    data["significant_cardiac_disease_dates"] = pick(st.lists(cardiac_dates(when), max_size=2))
    data["infections"] = {k: pick(likely_false()) for k in ("hepatitis_b", "hepatitis_c", "hiv", "uncontrolled")}
    data["organ_function_adequate"] = pick(likely_true())
    data["dose_million_car_t_cells"] = pick(DOSE)
    if draw(st.integers(0, 5)) == 0:
        data["compendium"] = {"fda_approved_indication": draw(st.booleans()),
                              "nccn_category": draw(st.sampled_from([None, "1", "2A", "2B", "3"]))}
    return data


def likely_true():
    return st.sampled_from([True, True, True, False])


def likely_false():
    return st.sampled_from([False, False, False, True])


@st.composite
def birth_dates(draw, service: date):
    if draw(st.booleans()):
        # around the 18th birthday, 29 February included
        year = service.year - 18
        candidates = [service.replace(year=year) if not (service.month == 2 and service.day == 29
                                                        and not calendar.isleap(year))
                      else date(year, 2, 28)]
        candidates += [date(y, 2, 29) for y in range(year - 3, year + 1) if calendar.isleap(y)]
        day = draw(st.sampled_from(candidates)) + timedelta(days=draw(st.integers(-1, 1)))
        return min(day, service).isoformat()
    return draw(st.dates(date(1930, 1, 1), service)).isoformat()


def six_months_back(service: date) -> date:
    """reading 17, written independently of kb/: back 6 calendar months, day clamped."""
    month = service.month - 6
    year = service.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return date(year, month, min(service.day, calendar.monthrange(year, month)[1]))


@st.composite
def cardiac_dates(draw, service: date):
    edge = six_months_back(service)
    day = draw(st.one_of(st.just(edge), st.just(edge - timedelta(days=1)),
                         st.just(edge + timedelta(days=1)), st.just(service),
                         st.dates(date(2015, 1, 1), service)))
    return min(day, service).isoformat()


def eligible(service: date) -> dict:
    data = {k: v for k, v in ELIGIBLE.items()}
    data["date_of_service"] = service.isoformat()
    return data


@st.composite
def remedied_cases(draw):
    """Cases failing in ways a changed request or a later date of service could meet:
    an age under 18, recent or ongoing cardiac disease (LVEF sometimes undocumented), a
    dose off the label, no specialist or center, combination use, dates near a version's
    end (reading 32: remedy kinds)."""
    import copy

    when = draw(service_dates(low=date(2024, 8, 21), high=date(2026, 12, 31)))
    data = copy.deepcopy(eligible(when))
    if draw(st.booleans()):
        data["member"] = draw(st.sampled_from([{"birth_date": draw(birth_dates(when))}, {"age": 17}]))
    if draw(st.booleans()):
        data["significant_cardiac_disease_dates"] = draw(st.lists(cardiac_dates(when), min_size=1, max_size=2))
        data["lvef_percent"] = draw(maybe(LVEF))
    if draw(st.booleans()):
        data["dose_million_car_t_cells"] = draw(DOSE)
    data["prescriber"] = {"specialist": draw(likely_true()), "approved_car_t_center": draw(likely_true())}
    if draw(st.booleans()):
        data["concurrent_therapies"] = draw(st.lists(st.fixed_dictionaries({
            "agent": spelled(AGENTS + LYMPHODEPLETING * 2 + SUPPORTIVE + UNRECOGNISED[:1]),
            "purpose": st.sampled_from(["lymphodepletion", "bridging", "supportive", "anti_cancer"])}),
            max_size=3))
    return data
