"""The case arithmetic of kb/core.lp, evaluated in Python for the compiled engine.

kb/ declares the versions' dates (version/3), the thresholds (threshold/2) and the
windows (months_back/1); kb/core.lp defines with them the member's age, the start of a
window, a number's place against a threshold and the version in force on a date. The
compiled engine (covkb.engine.compiled) grounds the knowledge base once for every case, so it
cannot ground this arithmetic on each case's values: it drops the rules below and asks
this module for what they would derive. RULES is those rules exactly as clingo prints
them; a knowledge base whose arithmetic rules differ in any way is not compiled (clingo
decides, as always). tests/test_arith.py compares every function with clingo running
the knowledge base's own rules on the boundaries.
"""

from __future__ import annotations

from typing import Iterable, Optional

# The rules this module evaluates, as clingo.ast prints them. KEPT stay in the compiled
# program (fed representative values); the others are dropped and their atoms fed.
IN_FORCE = 'in_force(K,V) :- date_of_service(K,D); version(V,From,To); From <= D; D <= To.'
AGE_NUMBER = 'number(K,"age",A,whole) :- age(K,A).'
KEPT = frozenset({IN_FORCE, AGE_NUMBER})
RULES = KEPT | {
    'age(K,((D-B)/10000)) :- date_of_service(K,D); date(K,"member.birth_date",B).',
    'age(K,A) :- number(K,"member.age",A,whole); not date(K,"member.birth_date",_).',
    'back(K,M,Y2,M2,DD) :- months_back(M); date_of_service(K,D); Y = (D/10000); MM = ((D/100)\\100); '
    'DD = (D\\100); T = ((((Y*12)+MM)-1)-M); Y2 = (T/12); M2 = ((T\\12)+1).',
    'leap(Y) :- back(_,_,Y,2,_); (Y\\4) = 0; (Y\\100) != 0.',
    'leap(Y) :- back(_,_,Y,2,_); (Y\\400) = 0.',
    'month_days(Y,M,31) :- back(_,_,Y,M,_); M = (1;3;5;7;8;10;12).',
    'month_days(Y,M,30) :- back(_,_,Y,M,_); M = (4;6;9;11).',
    'month_days(Y,2,29) :- back(_,_,Y,2,_); leap(Y).',
    'month_days(Y,2,28) :- back(_,_,Y,2,_); not leap(Y).',
    'window_start(K,M,(((Y2*10000)+(M2*100))+DD)) :- back(K,M,Y2,M2,DD); month_days(Y2,M2,N); DD <= N.',
    'window_start(K,M,(((Y2*10000)+(M2*100))+N)) :- back(K,M,Y2,M2,DD); month_days(Y2,M2,N); DD > N.',
    'compared(K,F,T,above) :- threshold(F,T); number(K,F,I,_); I > T.',
    'compared(K,F,T,above) :- threshold(F,T); number(K,F,T,fraction).',
    'compared(K,F,T,equal) :- threshold(F,T); number(K,F,T,whole).',
    'compared(K,F,T,below) :- threshold(F,T); number(K,F,I,_); I < T.',
}
# Predicates whose every rule is in RULES (the engine compares them whole).
HEADS = frozenset({("age", 2), ("back", 5), ("leap", 1), ("month_days", 3), ("window_start", 3),
                   ("compared", 4), ("number", 4)})

# clingo's integers are 32-bit: a value outside is left to clingo itself.
LOW, HIGH = -(2 ** 31), 2 ** 31 - 1


def fits(*values: int) -> bool:
    return all(LOW <= v <= HIGH for v in values)


def _div(a: int, b: int) -> int:
    """clingo's `/`: integer division truncating toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _mod(a: int, b: int) -> int:
    """clingo's `\\`: the remainder of `/`."""
    return a - b * _div(a, b)


def age(service: int, birth: Optional[int], member_age: Optional[tuple[int, str]]) -> Optional[int]:
    """age/2: whole years from the birth date (YYYYMMDD) to the date of service, else the
    documented age when it is a whole number."""
    if birth is not None:
        return _div(service - birth, 10000)
    if member_age is not None and member_age[1] == "whole":
        return member_age[0]
    return None


def window_start(service: int, months: int) -> Optional[int]:
    """window_start/3: the date of service moved back `months`, the day clamped to the month."""
    y, mm, dd = _div(service, 10000), _mod(_div(service, 100), 100), _mod(service, 100)
    t = y * 12 + mm - 1 - months
    y2, m2 = _div(t, 12), _mod(t, 12) + 1
    if m2 in (1, 3, 5, 7, 8, 10, 12):
        days = 31
    elif m2 in (4, 6, 9, 11):
        days = 30
    elif m2 == 2:
        days = 29 if (_mod(y2, 4) == 0 and _mod(y2, 100) != 0) or _mod(y2, 400) == 0 else 28
    else:  # a month outside 1..12 has no month_days: no window
        return None
    return y2 * 10000 + m2 * 100 + min(dd, days)


def place(value: tuple[int, str], threshold: int) -> str:
    """compared/4: where a number (integer part, "whole" or "fraction") stands against an
    integer threshold."""
    whole, rest = value
    if whole > threshold or (whole == threshold and rest == "fraction"):
        return "above"
    return "equal" if whole == threshold else "below"


def in_force(day: int, versions: dict[str, tuple[int, int]]) -> Optional[str]:
    """in_force/2 (IN_FORCE): the version whose From <= D <= To holds the date D."""
    return next((name for name, (low, high) in versions.items() if low <= day <= high), None)


def representatives(versions: Iterable[tuple[int, int]]) -> list[int]:
    """Dates standing for every date of service in the selection rule: one per run of
    dates that every version's From <= D <= To treats alike."""
    points = set()
    for low, high in versions:
        points.update((low - 1, low, high, high + 1))
    return sorted(p for p in points if fits(p))


def representative(service: int, versions: list[tuple[int, int]], candidates: list[int]) -> Optional[int]:
    """The candidate that every version's interval holds exactly when it holds `service`."""
    wanted = [low <= service <= high for low, high in versions]
    for candidate in candidates:
        if [low <= candidate <= high for low, high in versions] == wanted:
            return candidate
    return None
