"""covkb.engine.arith against clingo running kb/'s own arithmetic rules, on every boundary.

Each test grounds the knowledge base with facts for many probes (one case key each)
and compares every atom the rules derive with what covkb.engine.arith computes: the module
is only the evaluation of those rules, so clingo is the expected value.
"""

from __future__ import annotations

import datetime

import clingo
import pytest
from clingo import ast

from covkb.engine import arith
from covkb.engine import kb


def _derive(rows: list[tuple[str, list]]) -> set[clingo.Symbol]:
    control = clingo.Control(["--warn=none"])
    for path in kb.kb_files():
        control.load(str(path))
    with control.backend() as backend:
        for name, args in rows:
            backend.add_rule([backend.add_atom(clingo.Function(name, args))])
    control.ground([("base", [])])
    with control.solve(yield_=True) as handle:
        return set(next(iter(handle)).symbols(atoms=True))


def _atoms(symbols, name: str) -> dict[int, set[tuple]]:
    found: dict[int, set[tuple]] = {}
    for s in symbols:
        if s.name == name and s.arguments and s.arguments[0].type == clingo.SymbolType.Number:
            found.setdefault(s.arguments[0].number, set()).add(
                tuple(a.number if a.type == clingo.SymbolType.Number else
                      a.string if a.type == clingo.SymbolType.String else a.name for a in s.arguments[1:]))
    return found


N, S = clingo.Number, clingo.String


