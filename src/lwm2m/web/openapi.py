"""The OpenAPI 3.1 document of the REST API (served at ``/api/openapi.json``, shown at
``/api/docs``), generated from the route table (:mod:`lwm2m.web.routes`): every URL and
method with its summary, parameters, body and answers, the schemas from the msgspec structs
of :mod:`lwm2m.web.bodies` (``msgspec.json.schema_components``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from lwm2m import __version__
from lwm2m.web import bodies
from lwm2m.web.apidoc import Answer, Doc, Param
from lwm2m.web.bodies import REF, OneOf
from lwm2m.web.routes import ROUTES, ApiRoute

__all__ = ["documented_routes", "openapi_document"]

TITLE = "lwm2m server REST API"


def documented_routes(table: Iterable[ApiRoute], *, bootstrap: bool) -> list[ApiRoute]:
    """The routes of ``table`` an app serves and documents (``/api/bootstrap`` only with a
    bootstrap server)."""
    return [r for r in table if r.documented and (r.needs != "bootstrap" or bootstrap)]


def _refs(schema: Any) -> set[str]:
    """The component names a schema refers to."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[-1]} if isinstance(schema.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


class _Schemas:
    """The schemas of the document's bodies: one component per struct (and per OneOf), built
    in one call of ``msgspec.json.schema_components`` so that shared structs appear once.
    A rule written as ``extra_json_schema`` may name a component no field refers to (a OneOf,
    the shapes of a queued request's result): those are taken from :mod:`lwm2m.web.bodies`."""

    def __init__(self, docs: Iterable[Doc]) -> None:
        types: list[Any] = []
        self.one_ofs: dict[str, type[OneOf]] = {}

        def add(kind: Any) -> None:
            if isinstance(kind, type) and issubclass(kind, OneOf):
                self.one_ofs[kind.__name__] = kind
                for member in kind.members:
                    add(member)
            elif kind is not None and kind not in types:
                types.append(kind)

        for doc in docs:
            add(doc.body)
            for answer in doc.answers.values():
                add(answer.body)
        while True:
            refs, self.components = msgspec.json.schema_components(types, ref_template=REF)
            for name, one_of in self.one_ofs.items():
                self.components[name] = one_of.schema()
            missing = _refs(self.components) - set(self.components)
            if not missing:
                break
            for name in sorted(missing):
                add(getattr(bodies, name))  # an unknown name is a bug of bodies.py: AttributeError
        self._by_type = dict(zip(types, refs, strict=True))

    def of(self, kind: Any) -> dict[str, Any]:
        if isinstance(kind, type) and issubclass(kind, OneOf):
            return {"$ref": REF.format(name=kind.__name__)}
        schema: dict[str, Any] = self._by_type[kind]
        return schema


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "in": param.where}
    if param.required:
        out["required"] = True
    out["schema"] = msgspec.json.schema(param.type)
    if param.description:
        out["description"] = param.description
    if param.example is not None:
        out["example"] = param.example
    return out


def _answer(answer: Answer, schemas: _Schemas) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.body is not None:
        out["content"] = {answer.media: {"schema": schemas.of(answer.body)}}
    elif answer.media:  # "": an answer without content (304)
        out["content"] = {answer.media: {}}
    if answer.headers:
        out["headers"] = {
            name: {"schema": {"type": "string"}, "description": text} for name, text in answer.headers.items()
        }
    return out


def _operation(doc: Doc, schemas: _Schemas) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": doc.summary}
    if doc.description:
        out["description"] = doc.description
    if doc.params:
        out["parameters"] = [_parameter(p) for p in doc.params]
    if doc.body is not None:
        out["requestBody"] = {
            "required": doc.body_required,
            "content": {"application/json": {"schema": schemas.of(doc.body)}},
        }
    if doc.raw_body:
        schema = {"type": "string", "contentMediaType": doc.raw_body, "minLength": 1}
        out["requestBody"] = {"required": doc.body_required, "content": {doc.raw_body: {"schema": schema}}}
    out["responses"] = {str(status): _answer(a, schemas) for status, a in sorted(doc.answers.items())}
    return out


def openapi_document(*, bootstrap: bool = False, table: Iterable[ApiRoute] = ROUTES) -> dict[str, Any]:
    """The document of the routes an app serves: ``/api/bootstrap`` only with a bootstrap server."""
    routes = documented_routes(table, bootstrap=bootstrap)
    schemas = _Schemas(op.doc for route in routes for op in route.operations.values())
    paths: dict[str, Any] = {}
    for route in routes:
        ops = paths.setdefault(route.path, {})
        for method, op in route.operations.items():
            ops[method.lower()] = _operation(op.doc, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": __version__},
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # The bearer token is required only when the server was started with one.
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }
