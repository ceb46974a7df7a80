"""What covkb serve answers to GET: read from the knowledge base and the case schema once,
at start, and the OpenAPI document of every path."""

from __future__ import annotations

import json

from covkb import __version__

FHIR_JSON = "application/fhir+json"


# ---------------------------------------------------------------------------
# What GET answers: read from the knowledge base and the case schema once, at start
# ---------------------------------------------------------------------------
class Documents:
    def __init__(self, workers: int, choice=None):
        from covkb.engine import reference
        from covkb.surfaces.audit import kb_hash
        from covkb.results.result import iso_day

        policy = reference.policy()
        self.policy = policy
        self.versions = dict(policy.versions)
        self.questionnaires: dict[str, str] = {}
        self.static = {
            "/v1/versions": json.dumps({"policy": policy.id, "versions": [
                {"version": name, "from": iso_day(start), "to": None if end >= 99991231 else iso_day(end)}
                for name, (start, end) in sorted(policy.versions.items())]}),
            "/v1/schema": json.dumps(_case_schema()),
            "/openapi.json": json.dumps(openapi()),
        }

        self.health_fields = {
            "covkb": __version__, "policy": policy.id, "kb_sha256": kb_hash(),
            "deciders": f"{workers} process{'es' if workers > 1 else ''}" if workers else "1 thread",
            "engine": choice.engine if choice else None, "engine_reason": choice.why if choice else None,
            "kb_refused_by_compiler": choice.refused if choice else None}

    def health(self, decider) -> tuple[int, str]:
        """200 and "ok" while requests are decided; 503 and "failing" (with the last
        error) once the last request could not be decided, so a supervisor restarts it."""
        failing = decider.failures > 0
        return (503 if failing else 200), json.dumps({
            "status": "failing" if failing else "ok", **self.health_fields,
            "failures_in_a_row": decider.failures, "last_failure": decider.failure if failing else None})

    def body(self, path: str, query: dict[str, str]) -> str:
        if path == "/v1/questionnaire":
            version = query.get("policy_version") or max(self.versions)
            if version not in self.questionnaires:
                from covkb.fhir import codes as fhir_codes
                from covkb.fhir import questionnaire as fhir_form

                self.questionnaires[version] = fhir_codes.encode(fhir_form.questionnaire(version))
            return self.questionnaires[version]
        if path == "/v1/criteria":
            only = query.get("policy_version")
            return json.dumps({"policy": self.policy.id, "criteria": {
                version: [{"id": ident, "text": text} for ident, text in rows]
                for version, rows in sorted(self.policy.criteria.items()) if only in (None, version)}})
        return self.static[path]


def _case_schema() -> dict:
    from covkb.input.case import case_schema

    return case_schema()


def openapi() -> dict:
    """The OpenAPI 3.1 document, its schemas written by msgspec from the structs covkb encodes."""
    import msgspec

    from covkb.input.case import Case, schema_hook
    from covkb.results.explain import Comparison, Explanation
    from covkb.results.result import Result

    (case, result, explanation, comparison), components = msgspec.json.schema_components(
        [Case, Result, Explanation, Comparison], schema_hook=schema_hook,
        ref_template="#/components/schemas/{name}")
    identified = {"decision_id": {
        "description": "The decision log's row id when the server keeps a log (compare: the first "
                       "of its rows, one per version, numbered consecutively); else a unique string.",
        "oneOf": [{"type": "integer"}, {"type": "string"}]}}
    components["Error"] = {"type": "object", "required": ["error"],
                           "properties": {"error": {"type": "string",
                                                    "description": "The field and value at fault, or what went wrong."}}}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    version = {"name": "policy_version", "in": "query", "required": False, "schema": {"type": "string"},
               "description": "Apply this policy version instead of the one in force on the date of service."}

    fhir_in = {"schema": {"type": "object", "required": ["resourceType"],
                          "description": "A FHIR R4 Bundle (PAS Claim bundle or collection) or a DTR "
                                         "QuestionnaireResponse; see docs/fhir.md."}}
    claim_response = {"schema": {"type": "object", "description": (
        "With Accept: application/fhir+json, a Da Vinci PAS response Bundle (as `check --format pas`): "
        "the ClaimResponse first, whose identifier urn:covkb:decision-id holds the decision_id, then "
        "the request's resources it references.")}}

    def decided(summary: str, schema: dict, forced: bool, pas: bool = False) -> dict:
        answers = {"application/json": {"schema": {"allOf": [schema, {"type": "object", "properties": identified}]}}}
        if pas:
            answers[FHIR_JSON] = claim_response
        return {"post": {
            "summary": summary,
            "parameters": [version] if forced else [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": case},
                                                          FHIR_JSON: fhir_in}},
            "responses": {
                "200": {"description": "Decided.", "headers": {"Decision-Id": {"schema": {"type": "string"}}},
                        "content": answers},
                "400": {"description": "Not a valid case, a bad query parameter, or a request head not "
                                       "read strictly as RFC 9112 says (obs-fold, white space before a colon, "
                                       "a chunk size that is not hexadecimal digits, Transfer-Encoding with "
                                       "Content-Length, no Host, HTTP/0.9).", **error},
                "411": {"description": "No Content-Length.", **error},
                "413": {"description": "The body is larger than a case may be.", **error},
                "406": {"description": "Accept names only FHIR JSON, which only /v1/check answers.", **error},
                "408": {"description": "The request line and headers, or then the body, were not received "
                                       "within their timeouts.", **error},
                "429": {"description": "Too many open connections from this client; Retry-After.", **error},
                "503": {"description": "The decision log could not record the decision, or too many open "
                                       "connections in all; Retry-After.", **error}}}}

    def read(summary: str, schema: dict, parameters: tuple = ()) -> dict:
        return {"get": {"summary": summary, "parameters": list(parameters),
                        "responses": {"200": {"description": "OK",
                                              "content": {"application/json": {"schema": schema}}}}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "covkb", "version": __version__,
                 "description": "Prior-authorization decisions for idecabtagene vicleucel (Abecma) "
                                "under coverage policy 2024041."},
        "paths": {
            "/v1/check": decided("Decide one case (as `covkb check --format json`, or `--format pas`).",
                                 result, True, pas=True),
            "/v1/explain": decided("Explain one decision (as `covkb explain --format json`).", explanation, True),
            "/v1/compare": decided("Decide one case under every version (as `covkb compare --format json`).",
                                   comparison, False),
            "/v1/versions": read("The policy versions and the dates they are in force.", {"type": "object"}),
            "/v1/criteria": read("Every criterion's id and the policy's words, per version.",
                                 {"type": "object"}, (version,)),
            "/v1/schema": read("The JSON Schema of a case.", {"type": "object"}),
            "/v1/questionnaire": {"get": {
                "summary": "The FHIR R4 Questionnaire (DTR) asking for every case field (as `covkb questionnaire`).",
                "parameters": [{**version, "description": "The policy version to ask for (default: the newest)."}],
                "responses": {"200": {"description": "OK", "content": {FHIR_JSON: {"schema": {"type": "object"}}}}}}},
            "/health": read("Whether the server decides (200 ok; 503 failing once the last request could not be "
                            "decided), its covkb version, knowledge base hash, and the engine deciding.",
                            {"type": "object"}),
            "/openapi.json": read("This document.", {"type": "object"}),
        },
        "components": {"schemas": components},
    }
