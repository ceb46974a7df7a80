"""A real DTR client: covkb's Questionnaire filled in LHC-Forms 40.1.3 (the US National
Library of Medicine's SDC form renderer) in headless Chromium, by clicks and keys, the
QuestionnaireResponse exported with LHC-Forms' own API and decided.

The record the form is prepopulated from is the PAS example's (facts/fhir/covered-2025):
its Patient's birth date, its relapsed-myeloma Condition (ICD-10-CM C90.02), its LVEF 58 %
and creatinine clearance 72.5 mL/min. Expected decisions come from the policy: two prior
lines including an immunomodulatory agent, a proteasome inhibitor and an anti-CD38 antibody
meet criterion 3 of version 2025-11-01; one line does not ("two or more prior lines")."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from covkb.fhir import codes as fhir_codes
from covkb.fhir import questionnaire as fhir_form
from covkb.fhir import reading as fhir_in
from covkb.api import check
from covkb.input.text import parse_json

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "tests" / "browser"
LFORMS = CLIENTS / "node_modules" / "lforms" / "dist" / "lforms"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="headless Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(not LFORMS.is_dir() or not (CLIENTS / "node_modules" / "puppeteer-core").is_dir(),
                       reason="LHC-Forms is not installed (cd tests/browser && npm install --legacy-peer-deps)"),
]

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="lforms/webcomponent/styles.css"></head>
<body><div id="form"></div>
<script src="lforms/webcomponent/assets/lib/zone.min.js"></script>
<script src="lforms/webcomponent/runtime.js"></script>
<script src="lforms/webcomponent/polyfills.js"></script>
<script src="lforms/webcomponent/main.js"></script>
<script src="lforms/fhir/R4/lformsFHIR.min.js"></script>
</body></html>
"""


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """The page and LHC-Forms over HTTP on a free local port (module scripts need HTTP)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_text(PAGE)
    (site / "lforms").symlink_to(LFORMS)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/page.html"
    finally:
        server.shutdown()
        server.server_close()


def record() -> tuple[dict, list[dict]]:
    bundle = parse_json((ROOT / "facts" / "fhir" / "covered-2025.bundle.json").read_bytes())
    resources = [json.loads(fhir_codes.encode(e["resource"])) for e in bundle["entry"]]
    [patient] = [r for r in resources if r["resourceType"] == "Patient"]
    return patient, [r for r in resources if r["resourceType"] in ("Condition", "Observation")]


def fill(url: str, tmp_path: Path, steps: list[dict]) -> dict:
    patient, held = record()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"chromium": BROWSER, "profile": str(tmp_path / "profile"), "patient": patient,
                               "record": held, "questionnaire": json.loads(fhir_codes.encode(fhir_form.questionnaire("2025-11-01"))),
                               "steps": steps}))
    out = tmp_path / "out.json"
    done = subprocess.run([NODE, str(CLIENTS / "lhc_fill.js"), url, str(job), str(out)], cwd=CLIENTS,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def yes(path: str) -> dict:
    return {"click": f"{path}/1/1|true"}


def no(path: str) -> dict:
    return {"click": f"{path}/1/1|false"}


def steps(lines: list[str]) -> list[dict]:
    """A clinician's clicks and keys for the covered-2025 request with these prior lines,
    each line one regimen; what the record holds is left as LHC-Forms filled it."""
    done = [{"type": ["case_id/1/1", "PA-LHC-1"]}, {"date": ["date_of_service/1/1", "11/12/2025"]},
            yes("prescriber.specialist"), yes("prescriber.approved_car_t_center"),
            no("diagnosis.refractory"), yes("prior_lines.any")]
    for index, regimen in enumerate(lines, 1):
        if index > 1:
            done.append({"button": "+ Prior lines of therapy"})
        done.append({"type": [f"prior_lines.agent/1/{index}/1", regimen]})
    done += [no("prior_cell_therapies.any"), no("clinical_trials.any"), no("concurrent_therapies.any"),
             yes("organ_function_adequate"), no("diagnosis.cns_involvement"),
             {"type": ["dose_million_car_t_cells/1/1", "450"]}]
    return done


def answered(response: dict) -> dict[str, list]:
    found: dict[str, list] = {}

    def walk(items):
        for item in items:
            for answer in item.get("answer", ()):
                found.setdefault(item["linkId"], []).extend(v for k, v in answer.items() if k.startswith("value"))
                walk(answer.get("item", ()))
            walk(item.get("item", ()))

    walk(response.get("item", ()))
    return found


def decided(response: dict):
    read = fhir_in.case_from_fhir(parse_json(json.dumps(response)))
    return read.case, check(read.case)


def test_lhc_forms_prepopulates_from_the_record_and_a_filled_form_decides_covered(served, tmp_path):
    got = fill(served, tmp_path, steps(["VRd", "DPd"]))
    assert got["errors"] == []
    # what the record holds, filled by LHC-Forms from the launch context before any click
    before = answered(got["prepopulated"])
    assert before["member.birth_date"] == ["1961-04-30"]
    assert before["diagnosis.multiple_myeloma"] == [True] and before["diagnosis.relapsed"] == [True]
    assert before["lvef_percent"] == [58]
    assert before["creatinine_clearance_ml_min"] == [72.5]
    assert "prescriber.specialist" not in before and "case_id" not in before
    response = got["response"]
    assert response["questionnaire"] == fhir_form.questionnaire_canonical("2025-11-01")
    assert response["status"] == "completed"
    case, result = decided(response)
    assert case.case_id == "PA-LHC-1" and case.prior_lines == [["VRd"], ["DPd"]]
    assert case.lvef_percent == 58 and str(case.creatinine_clearance_ml_min) == "72.5"
    assert result.decision == "covered", result


def test_a_form_filled_with_one_prior_line_decides_not_covered_by_criterion_3(served, tmp_path):
    got = fill(served, tmp_path, steps(["DVRd"]))
    case, result = decided(got["response"])
    assert case.prior_lines == [["DVRd"]]
    assert result.decision == "not_covered"
    assert [c.id for c in result.criteria if c.status == "not_met"] == ["3"]
