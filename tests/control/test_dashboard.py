"""The Grafana dashboard (dashboards/callbridge.json) queries only metrics that ``/metrics``
really exports, is importable (the shape Grafana's import takes), and docs/metrics.md lists
every metric ``/metrics`` exports, with its meaning."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from conftest import FakeCall, Plane
from prometheus_client.parser import text_string_to_metric_families

from media.hooks import CallInfo

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "callbridge.json"
DOCS = ROOT / "docs" / "metrics.md"
_METRIC = re.compile(r"\bcallbridge_[a-z0-9_]+")
# What a family's samples are called in the text format, by its type
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


async def _scrape(plane: Plane) -> dict[str, str]:
    """Every sample name /metrics exports (labelled series included before their first sample,
    from their TYPE lines) -> its family's type, after a little real traffic."""
    cid, hdr = await plane.customer()
    agent = await plane.services.store.insert(
        "agents", {"customer_id": cid, "name": "a", "is_default": 1, "detail": {}}
    )
    call_id = str(uuid.uuid4())
    await plane.hooks.call_created(
        CallInfo(call_id, "audiosocket", params={"customer_id": cid, "agent_id": agent["id"]})
    )
    await plane.hooks.execute_tool(FakeCall(call_id), "not_a_tool", {})  # a tool error
    assert (await plane.client.get("/v1.0/calls", headers=hdr)).status_code == 200
    r = await plane.client.get("/metrics")
    assert r.status_code == 200
    text = (await r.get_data()).decode()
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.type
        for sample in family.samples:
            names[sample.name] = family.type
    assert 'callbridge_tool_errors_total{tool="custom"} 1.0' in text
    return names


def _targets(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


async def test_every_dashboard_query_names_an_exported_metric(plane: Plane) -> None:
    exported = await _scrape(plane)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _targets(dashboard)
    assert len(exprs) >= 20
    for expr in exprs:
        used = _METRIC.findall(expr)
        assert used, expr
        for name in used:
            assert name in exported, f"{name} (in {expr!r}) is not exported by /metrics"
    everything = " ".join(exprs)
    for wanted in (
        "callbridge_calls_active",  # active calls per leg
        "callbridge_calls_total",  # call rate
        "callbridge_call_ends_total",  # hangup causes
        "callbridge_playout_lateness_seconds_bucket",  # frame lateness
        "callbridge_audio_dropped_ms_total",  # drops
        "callbridge_agent_turn_seconds_bucket",  # agent turn latency
        "callbridge_tool_errors_total",  # tool errors
        "callbridge_webhook_backlog",  # webhook backlog
        "callbridge_http_request_seconds_bucket",  # API latency
    ):
        assert wanted in everything, wanted


def test_the_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (ds_input,) = dashboard["__inputs"]
    assert ds_input["type"] == "datasource" and ds_input["pluginId"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"] and "id" not in dashboard
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${" + ds_input["name"] + "}"
            assert target["expr"].count("(") == target["expr"].count(")")


async def test_docs_list_every_exported_metric(plane: Plane) -> None:
    exported = await _scrape(plane)
    documented = set(_METRIC.findall(DOCS.read_text()))
    for name, kind in exported.items():
        if name.endswith("_created"):
            continue  # prometheus_client's own series start times, said once in the page
        family = name
        for suffix in _SUFFIXES.get(kind, ()):
            if suffix and name.endswith(suffix) and kind == "histogram":
                family = name.removesuffix(suffix)
        assert family in documented, f"{family} is exported but not in docs/metrics.md"
