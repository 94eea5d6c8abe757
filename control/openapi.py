"""The OpenAPI 3.1 document, generated from the routes actually registered (see ``control.api``).

Request schemas come from the same pydantic models that validate the bodies; ``$defs`` are hoisted
into ``components/schemas``.
"""

from __future__ import annotations

from typing import Any

from control.api import RouteSpec

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def build_document(specs: list[RouteSpec], version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR}
    err = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for spec in specs:
        op: dict[str, Any] = {
            "summary": spec.summary,
            "operationId": f"{spec.method.lower()}_{spec.openapi_path}".replace("/", "_")
            .replace("{", "")
            .replace("}", "")
            .replace(".", "_"),
            "security": [{"AccessKey": []}, {"Bearer": []}],
            "parameters": [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
                for p in spec.path_params
            ]
            + [
                {"name": q, "in": "query", "required": False, "schema": _query_schema(q)}
                for q in spec.query
            ],
            "responses": {
                str(spec.status): {
                    "description": "success",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **{code: err for code in ("400", "401", "403", "404", "409", "413", "422", "429")},
            },
        }
        if spec.body is not None:
            schema = spec.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[spec.body.__name__] = schema
            op["requestBody"] = {
                "required": not spec.body_optional,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{spec.body.__name__}"}
                    }
                },
            }
        paths.setdefault(spec.openapi_path, {})[spec.method.lower()] = op
    for path, summary in (
        ("/health", "Liveness"),
        ("/ready", "Readiness (database, Redis when configured, the agent, Asterisk when --ari)"),
        ("/metrics", "Prometheus metrics"),
        ("/openapi.json", "This document"),
        ("/", "The page: talk to the agent from a browser (assets under /page/)"),
    ):
        paths[path] = {
            "get": {
                "summary": summary,
                "security": [],
                "operationId": "get_" + (path.strip("/").replace(".", "_") or "page"),
                "responses": {"200": {"description": "ok"}, "503": {"description": "not ready"}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "callbridge control plane", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "AccessKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AccessKey ak_...",
                },
                "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


def _query_schema(name: str) -> dict[str, Any]:
    if name == "page_size":
        return {"type": "integer", "minimum": 1, "maximum": 100}
    if name == "status":
        return {"type": "string", "enum": ["ringing", "progressing", "hangup"]}
    return {"type": "string", "maxLength": 64}
