"""https:// webhook tools and webhooks are verified by default; a webhook tool can opt out for a
self-signed receiver in development, for itself only (issue 20). The receiver is a real Hypercorn
over TLS with a certificate made in the test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import FakeCall, Plane, open_plane_for
from live import serve_app
from quart_trio import QuartTrio

from control.tls import TlsFiles
from control.tools import CallContext
from control.webhooks import Job, WebhookDispatcher
from tests.control.certs import self_signed


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsFiles]:
    files = TlsFiles(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    self_signed(files)
    yield files


@pytest.fixture
async def https_url(tls: TlsFiles, nursery: trio.Nursery) -> AsyncIterator[str]:
    """A receiver on https://127.0.0.1 whose certificate no system CA signed."""
    app = QuartTrio("self-signed")

    @app.post("/hook")
    async def hook() -> tuple[str, int, dict[str, str]]:
        return '{"ok": true}', 200, {"Content-Type": "application/json"}

    yield f"https://127.0.0.1:{await serve_app(nursery, app, tls)}/hook"


@pytest.fixture
async def plane(tmp_path: object) -> AsyncIterator[Plane]:
    async with await open_plane_for("sqlite", tmp_path) as p:
        yield p


async def _run_tool(plane: Plane, tool: dict[str, Any]) -> Any:
    cid, _ = await plane.customer()
    call = FakeCall(str(uuid.uuid4()))
    ctx = CallContext(call.call_id, cid, {"tools": [tool]})
    return await plane.hooks.tools.execute(call, ctx, tool["name"], {})


async def test_a_webhook_tool_verifies_https_unless_it_opts_out(
    plane: Plane, https_url: str
) -> None:
    tool = {"name": "lookup", "type": "webhook", "url": https_url}
    refused = await _run_tool(plane, tool)
    assert refused.is_error and refused.result["error"] == "tool_unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in refused.result["message"]
    accepted = await _run_tool(plane, {**tool, "tls_verify": False})
    assert not accepted.is_error and accepted.result == {"ok": True}


async def test_the_opt_out_is_part_of_the_agent_api(plane: Plane) -> None:
    _, auth = await plane.customer()
    tool = {"name": "t", "type": "webhook", "url": "https://dev.example/t", "tls_verify": False}
    r = await plane.client.post("/v1.0/agents", json={"name": "a", "tools": [tool]}, headers=auth)
    assert r.status_code == 201 and (await r.get_json())["tools"][0]["tls_verify"] is False


async def test_a_webhook_to_a_self_signed_receiver_is_refused_by_default(
    plane: Plane, https_url: str
) -> None:
    cid, _ = await plane.customer()
    hook = await plane.services.store.insert(
        "webhooks", {"customer_id": cid, "url": https_url, "secret": "s", "event_types": []}
    )
    dispatcher: WebhookDispatcher = plane.services.bus.webhooks  # type: ignore[assignment]
    event = {"id": str(uuid.uuid4()), "type": "call_created", "customer_id": cid}
    assert not await dispatcher.attempt(Job(hook, event), 1)
    (row,) = await plane.services.store.find("deliveries", webhook_id=hook["id"])
    assert row["status"] == "retrying" and "CERTIFICATE_VERIFY_FAILED" in row["error"]


async def test_a_webhook_may_opt_out_for_itself_only(plane: Plane, https_url: str) -> None:
    cid, auth = await plane.customer()
    c = plane.client
    r = await c.post("/v1.0/webhooks", json={"url": https_url, "tls_verify": False}, headers=auth)
    lax = await r.get_json()
    assert r.status_code == 201 and lax["tls_verify"] is False
    r = await c.post("/v1.0/webhooks", json={"url": https_url}, headers=auth)
    strict = await r.get_json()
    assert strict["tls_verify"] is True
    got = await (await c.get(f"/v1.0/webhooks/{lax['id']}", headers=auth)).get_json()
    assert got["tls_verify"] is False
    dispatcher: WebhookDispatcher = plane.services.bus.webhooks  # type: ignore[assignment]
    event = {"id": str(uuid.uuid4()), "type": "call_created", "customer_id": cid}
    for hook, delivered in ((lax, True), (strict, False)):
        row = await plane.services.store.get("webhooks", hook["id"], cid)
        assert await dispatcher.attempt(Job(row, event), 1) is delivered
