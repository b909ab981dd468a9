"""Checking the API's answers against its OpenAPI document: the operation of a URL, and
whether an answer's status is documented and its body matches the documented schema."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import jsonschema_rs


def schema_with_components(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the document's components beside it, so that its ``$ref``s resolve."""
    return {**schema, "components": document["components"]}


def component_validator(document: dict[str, Any], name: str) -> Any:
    schema = schema_with_components(document, document["components"]["schemas"][name])
    return jsonschema_rs.Draft202012Validator(schema)


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


def template_of(document: dict[str, Any], path: str) -> str | None:
    """The document's template that ``path`` falls under: of those that match, the one with
    the most literal characters (``.../history/{objectId}`` before ``.../{objectId}/{instanceId}``)."""
    found = [t for t in document["paths"] if _pattern(t).match(path)]
    return max(found, key=lambda t: len(re.sub(r"\{[^}]+\}", "", t)), default=None)


def answer_problems(document: dict[str, Any], method: str, path: str, status: int, body: bytes) -> list[str]:
    """What is wrong with an answer per the document: an undocumented URL, method or status, or
    a JSON body that does not match the status's schema (empty: nothing)."""
    template = template_of(document, path)
    if template is None:
        return [f"{path} is not in the document"]
    # Rules of the whole API, answered before any route: the guard's refusals (421, 403, 415)
    # and its answers to CORS preflights (OPTIONS, Fetch Standard §3.2.5), the token check
    # (401), and a 405 for a method a URL does not take.
    if status in (401, 403, 405, 415, 421) or method == "OPTIONS":
        return []
    operation = document["paths"][template].get(method.lower())
    if operation is None:
        return [f"{method} {template} is not in the document"]
    answer = operation["responses"].get(str(status))
    if answer is None:
        return [f"{method} {template}: {status} is not documented"]
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return []
    validator = jsonschema_rs.Draft202012Validator(schema_with_components(document, schema))
    instance = json.loads(body)
    return [f"{method} {template} {status}: {error.message}" for error in validator.iter_errors(instance)]
