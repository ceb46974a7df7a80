"""Every threshold of the policy at, just under and just over its boundary.

Expected statuses come from the policy's words and reading 16, 17, §4.10, §4.11.
"""

import pytest

from cases import DROP, IN_2024, IN_2025, V2024, V2025, case, dec, decide, status


# "1. Individual is 18 years of age or older" — whole years on the date of service (reading 10).
@pytest.mark.parametrize("birth, service, expected", [
    ("2007-11-12", "2025-11-12", "met"),       # 18th birthday on the date of service
    ("2007-11-13", "2025-11-12", "not_met"),   # one day short of 18
    ("2007-11-11", "2025-11-12", "met"),
    ("2008-02-29", "2026-02-28", "not_met"),   # 29 February birthday: not yet 18 on 28 Feb of a common year
    ("2008-02-29", "2026-03-01", "met"),       # reached on 1 March in common years
    ("2008-02-29", "2028-02-29", "met"),       # leap year: reached on 29 February itself (age 20)
    ("2007-02-28", "2025-02-28", "met"),
])
def test_age_18_in_whole_years_on_the_date_of_service(birth, service, expected):
    result = decide(case(member={"birth_date": birth}, date_of_service=service))
    assert status(result, "1") == expected


@pytest.mark.parametrize("age, expected", [(17, "not_met"), (18, "met"), (19, "met")])
@pytest.mark.parametrize("service", [IN_2024, IN_2025])
def test_member_age_is_used_when_birth_date_is_absent(age, expected, service):
    result = decide(case(member={"age": age}, date_of_service=service))
    assert status(result, "1") == expected


def test_birth_date_wins_over_member_age():
    result = decide(case(member={"birth_date": "2010-01-01", "age": 40}))
    assert status(result, "1") == "not_met"


# "d. Creatinine clearance less than or equal to 45 mL/min" (2024-08-21): 45 fails, 45.01 passes.
@pytest.mark.parametrize("value, expected", [
    ("44.99", "not_met"), (45, "not_met"), ("45.00", "not_met"), ("45.01", "met"),
    ("45.000000001", "met"), (44, "not_met"), (46, "met"), (0, "not_met"),
])
def test_creatinine_clearance_of_45_or_less_fails_5d_under_2024_08_21(value, expected):
    result = decide(case(creatinine_clearance_ml_min=dec(str(value)), date_of_service=IN_2024))
    assert status(result, "5d") == expected
    assert result.decision == ("covered" if expected == "met" else "not_covered")


# "e. Left cardiac ejection fraction (EF) less than 45%" (2024-08-21): 44.99 fails, 45 passes.
@pytest.mark.parametrize("value, expected", [
    ("44.99", "not_met"), (44, "not_met"), (45, "met"), ("45.01", "met"), (46, "met"),
    ("44.999999999", "not_met"),
])
def test_lvef_below_45_fails_5e_under_2024_08_21(value, expected):
    result = decide(case(lvef_percent=dec(str(value)), date_of_service=IN_2024))
    assert status(result, "5e") == expected


# "other clinically significant cardiac disease within in the past 6 months": on or after
# the date of service moved back 6 calendar months, day clamped to month end (reading 17).
@pytest.mark.parametrize("service, cardiac, expected", [
    ("2025-08-31", "2025-02-28", "not_met"),   # 31 Aug less 6 months is 28 Feb (clamped)
    ("2025-08-31", "2025-02-27", "met"),
    ("2025-08-31", "2025-03-01", "not_met"),
    ("2025-09-15", "2025-03-15", "not_met"),   # exactly 6 months back is within
    ("2025-09-15", "2025-03-14", "met"),       # one day earlier is outside
    ("2025-09-15", "2025-09-15", "not_met"),   # documented on the date of service: ongoing
    ("2025-03-15", "2024-09-15", "not_met"),   # the window crosses the year
    ("2025-03-15", "2024-09-14", "met"),
    ("2025-03-31", "2024-09-30", "not_met"),   # 31 Mar less 6 months is 30 Sep
    ("2025-03-31", "2024-09-29", "met"),
    ("2024-08-31", "2024-02-29", "not_met"),   # leap year: 31 Aug 2024 less 6 months is 29 Feb
    ("2024-08-31", "2024-02-28", "met"),
])
def test_cardiac_disease_within_6_calendar_months_fails_5e(service, cardiac, expected):
    result = decide(case(date_of_service=service, significant_cardiac_disease_dates=[cardiac]),
                    version=V2024)
    assert status(result, "5e") == expected


# Dose 300 to 510 x 10^6 CAR-positive T cells, inclusive (reading 19).
@pytest.mark.parametrize("value, expected", [
    ("299.99", "not_met"), (299, "not_met"), (300, "met"), ("300.01", "met"),
    ("509.99", "met"), (510, "met"), ("510.00", "met"), ("510.01", "not_met"), (511, "not_met"),
    ("510.000000001", "not_met"),
])
@pytest.mark.parametrize("service, criterion", [(IN_2024, "9"), (IN_2025, "dose")])
def test_dose_300_to_510_inclusive(value, expected, service, criterion):
    result = decide(case(dose_million_car_t_cells=dec(str(value)), date_of_service=service))
    assert status(result, criterion) == expected


