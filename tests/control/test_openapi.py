"""The OpenAPI document lists exactly the routes the app serves, with valid references."""

from __future__ import annotations

import re
from typing import Any

from conftest import Plane


def _served(app: Any) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.websocket:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method.lower(), path))
    return out


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_document_matches_routes(plane: Plane) -> None:
    r = await plane.client.get("/openapi.json")
    doc = await r.get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _served(plane.app)
    assert len(documented) >= 30  # 4 operational + the /v1.0 API
    for ref in _refs(doc):
        name = ref.removeprefix("#/components/schemas/")
        assert name in doc["components"]["schemas"], ref
    op_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(op_ids) == len(set(op_ids))
    agent = doc["components"]["schemas"]["AgentBody"]
    assert agent["additionalProperties"] is False and "name" in agent["required"]


async def test_document_describes_transfer_modes(plane: Plane) -> None:
    r = await plane.client.get("/openapi.json")
    schemas = (await r.get_json())["components"]["schemas"]
    settings = schemas["TransferSettings"]["properties"]
    assert settings["mode"]["enum"] == ["blind", "warm"]
    assert settings["sip"]["enum"] == ["refer", "bridge"]
    assert "ringback" in settings["announcement"]["description"]
    body = schemas["TransferBody"]["properties"]
    assert {"target", "mode", "announcement", "introduction"} <= set(body)
