"""Write facts/fhir/: for one bundled example of each decision, the same case as a PAS
request Bundle and as a DTR QuestionnaireResponse (covkb.fhir.reading's mapping, run backwards).
Each response names its patient, author and coverage, as the DTR profile asks.

    python tools/fhir_examples.py
"""

from pathlib import Path

from covkb.input import files
from covkb.fhir import codes as fhir_codes
from covkb.fhir import questionnaire as fhir_form
from covkb.fhir import responses

FACTS = Path(__file__).resolve().parents[1] / "facts"
EXAMPLES = ["covered-2025.json", "covered-by-compendium-2025.json", "not-covered-crcl-45-2024.json",
            "not-covered-cardiac-2024.json", "pending-2025.json", "not-applicable-before-2024-08-21.json"]


def main() -> None:
    out = FACTS / "fhir"
    out.mkdir(exist_ok=True)
    for name in EXAMPLES:
        one = files.load(FACTS / name)
        stem = name.removesuffix(".json")
        (out / f"{stem}.bundle.json").write_text(_pretty(responses.pas_bundle(one)) + "\n")
        ident = fhir_form.safe_id(one.case_id)
        response = fhir_form.questionnaire_response(one, subject={"reference": f"Patient/{ident}-patient"},
                                               author={"reference": f"Practitioner/{ident}-prescriber"},
                                               coverage={"reference": f"Coverage/{ident}-coverage"})
        (out / f"{stem}.questionnaire-response.json").write_text(_pretty(response) + "\n")


def _pretty(resource: dict) -> str:
    import msgspec

    return msgspec.json.format(fhir_codes.encode(resource), indent=2)


if __name__ == "__main__":
    main()
