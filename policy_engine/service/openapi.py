"""The OpenAPI 3.1 document of the decision service, built from the repository's JSON Schemas (OpenAPI 3.1 uses
JSON Schema 2020-12, the schemas' own dialect), so the API contract and the library's cannot drift apart."""

from __future__ import annotations

from functools import cache
from typing import Any

from .._version import __version__
from ..aggregates import REPORTED_STATUSES
from ..resources import load_schema
from .settings import MAX_BATCH

_JSON = "application/json"


def _schema(name: str) -> dict[str, Any]:
    # $id and $schema name a standalone document; inside components they would re-base the references
    return {k: v for k, v in load_schema(name).items() if k not in ("$id", "$schema")}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": schema}}}


def _answer(description: str, schema: dict[str, Any] | None = None, media: str = _JSON) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def _errors(*codes: str) -> dict[str, Any]:
    described = {
        "400": "Invalid request: every violation with its JSON path",
        "401": "Missing or wrong bearer token",
        "404": "Unknown resource",
        "409": "A request_id reused with a different body",
        "413": "Body beyond the size limit",
        "415": "Body not sent as application/json",
        "503": "The state store, the decision log or the pack is unavailable: nothing was decided",
    }
    return {code: _answer(described[code], _ref("Error")) for code in codes}


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable kind, e.g. invalid_request, conflict"},
        "message": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "violations": {"type": "array", "items": {
            "type": "object", "required": ["path", "message"],
            "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}},
    },
}


@cache
def document() -> dict[str, Any]:
    """The document served at ``GET /openapi.json``."""
    item_error = {"allOf": [_ref("Error"), {"type": "object", "required": ["index"],
                                            "properties": {"index": {"type": "integer", "minimum": 0}}}]}
    protected = _errors("401")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Payment policy engine decision service", "version": __version__,
                 "description": "Decisions on payment requests against a rule pack (DESIGN.md §5, §11)."},
        "components": {
            "schemas": {"PaymentRequest": _schema("payment_request"), "Decision": _schema("decision"),
                        "Error": _ERROR, "ItemError": item_error},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "required when the service runs with --token-file"}},
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/v1/decisions": {"post": {
                "summary": "Decide one request, or a batch given as an array (one result per item, in order)",
                "requestBody": _body({"oneOf": [_ref("PaymentRequest"),
                                                {"type": "array", "items": _ref("PaymentRequest"),
                                                 "maxItems": MAX_BATCH}]}),
                "responses": {
                    "200": _answer("The decision, or for an array each item's decision or error (with its index)",
                                   {"oneOf": [_ref("Decision"), {"type": "array", "items": {
                                       "oneOf": [_ref("Decision"), _ref("ItemError")]}}]}),
                    **_errors("400", "409", "413", "415", "503"), **protected},
            }},
            "/v1/explain": {"post": {
                "summary": "Condition-level explanation of every rule (or one) for a request; records nothing",
                "parameters": [{"name": "rule", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "explain only this rule"}],
                "requestBody": _body(_ref("PaymentRequest")),
                "responses": {"200": _answer("The explanation", {"type": "object"}),
                              **_errors("400", "404", "413", "415", "503"), **protected},
            }},
            "/v1/payments/{request_id}/status": {"post": {
                "summary": "Record what happened to a decided payment downstream (the counters' report)",
                "parameters": [{"name": "request_id", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1}}],
                "requestBody": _body({"type": "object", "required": ["status"], "additionalProperties": False,
                                      "properties": {"status": {"enum": list(REPORTED_STATUSES)}}}),
                "responses": {"200": _answer("Recorded", {"type": "object", "required": ["request_id", "status"],
                                                          "properties": {"request_id": {"type": "string"},
                                                                         "status": {"type": "string"}}}),
                              **_errors("400", "404", "413", "415", "503"), **protected},
            }},
            "/v1/pack": {"get": {
                "summary": "The pack deciding now: name, version, digest, matcher, rules, signature state",
                "responses": {"200": _answer("Pack information", {"type": "object"}),
                              **_errors("503"), **protected},
            }},
            "/v1/pack/reload": {"post": {
                "summary": "Reload the pack from where it was loaded (every worker); a failing reload keeps the old",
                "responses": {"200": _answer("Reloaded: the new pack", {"type": "object"}),
                              "422": _answer("The new pack was refused; the old one still decides", _ref("Error")),
                              **_errors("503"), **protected},
            }},
            "/healthz": {"get": {"summary": "The process answers", "security": [{}],
                                 "responses": {"200": _answer("Alive", {"type": "object"})}}},
            "/readyz": {"get": {"summary": "Pack loaded, state store reachable, last reload", "security": [{}],
                                "responses": {"200": _answer("Ready", {"type": "object"}),
                                              "503": _answer("Not ready, with the reason", {"type": "object"})}}},
            "/metrics": {"get": {"summary": "Prometheus text exposition",
                                 "responses": {"200": _answer("Metrics", {"type": "string"}, "text/plain"),
                                               **protected}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [{}],
                                      "responses": {"200": _answer("OpenAPI 3.1", {"type": "object"})}}},
        },
    }
