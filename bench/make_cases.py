"""Write N seeded synthetic cases as JSONL: python bench/make_cases.py N OUT.jsonl [SEED]"""

import json
import random
import sys
from datetime import date, timedelta

AGENTS = ["VRd", "KRd", "DRd", "Revlimid", "Velcade", "Darzalex", "pomalidomide", "Kd", "Pd",
          "dexamethasone", "selinexor", "IsaPd", "DVRd", "elotuzumab", "melphalan"]
PRODUCTS = ["Abecma", "cilta-cel", "Kymriah"]


def synthetic(rng: random.Random, index: int) -> dict:
    service = date(2024, 8, 1) + timedelta(days=rng.randrange(0, 900))
    maybe = lambda p, value: value if rng.random() < p else None  # noqa: E731
    data = {
        "case_id": f"BENCH-{index}",
        "date_of_service": service.isoformat(),
        "member": {"birth_date": (service - timedelta(days=rng.randrange(15 * 365, 85 * 365))).isoformat()},
        "prescriber": {"specialist": rng.random() < 0.95, "approved_car_t_center": rng.random() < 0.95},
        "diagnosis": {"multiple_myeloma": True, "relapsed": rng.random() < 0.8,
                      "refractory": rng.random() < 0.6, "cns_involvement": rng.random() < 0.03},
        "prior_lines": [rng.sample(AGENTS, rng.randrange(1, 4)) for _ in range(rng.randrange(0, 6))],
        "prior_cell_therapies": [p for p in PRODUCTS if rng.random() < 0.03],
        "clinical_trials": [p for p in PRODUCTS if rng.random() < 0.02],
        "concurrent_therapies": [{"agent": "fludarabine", "purpose": "lymphodepletion"}]
        + ([{"agent": "daratumumab", "purpose": "anti_cancer"}] if rng.random() < 0.03 else []),
        "prior_allogeneic_transplant": rng.random() < 0.05,
        "creatinine_clearance_ml_min": maybe(0.9, round(rng.uniform(30, 120), 2)),
        "lvef_percent": maybe(0.9, round(rng.uniform(35, 70), 1)),
        "significant_cardiac_disease_dates": [(service - timedelta(days=rng.randrange(0, 900))).isoformat()
                                              for _ in range(rng.randrange(0, 2))],
        "infections": {"hepatitis_b": False, "hepatitis_c": False, "hiv": rng.random() < 0.02,
                       "uncontrolled": maybe(0.9, False)},
        "organ_function_adequate": maybe(0.95, rng.random() < 0.95),
        "dose_million_car_t_cells": maybe(0.95, rng.randrange(250, 560)),
    }
    if rng.random() < 0.05:
        data["compendium"] = {"nccn_category": rng.choice(["1", "2A", "2B"])}
    return data


def main() -> None:
    count, out = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 2024041)
    with open(out, "w") as sink:
        for index in range(count):
            sink.write(json.dumps(synthetic(rng, index)) + "\n")


if __name__ == "__main__":
    main()