def test_a_two_decimal_json_number_reaches_the_threshold_exactly():
    from covkb.api import check
    from covkb.input.text import from_json

    text = ('{"case_id": "x", "date_of_service": "%s", "creatinine_clearance_ml_min": 45.01}'
            % IN_2024)
    assert status(check(from_json(text)), "5d") == "met"
    text = text.replace("45.01", "45.0")
    assert status(check(from_json(text)), "5d") == "not_met"


# 2025-11-01: creatinine clearance, LVEF, cardiac disease and infections are Policy
# Guidelines — never a criterion, an advisory when outside them (reading 18).
@pytest.mark.parametrize("changes, field", [
    ({"creatinine_clearance_ml_min": 45}, "creatinine_clearance_ml_min"),
    ({"lvef_percent": dec("44.99")}, "lvef_percent"),
    ({"significant_cardiac_disease_dates": ["2025-06-01"]}, "significant_cardiac_disease_dates"),
    ({"infections": {"hepatitis_b": True}}, "infections.hepatitis_b"),
    ({"infections": {"hiv": True}}, "infections.hiv"),
])
def test_policy_guidelines_give_advisories_not_decisions_under_2025_11_01(changes, field):
    result = decide(case(**changes, date_of_service=IN_2025))
    assert result.decision == "covered"
    assert any(a.startswith(field) for a in result.advisories), result.advisories
    assert decide(case(**changes, date_of_service=IN_2025), V2024).decision == "not_covered"


@pytest.mark.parametrize("changes", [
    {"creatinine_clearance_ml_min": dec("45.01")},
    {"lvef_percent": 45},
    {"significant_cardiac_disease_dates": ["2025-05-11"]},  # 12 Nov less 6 months is 12 May
])
def test_values_inside_the_guidelines_give_no_advisory_under_2025_11_01(changes):
    result = decide(case(**changes, date_of_service=IN_2025))
    assert result.advisories == []


def test_guideline_fields_undocumented_leave_2025_11_01_decided():
    result = decide(case(creatinine_clearance_ml_min=DROP, lvef_percent=DROP,
                         significant_cardiac_disease_dates=DROP, infections=DROP,
                         prior_allogeneic_transplant=DROP))
    assert (result.decision, result.missing) == ("covered", [])


# The calendar behind "the past 6 months": leap years by the Gregorian rule, and every
# month length (reading 17), applied with --policy-version so that any year can be tried.
@pytest.mark.parametrize("service, first_day_inside", [
    ("2000-08-31", "2000-02-29"),   # divisible by 400: leap
    ("2100-08-31", "2100-02-28"),   # divisible by 100 only: common
    ("2028-08-30", "2028-02-29"),   # divisible by 4: leap
    ("2025-07-31", "2025-01-31"),   # 31-day month
    ("2025-10-31", "2025-04-30"),   # 30-day month
    ("2025-12-31", "2025-06-30"),
    ("2026-05-31", "2025-11-30"),
    ("2026-01-31", "2025-07-31"),
    ("2025-06-30", "2024-12-30"),
    ("2025-04-30", "2024-10-30"),   # back into October
    ("2025-02-28", "2024-08-28"),
    ("2025-01-31", "2024-07-31"),
    ("2025-11-30", "2025-05-30"),
    ("2025-12-01", "2025-06-01"),
    ("2026-03-31", "2025-09-30"),
    ("2026-09-30", "2026-03-30"),
    ("2026-08-15", "2026-02-15"),
    ("9999-12-31", "9999-06-30"),   # the last date there is
])
def test_six_calendar_months_back_on_every_kind_of_month(service, first_day_inside):
    from datetime import date, timedelta
    inside = decide(case(date_of_service=service, significant_cardiac_disease_dates=[first_day_inside]), V2024)
    before = (date.fromisoformat(first_day_inside) - timedelta(days=1)).isoformat()
    outside = decide(case(date_of_service=service, significant_cardiac_disease_dates=[before]), V2024)
    assert (status(inside, "5e"), status(outside, "5e")) == ("not_met", "met")


# reading 4: "a number is compared exactly with any number of decimal places
# (`45.0000000001` passes 5d)".
@pytest.mark.parametrize("value, expected", [
    ("45.0000000001", "met"),
    ("45.00000000000000000000000000001", "met"),          # 29 decimal places
    ("45." + "0" * 37 + "1", "met"),                      # 40 significant digits
    ("44.99999999999999999999999999999999999999", "not_met"),
    ("45.00000000000000000000000000000000000000", "not_met"),
])
def test_creatinine_clearance_compares_exactly_at_any_number_of_decimal_places(value, expected):
    result = decide(case(creatinine_clearance_ml_min=dec(value), date_of_service=IN_2024))
    assert status(result, "5d") == expected


@pytest.mark.parametrize("value, expected", [
    ("44.9999999999999999999999", "not_met"), ("45.0000000000000000000000", "met"),
])
def test_lvef_compares_exactly_at_any_number_of_decimal_places(value, expected):
    assert status(decide(case(lvef_percent=dec(value), date_of_service=IN_2024)), "5e") == expected


@pytest.mark.parametrize("value, expected", [
    ("299.99999999999999999999", "not_met"), ("510.00000000000000000001", "not_met"),
    ("300.00000000000000000000", "met"), ("509.99999999999999999999", "met"),
])
def test_dose_compares_exactly_at_any_number_of_decimal_places(value, expected):
    assert status(decide(case(dose_million_car_t_cells=dec(value))), "dose") == expected
