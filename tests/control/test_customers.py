"""``/v1.0/customers`` for a platform admin, on SQLite and on MariaDB + Redis (the key and
customer caches): CRUD, roles, and what disabling a customer does to its keys, tokens and calls."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket
from conftest import FakeCall, Plane
from live import serve_app

from control import cli
from control.auth import jwt_encode
from media.hooks import CallInfo, CallRejected


async def _admin(plane: Plane) -> tuple[str, dict[str, str]]:
    cid, _ = await plane.customer()
    return cid, await plane.key(cid, "platform_admin")


async def _json(response: Any) -> Any:
    return await response.get_json()


async def test_platform_admin_creates_lists_gets_updates(plane: Plane) -> None:
    _, admin = await _admin(plane)
    c = plane.client
    r = await c.post(
        "/v1.0/customers", json={"name": "acme", "email": "ops@acme.example"}, headers=admin
    )
    assert r.status_code == 201, await r.get_data()
    acme = await _json(r)
    assert acme["status"] == "active" and acme["email"] == "ops@acme.example"
    assert "customer_id" not in acme and "tm_delete" not in acme
    listed = await _json(await c.get("/v1.0/customers", headers=admin))
    assert acme["id"] in [row["id"] for row in listed["result"]]
    got = await _json(await c.get(f"/v1.0/customers/{acme['id']}", headers=admin))
    assert got == acme
    r = await c.patch(f"/v1.0/customers/{acme['id']}", json={"description": "pilot"}, headers=admin)
    assert r.status_code == 200 and (await _json(r))["description"] == "pilot"
    assert (await _json(r))["name"] == "acme"
    # the same name twice, a bad e-mail, an unknown field, an unknown customer
    r = await c.post("/v1.0/customers", json={"name": "acme"}, headers=admin)
    assert r.status_code == 409 and (await _json(r))["error"] == "name_taken"
    r = await c.post("/v1.0/customers", json={"name": "b", "email": "not-mail"}, headers=admin)
    body = await _json(r)
    assert r.status_code == 400 and body["fields"][0]["field"] == "email"
    assert "e-mail address" in body["fields"][0]["message"]
    r = await c.post("/v1.0/customers", json={"name": "b", "plan": "gold"}, headers=admin)
    assert r.status_code == 400
    r = await c.get(f"/v1.0/customers/{uuid.uuid4()}", headers=admin)
    assert r.status_code == 404
    r = await c.get("/v1.0/customers?status=gone", headers=admin)
    assert r.status_code == 400


async def test_only_a_platform_admin_reaches_customers(plane: Plane) -> None:
    cid, customer_admin = await plane.customer("customer_admin")
    c = plane.client
    for method, path in (
        ("GET", "/v1.0/customers"),
        ("POST", "/v1.0/customers"),
        ("GET", f"/v1.0/customers/{cid}"),
        ("POST", f"/v1.0/customers/{cid}/disable"),
    ):
        r = await c.open(path, method=method, json={"name": "x"}, headers=customer_admin)
        assert r.status_code == 403, (method, path)
    # and a customer admin cannot mint itself a platform_admin key through the API
    r = await c.post(
        "/v1.0/accesskeys", json={"name": "up", "role": "platform_admin"}, headers=customer_admin
    )
    assert r.status_code == 400


async def test_isolation_holds_for_a_platform_admin(plane: Plane) -> None:
    """A platform admin manages customers; it does not read their calls or agents."""
    _, admin = await _admin(plane)
    _, other_hdr = await plane.customer()
    agent = await _json(
        await plane.client.post("/v1.0/agents", json={"name": "a"}, headers=other_hdr)
    )
    assert (await plane.client.get(f"/v1.0/agents/{agent['id']}", headers=admin)).status_code == 404
    assert (
        await plane.client.get(f"/v1.0/agents/{agent['id']}", headers=other_hdr)
    ).status_code == 200


async def _live_call(plane: Plane, customer_id: str, number: str) -> str:
    store = plane.services.store
    agents = await store.find("agents", customer_id=customer_id)
    if not agents:
        agents = [
            await store.insert(
                "agents", {"customer_id": customer_id, "name": "a", "is_default": 1, "detail": {}}
            )
        ]
        await store.insert(
            "agent_routes",
            {
                "customer_id": customer_id,
                "agent_id": agents[0]["id"],
                "kind": "number",
                "value": number,
            },
        )
    call_id = str(uuid.uuid4())
    await plane.hooks.call_created(CallInfo(call_id, "sip", callee=number))
    return call_id


async def test_disabling_revokes_keys_refuses_and_ends_calls(plane: Plane) -> None:
    _, admin = await _admin(plane)
    c, store = plane.client, plane.services.store
    victim = await _json(await c.post("/v1.0/customers", json={"name": "v"}, headers=admin))
    vid = victim["id"]
    key = await _json(
        await c.post(f"/v1.0/customers/{vid}/accesskeys", json={"name": "ops"}, headers=admin)
    )
    vkey = {"Authorization": f"AccessKey {key['token']}"}
    claims = {"customer_id": vid, "role": "customer_admin", "exp": int(time.time()) + 60}
    vjwt = {"Authorization": "Bearer " + jwt_encode(claims, plane.services.cfg.jwt_secret)}
    bystander, bystander_hdr = await plane.customer()
    assert (await c.get("/v1.0/calls", headers=vkey)).status_code == 200  # cached on Redis now
    assert (await c.get("/v1.0/calls", headers=vjwt)).status_code == 200
    held = FakeCall(await _live_call(plane, vid, "+15550100001"))
    plane.calls.add(held)
    orphan = await _live_call(plane, vid, "+15550100001")  # a row whose call is gone (a crash)
    other = FakeCall(await _live_call(plane, bystander, "+15550100002"))
    plane.calls.add(other)

    r = await c.post(f"/v1.0/customers/{vid}/disable", headers=admin)
    assert r.status_code == 200, await r.get_data()
    body = await _json(r)
    assert body["status"] == "disabled" and body["tm_disable"]
    assert (body["revoked_keys"], body["calls_ended"], body["calls_unreachable"]) == (1, 2, 0)
    assert held.actions == [("hangup", "customer_disabled")]  # ended where it lives
    assert other.actions == []  # another customer's call goes on
    orphan_row = await store.get("calls", orphan, None)
    assert orphan_row is not None
    assert (orphan_row["status"], orphan_row["hangup_reason"]) == ("hangup", "customer_disabled")
    for creds, why in ((vkey, "unknown access key"), (vjwt, "the token's customer is disabled")):
        r = await c.get("/v1.0/calls", headers=creds)
        assert r.status_code == 401 and (await _json(r))["message"] == why
    assert (await c.get("/v1.0/calls", headers=bystander_hdr)).status_code == 200
    with pytest.raises(CallRejected, match="disabled"):
        await _live_call(plane, vid, "+15550100001")
    await _live_call(plane, bystander, "+15550100002")  # others' calls are still taken
    events = {e["type"]: e for e in await store.find("events", customer_id=vid)}
    assert events["customer_disabled"]["data"]["calls_ended"] == 2
    hungup = [
        e
        for e in await store.find("events", customer_id=vid, type="call_hungup")
        if e["resource_id"] == orphan
    ]
    assert len(hungup) == 1 and hungup[0]["data"]["hangup_reason"] == "customer_disabled"
    # disabling twice is harmless; a disabled customer gets no new key until enabled again
    assert (await c.post(f"/v1.0/customers/{vid}/disable", headers=admin)).status_code == 200
    r = await c.post(f"/v1.0/customers/{vid}/accesskeys", json={"name": "x"}, headers=admin)
    assert r.status_code == 409
    r = await c.post(f"/v1.0/customers/{vid}/enable", headers=admin)
    assert r.status_code == 200 and (await _json(r))["status"] == "active"
    assert (await c.get("/v1.0/calls", headers=vkey)).status_code == 401  # keys stay revoked
    assert (await c.get("/v1.0/calls", headers=vjwt)).status_code == 200
    await _live_call(plane, vid, "+15550100001")


async def _closing(ws: trio_websocket.WebSocketConnection) -> tuple[list[dict[str, Any]], Any]:
    """Every message until the server closes the socket, and its close reason."""
    received = []
    with trio.fail_after(20):
        while True:
            try:
                received.append(json.loads(await ws.get_message()))
            except trio_websocket.ConnectionClosed as exc:
                return received, exc.reason


async def _customer_with_a_key(plane: Plane) -> tuple[dict[str, str], str, dict[str, Any]]:
    """(a platform admin's headers, a new customer's id, a key of that customer)."""
    _, admin = await _admin(plane)
    c = plane.client
    vid = (await _json(await c.post("/v1.0/customers", json={"name": "v"}, headers=admin)))["id"]
    key = await _json(
        await c.post(f"/v1.0/customers/{vid}/accesskeys", json={"name": "ops"}, headers=admin)
    )
    return admin, vid, key


async def test_disabling_closes_the_customers_event_sockets_and_refuses_them_again(
    plane: Plane, nursery: trio.Nursery
) -> None:
    admin, vid, key = await _customer_with_a_key(plane)
    c = plane.client
    claims = {"customer_id": vid, "role": "customer_admin", "exp": int(time.time()) + 60}
    creds = [
        f"AccessKey {key['token']}",
        "Bearer " + jwt_encode(claims, plane.services.cfg.jwt_secret),
    ]
    bystander, bystander_hdr = await plane.customer()
    url = f"ws://127.0.0.1:{await serve_app(nursery, plane.app)}/v1.0/ws"

    async def subscribed(auth: str, customer_id: str) -> trio_websocket.WebSocketConnection:
        ws = await trio_websocket.connect_websocket_url(
            nursery, url, extra_headers=[("Authorization", auth)]
        )
        topics = [f"customer_id:{customer_id}:*"]
        await ws.send_message(json.dumps({"type": "subscribe", "topics": topics}))
        with trio.fail_after(10):
            assert json.loads(await ws.get_message())["type"] == "subscribed"
        return ws

    sockets = [await subscribed(auth, vid) for auth in creds]
    other = await subscribed(bystander_hdr["Authorization"], bystander)
    r = await c.post(f"/v1.0/customers/{vid}/disable", headers=admin)
    assert r.status_code == 200, await r.get_data()
    for ws in sockets:
        received, reason = await _closing(ws)
        assert [m["event"]["type"] for m in received] == ["customer_disabled"]
        assert (reason.code, reason.reason) == (4403, "customer disabled")
    await other.send_message(json.dumps({"type": "subscribe", "topics": []}))  # it stays
    with trio.fail_after(10):
        assert json.loads(await other.get_message())["type"] == "subscribed"
    await other.aclose()
    for auth, why in zip(
        creds, ("unknown access key", "the token's customer is disabled"), strict=True
    ):
        ws = await trio_websocket.connect_websocket_url(
            nursery, url, extra_headers=[("Authorization", auth)]
        )
        received, reason = await _closing(ws)
        assert received == [{"type": "error", "message": why}] and reason.code == 4401


async def test_a_media_token_minted_before_the_disable_opens_no_socket_after_it(
    plane: Plane, nursery: trio.Nursery
) -> None:
    """A media token is a JWT, not stored, so nothing revokes it: its customer is checked."""
    admin, vid, key = await _customer_with_a_key(plane)
    c = plane.client
    r = await c.post("/v1.0/media-tokens", headers={"Authorization": f"AccessKey {key['token']}"})
    token = (await _json(r))["token"]
    assert (await c.post(f"/v1.0/customers/{vid}/disable", headers=admin)).status_code == 200
    url = f"ws://127.0.0.1:{await serve_app(nursery, plane.app)}/v1.0/browser?token={token}"
    ws = await trio_websocket.connect_websocket_url(nursery, url)
    received, reason = await _closing(ws)
    assert received == [] and reason.code == 4401
    assert reason.reason == "unauthorized: the token's customer is disabled"


async def test_a_platform_admin_cannot_disable_its_own_customer(plane: Plane) -> None:
    own, admin = await _admin(plane)
    r = await plane.client.post(f"/v1.0/customers/{own}/disable", headers=admin)
    assert r.status_code == 409 and (await _json(r))["error"] == "cannot_disable_self"


async def test_a_jwt_of_an_unknown_customer_is_refused(plane: Plane) -> None:
    claims = {"customer_id": str(uuid.uuid4()), "role": "agent_user", "exp": time.time() + 60}
    hdr = {"Authorization": "Bearer " + jwt_encode(claims, plane.services.cfg.jwt_secret)}
    r = await plane.client.get("/v1.0/calls", headers=hdr)
    assert r.status_code == 401 and "unknown" in (await _json(r))["message"]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    code = cli.run(parser.parse_args(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_mints_keys_only_for_existing_active_customers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/cb.db"]
    assert _cli([*db, "migrate"], capsys)[0] == 0
    bogus = str(uuid.uuid4())
    code, out, err = _cli([*db, "create-accesskey", "--customer-id", bogus], capsys)
    assert code == 2 and out == "" and f"customer {bogus} is unknown" in err
    code, out, _ = _cli([*db, "create-customer", "--name", "acme"], capsys)
    assert code == 0
    acme = json.loads(out)["customer_id"]
    code, _, err = _cli([*db, "create-customer", "--name", "acme"], capsys)
    assert code == 2 and "exists already" in err
    code, out, _ = _cli(
        [*db, "create-accesskey", "--customer-id", acme, "--role", "platform_admin"], capsys
    )
    assert code == 0 and json.loads(out)["role"] == "platform_admin"
