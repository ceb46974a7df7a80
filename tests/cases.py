"""Hand-built cases for the example tests: one fully documented request that
meets every criterion of both versions, and ways to change one fact of it."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Optional

from covkb.input import case as cases
from covkb.api import check, determine
from covkb.results.result import Result

ELIGIBLE: dict[str, Any] = {
    "case_id": "PA-TEST",
    "date_of_service": "2025-11-12",
    "member": {"birth_date": "1961-04-30"},
    "prescriber": {"specialist": True, "approved_car_t_center": True},
    "diagnosis": {"multiple_myeloma": True, "relapsed": True, "refractory": True,
                  "cns_involvement": False},
    "prior_lines": [["lenalidomide", "bortezomib", "dexamethasone"], ["daratumumab"]],
    "prior_cell_therapies": [],
    "clinical_trials": [],
    "concurrent_therapies": [{"agent": "fludarabine", "purpose": "lymphodepletion"}],
    "prior_allogeneic_transplant": False,
    "creatinine_clearance_ml_min": 80,
    "lvef_percent": 60,
    "significant_cardiac_disease_dates": [],
    "infections": {"hepatitis_b": False, "hepatitis_c": False, "hiv": False,
                   "uncontrolled": False},
    "organ_function_adequate": True,
    "dose_million_car_t_cells": 450,
}

V2024 = "2024-08-21"
V2025 = "2025-11-01"
# A date of service inside each version.
IN_2024 = "2025-03-15"
IN_2025 = "2025-11-12"

DROP = object()


def case(**changes: Any) -> dict:
    """ELIGIBLE with changes; a dotted key (`member__age`) reaches into a part; DROP removes."""
    data = copy.deepcopy(ELIGIBLE)
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is DROP:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


def decide(data: dict, version: Optional[str] = None) -> Result:
    return check(cases.from_object(_exact(data)), version)


def decide_all(items: list[dict], version: Optional[str] = None) -> list[Result]:
    return determine([cases.from_object(_exact(d)) for d in items], version)


def _exact(data: Any) -> Any:
    # Tests write decimals as strings ("45.01") so that no float ever stands for them.
    if isinstance(data, dict):
        return {k: _exact(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_exact(v) for v in data]
    if isinstance(data, float):
        raise TypeError("write decimals in tests as Decimal or strings, not floats")
    return data


def status(result: Result, ident: str) -> str:
    for criterion in result.criteria:
        if criterion.id == ident:
            return criterion.status
    raise KeyError(f"criterion {ident} not in version {result.version}")


def statuses(result: Result) -> dict[str, str]:
    return {c.id: c.status for c in result.criteria}


def dec(text: str) -> Decimal:
    return Decimal(text)