def _day(d: datetime.date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


def _days(start: datetime.date, count: int):
    return [start + datetime.timedelta(days=i) for i in range(count)]


def test_the_rules_the_module_evaluates_are_the_knowledge_base_rules():
    statements: list = []
    ast.parse_files([str(p) for p in kb.kb_files()], statements.append)
    rules = {str(s) for s in statements if s.ast_type == ast.ASTType.Rule}
    assert arith.RULES <= rules


def test_window_start_on_every_day_of_four_years_and_century_februaries():
    services = _days(datetime.date(2023, 1, 1), 4 * 366)
    services += _days(datetime.date(1900, 7, 25), 40) + _days(datetime.date(2000, 7, 25), 40)
    services += _days(datetime.date(2100, 7, 25), 40) + _days(datetime.date(1, 1, 1), 10)
    rows = []
    for key, d in enumerate(services):
        rows += [("case", [N(key)]), ("date_of_service", [N(key), N(_day(d))])]
    derived = _atoms(_derive(rows), "window_start")
    months = {m for found in derived.values() for m, _ in found}
    assert months == {6}  # the windows kb/ declares (months_back/1)
    for key, d in enumerate(services):
        expected = derived.get(key, set())
        got = {(m, arith.window_start(_day(d), m)) for m in months}
        got = {(m, w) for m, w in got if w is not None}
        assert got == expected, d


@pytest.mark.parametrize("months", [1, 6, 12, 13])
def test_window_start_for_other_windows_matches_the_rules(months):
    # the same rules with another months_back fact: the module is not fitted to 6
    services = _days(datetime.date(2023, 12, 20), 80) + _days(datetime.date(2024, 2, 20), 20)
    control = clingo.Control(["--warn=none"])
    statements: list = []
    ast.parse_files([str(p) for p in kb.kb_files()], statements.append)
    with ast.ProgramBuilder(control) as builder:
        for s in statements:
            if s.ast_type == ast.ASTType.Rule and str(s) in arith.RULES:
                builder.add(s)
    with control.backend() as backend:
        backend.add_rule([backend.add_atom(clingo.Function("months_back", [N(months)]))])
        for key, d in enumerate(services):
            backend.add_rule([backend.add_atom(clingo.Function("date_of_service", [N(key), N(_day(d))]))])
    control.ground([("base", [])])
    with control.solve(yield_=True) as handle:
        derived = _atoms(next(iter(handle)).symbols(atoms=True), "window_start")
    for key, d in enumerate(services):
        assert derived.get(key, set()) == {(months, arith.window_start(_day(d), months))}, d


def test_age_around_birthdays_leap_days_and_member_age():
    probes = []
    for birth in (datetime.date(2008, 2, 29), datetime.date(2007, 11, 12), datetime.date(2000, 1, 1),
                  datetime.date(2007, 12, 31)):
        for years in (0, 17, 18, 19):
            for delta in (-1, 0, 1):
                try:
                    anniversary = birth.replace(year=birth.year + years)
                except ValueError:
                    anniversary = datetime.date(birth.year + years, 3, 1)
                probes.append((_day(anniversary + datetime.timedelta(days=delta)), _day(birth), None))
    probes.append((20250101, 20250102, None))  # born after the date of service
    probes.append((20250101, 20260101, None))
    for value in ((17, "whole"), (18, "whole"), (18, "fraction"), (17, "fraction"), (0, "whole"),
                  (-1, "fraction"), (120, "whole")):
        probes.append((20250101, None, value))
        probes.append((20250101, 20000101, value))  # the birth date wins
    rows = []
    for key, (service, birth, value) in enumerate(probes):
        rows += [("case", [N(key)]), ("date_of_service", [N(key), N(service)])]
        if birth is not None:
            rows.append(("date", [N(key), S("member.birth_date"), N(birth)]))
        if value is not None:
            rows.append(("number", [N(key), S("member.age"), N(value[0]), clingo.Function(value[1])]))
    symbols = _derive(rows)
    derived = _atoms(symbols, "age")
    numbers = _atoms(symbols, "number")
    for key, (service, birth, value) in enumerate(probes):
        got = arith.age(service, birth, value)
        assert derived.get(key, set()) == (set() if got is None else {(got,)}), (service, birth, value)
        ages = {row for row in numbers.get(key, set()) if row[0] == "age"}
        assert ages == (set() if got is None else {("age", got, "whole")})


def test_threshold_places_at_under_and_over_every_declared_threshold():
    symbols = _derive([])
    thresholds = sorted((s.arguments[0].string, s.arguments[1].number)
                        for s in symbols if s.name == "threshold")
    assert thresholds  # kb/ declares its thresholds
    probes = []
    for field, t in thresholds:
        for value in ((t - 1, "whole"), (t - 1, "fraction"), (t, "whole"), (t, "fraction"),
                      (t + 1, "whole"), (t + 1, "fraction"), (arith.LOW, "whole"), (arith.HIGH, "whole")):
            probes.append((field, value))
    rows = []
    for key, (field, value) in enumerate(probes):
        rows += [("case", [N(key)]), ("number", [N(key), S(field), N(value[0]), clingo.Function(value[1])])]
    places = _atoms(_derive(rows), "compared")
    for key, (field, value) in enumerate(probes):
        for f, t in thresholds:
            if f != field:
                continue
            expected = {p for f2, t2, p in places.get(key, set()) if (f2, t2) == (f, t)}
            assert expected == {arith.place(value, t)}, (field, value, t)


def test_representative_dates_select_the_versions_the_dates_select():
    symbols = _derive([])
    versions = sorted((s.arguments[1].number, s.arguments[2].number) for s in symbols if s.name == "version")
    candidates = arith.representatives(versions)
    probes = set()
    for low, high in versions:
        for d in (low - 1, low, low + 1, high - 1, high, high + 1):
            probes.add(d)
    probes |= {0, 19000101, 20240820, 99991231, arith.HIGH - 1}
    probes = sorted(probes)
    stands = [arith.representative(d, versions, candidates) for d in probes]
    rows = []
    for key, d in enumerate(probes + stands):
        rows += [("case", [N(key)]), ("date_of_service", [N(key), N(d)])]
    applies = _atoms(_derive(rows), "applies")
    for key, d in enumerate(probes):
        assert applies.get(key, set()) == applies.get(len(probes) + key, set()), (d, stands[key])


def test_in_force_is_the_version_the_knowledge_base_selects_on_every_boundary():
    # a remedy's date is a date no case gives: the compiled engine's answer for it is
    # in_force/2 evaluated here, and must be clingo's for the same date
    from covkb.engine import reference

    symbols = _derive([])
    named = {s.arguments[0].string: (s.arguments[1].number, s.arguments[2].number)
             for s in symbols if s.name == "version"}
    probes = {19000101, 20240820, 99991231}
    for low, high in named.values():
        probes |= {low - 1, low, low + 1, high - 1, high, high + 1}
    probes = sorted(d for d in probes if _valid(d))
    rows = []
    for key, d in enumerate(probes):
        rows += [("case", [N(key)]), ("date_of_service", [N(key), N(d)])]
    selected = _atoms(_derive(rows), "in_force")
    for key, d in enumerate(probes):
        by_clingo = {row[0] for row in selected.get(key, set())}
        found = arith.in_force(d, named)
        assert by_clingo == ({found} if found else set()), d
        assert reference.in_force(d) == found, d


def _valid(day: int) -> bool:
    try:
        datetime.date(day // 10000, day // 100 % 100, day % 100)
    except ValueError:
        return False
    return True


def test_a_kb_whose_selection_is_not_arith_is_answered_by_clingo(tmp_path):
    # arith evaluates in_force/2 only when it is IN_FORCE word for word; here the last day
    # of a version no longer belongs to it, which clingo (and so covkb) must say
    import shutil

    from covkb.engine import reference

    copy = tmp_path / "kb"
    shutil.copytree(kb.kb_dir(), copy)
    core = copy / "core.lp"
    text = core.read_text()
    rule = "in_force(K,V) :- date_of_service(K,D), version(V,From,To), From <= D, D <= To."
    assert text.count(rule) == 1
    core.write_text(text.replace(rule, rule.replace("D <= To", "D < To")))
    assert reference.in_force(20251031) == "2024-08-21"
    assert reference.in_force(20251031, copy) is None
    assert reference.in_force(20251030, copy) == "2024-08-21"
