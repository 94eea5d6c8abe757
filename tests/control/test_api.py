"""The REST API through Quart's test client, on SQLite and on MariaDB + Redis."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from conftest import FakeCall, Plane

from control.auth import jwt_encode
from media.hooks import CallInfo

AGENT = {
    "name": "sales bot",
    "prompt": "Sell.",
    "greeting": "Hi!",
    "tools": ["end_call", "transfer_call"],
    "transfer_targets": {"sales": "+15550001111"},
}


async def test_agent_crud_and_validation(plane: Plane) -> None:
    _, auth = await plane.customer()
    c = plane.client
    r = await c.post("/v1.0/agents", json=AGENT, headers=auth)
    assert r.status_code == 201, await r.get_data()
    agent = await r.get_json()
    assert agent["name"] == "sales bot" and agent["engines"]["llm"] == "intent-router"
    r = await c.get(f"/v1.0/agents/{agent['id']}", headers=auth)
    assert (await r.get_json())["greeting"] == "Hi!"
    r = await c.put(f"/v1.0/agents/{agent['id']}", json={**AGENT, "name": "renamed"}, headers=auth)
    assert r.status_code == 200 and (await r.get_json())["name"] == "renamed"
    r = await c.get("/v1.0/agents", headers=auth)
    assert [a["id"] for a in (await r.get_json())["result"]] == [agent["id"]]
    r = await c.delete(f"/v1.0/agents/{agent['id']}", headers=auth)
    assert r.status_code == 200
    assert (await c.get(f"/v1.0/agents/{agent['id']}", headers=auth)).status_code == 404

    r = await c.post(
        "/v1.0/agents",
        json={**AGENT, "vad": {"stop_secs": 99}, "routes": {"numbers": ["12345"]}},
        headers=auth,
    )
    body = await r.get_json()
    assert r.status_code == 400 and body["error"] == "invalid_request"
    assert {f["field"] for f in body["fields"]} == {"vad.stop_secs", "routes.numbers[0]"}
    r = await c.post("/v1.0/agents", json={**AGENT, "surprise": 1}, headers=auth)
    assert r.status_code == 400 and (await r.get_json())["fields"][0]["field"] == "surprise"


async def test_malformed_and_oversize_bodies(plane: Plane) -> None:
    _, auth = await plane.customer()
    c = plane.client
    hdr = {**auth, "Content-Type": "application/json"}
    r = await c.post("/v1.0/agents", data=b"{not json", headers=hdr)
    assert r.status_code == 400 and (await r.get_json())["error"] == "malformed_json"
    r = await c.post("/v1.0/agents", data=b"[1, 2]", headers=hdr)
    assert r.status_code == 400
    big = json.dumps({**AGENT, "prompt": "x" * 100_000}).encode()
    r = await c.post("/v1.0/agents", data=big, headers=hdr)
    assert r.status_code == 413 and (await r.get_json())["error"] == "body_too_large"


async def test_bad_credentials_answer_401(plane: Plane) -> None:
    cid, _ = await plane.customer()
    c = plane.client
    expired = await plane.key(cid, "customer_admin", "2000-01-01 00:00:00.000000")
    secret = plane.services.cfg.jwt_secret
    good_claims = {
        "customer_id": cid,
        "role": "customer_admin",
        "sub": "u1",
        "exp": int(time.time()) + 60,
    }
    bad = [
        {},
        {"Authorization": "AccessKey"},
        {"Authorization": "AccessKey ak_doesnotexist"},
        {"Authorization": "AccessKey not_a_key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        expired,
        {"Authorization": "Bearer " + jwt_encode({**good_claims, "exp": 1}, secret)},
        {"Authorization": "Bearer " + jwt_encode(good_claims, "wrong-secret")},
        {"Authorization": "Bearer " + jwt_encode({**good_claims, "exp": None}, secret)},
        {"Authorization": "Bearer garbage.garbage.garbage"},
        {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJjdXN0b21lcl9pZCI6IngifQ."},
    ]
    for headers in bad:
        r = await c.get("/v1.0/calls", headers=headers)
        assert r.status_code == 401, headers
        assert (await r.get_json())["error"] == "unauthorized"
    r = await c.get(
        "/v1.0/calls", headers={"Authorization": "Bearer " + jwt_encode(good_claims, secret)}
    )
    assert r.status_code == 200


async def test_roles(plane: Plane) -> None:
    cid, _ = await plane.customer()
    user = await plane.key(cid, "agent_user")
    manager = await plane.key(cid, "customer_manager")
    c = plane.client
    assert (await c.get("/v1.0/agents", headers=user)).status_code == 200
    assert (await c.post("/v1.0/agents", json=AGENT, headers=user)).status_code == 403
    assert (await c.post("/v1.0/agents", json=AGENT, headers=manager)).status_code == 201
    assert (await c.get("/v1.0/accesskeys", headers=manager)).status_code == 403
    assert (
        await c.post("/v1.0/webhooks", json={"url": "http://127.0.0.1:1/x"}, headers=manager)
    ).status_code == 403


async def _populate(plane: Plane, auth: dict[str, str]) -> dict[str, str]:
    """One of every resource for the customer behind ``auth``; returns the path ids."""
    c = plane.client
    agent = await (await c.post("/v1.0/agents", json=AGENT, headers=auth)).get_json()
    key = await (await c.post("/v1.0/accesskeys", json={"name": "k"}, headers=auth)).get_json()
    hook = await (
        await c.post("/v1.0/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=auth)
    ).get_json()
    conf = await (await c.post("/v1.0/conferences", json={"name": "room"}, headers=auth)).get_json()
    cust = agent["customer_id"]
    call_id = str(uuid.uuid4())
    await plane.services.store.insert(
        "agent_routes",
        {"customer_id": cust, "agent_id": agent["id"], "kind": "number", "value": "+15551234567"},
    )
    await plane.hooks.call_created(CallInfo(call_id, "sip", callee="+15551234567"))
    plane.calls.add(FakeCall(call_id))
    part = await (
        await c.post(
            f"/v1.0/conferences/{conf['id']}/participants", json={"call_id": call_id}, headers=auth
        )
    ).get_json()
    events = await (await c.get("/v1.0/events", headers=auth)).get_json()
    return {
        "agent_id": agent["id"],
        "accesskey_id": key["id"],
        "webhook_id": hook["id"],
        "conference_id": conf["id"],
        "participant_id": part["id"],
        "call_id": call_id,
        "event_id": events["result"][0]["id"],
    }


SAMPLE_BODIES: dict[str, Any] = {
    "/v1.0/agents/{agent_id}": AGENT,
    "/v1.0/calls/{call_id}/dtmf": {"digits": "1"},
    "/v1.0/calls/{call_id}/say": {"text": "hello"},
    "/v1.0/calls/{call_id}/transfer": {"target": "+15550001111"},
    "/v1.0/conferences/{conference_id}/participants": {"call_id": str(uuid.uuid4())},
    "/v1.0/conferences/{conference_id}/participants/{participant_id}": {"mute_send": True},
}


async def test_every_route_hides_other_customers_resources(plane: Plane) -> None:
    _, owner = await plane.customer()
    ids = await _populate(plane, owner)
    _, stranger = await plane.customer()
    c = plane.client
    # /v1.0/customers/<id> is the platform's, not a customer's: 403 to every customer role
    # (tests/control/test_customers.py); a platform admin sees customers, not their resources.
    api_specs = [s for s in _specs(plane) if s.path_params and s.role != "platform_admin"]
    assert len(api_specs) >= 15
    for spec in api_specs:
        path = spec.openapi_path.format(**ids)
        body = SAMPLE_BODIES.get(spec.openapi_path)
        r = await c.open(path, method=spec.method, json=body, headers=stranger)
        assert r.status_code == 404, (spec.method, spec.openapi_path, r.status_code)
        text = (await r.get_data()).decode()
        assert all(v not in text for v in ids.values())
    for list_path in (
        "/v1.0/calls",
        "/v1.0/agents",
        "/v1.0/events",
        "/v1.0/conferences",
        "/v1.0/webhooks",
    ):
        r = await c.get(list_path, headers=stranger)
        assert (await r.get_json())["result"] == [], list_path
    # the owner still sees everything: the 404s above were about ownership, not bad ids
    r = await c.get(f"/v1.0/calls/{ids['call_id']}", headers=owner)
    assert r.status_code == 200


def _specs(plane: Plane) -> list[Any]:
    specs: list[Any] = plane.app.extensions["callbridge.api"].specs
    return specs


async def test_call_actions_on_a_live_call(plane: Plane) -> None:
    cid, auth = await plane.customer()
    c = plane.client
    agent = await (
        await c.post(
            "/v1.0/agents",
            json={
                **AGENT,
                "is_default": True,
                "routes": {"audiosocket_uuids": ["0AF3D8D2-0000-4000-8000-00000000abcd"]},
            },
            headers=auth,
        )
    ).get_json()
    call_id = str(uuid.uuid4())
    assignment = await plane.hooks.call_created(
        CallInfo(call_id, "audiosocket", leg_ref="0af3d8d2-0000-4000-8000-00000000abcd")
    )
    assert assignment.agent_id == agent["id"] and assignment.customer_id == cid
    assert assignment.config["greeting"] == "Hi!"
    fake = FakeCall(call_id)
    plane.calls.add(fake)
    await plane.hooks.call_answered(fake)
    r = await c.get("/v1.0/calls?status=progressing", headers=auth)
    (row,) = (await r.get_json())["result"]
    assert row["id"] == call_id and row["leg"] == "audiosocket" and row["tm_answer"]
    assert (await c.get("/v1.0/calls?status=bogus", headers=auth)).status_code == 400
    assert (await c.get("/v1.0/calls?page_size=0", headers=auth)).status_code == 400
    await plane.hooks.transcript(call_id, "user", "transfer me to sales", True)
    await plane.hooks.transcript(call_id, "user", "transfer me", False)  # interim: not kept
    r = await c.get(f"/v1.0/calls/{call_id}/transcripts", headers=auth)
    assert [(t["role"], t["text"]) for t in (await r.get_json())["result"]] == [
        ("user", "transfer me to sales")
    ]
    for action, body in (("dtmf", {"digits": "12#"}), ("say", {"text": "one moment"})):
        r = await c.post(f"/v1.0/calls/{call_id}/{action}", json=body, headers=auth)
        assert r.status_code == 200
    r = await c.post(
        f"/v1.0/calls/{call_id}/transfer", json={"target": "+15550001111"}, headers=auth
    )
    assert r.status_code == 422 and (await r.get_json())["error"] == "leg_cannot_transfer"
    r = await c.post(f"/v1.0/calls/{call_id}/hangup", json={"cause": "bored"}, headers=auth)
    got = await r.get_json()
    assert r.status_code == 400 and got["fields"][0]["field"] == "cause", got
    assert "busy" in got["fields"][0]["message"]  # it names the causes there are
    r = await c.post(f"/v1.0/calls/{call_id}/hangup", json={"cause": "busy"}, headers=auth)
    assert r.status_code == 200
    r = await c.post(f"/v1.0/calls/{call_id}/hangup", headers=auth)
    assert r.status_code == 200
    assert fake.actions == [
        ("dtmf", "12#"),
        ("say", "one moment"),
        ("hangup", "api: busy"),
        ("hangup", "api"),
    ]
    plane.calls.remove(call_id)
    await plane.hooks.call_hungup(call_id, "api", "hung up through the API")
    r = await c.get(f"/v1.0/calls/{call_id}", headers=auth)
    got = await r.get_json()
    assert got["status"] == "hangup" and got["hangup_cause"] == "api" and got["duration_ms"] >= 0
    r = await c.post(f"/v1.0/calls/{call_id}/hangup", headers=auth)
    assert r.status_code == 409  # stored but no longer live
    r = await c.post(
        "/v1.0/calls",
        json={
            "leg": "audiosocket",
            "source": "+15550001111",
            "destination": "+15550002222",
            "agent_id": agent["id"],
        },
        headers=auth,
    )
    assert r.status_code == 422 and (await r.get_json())["error"] == "cannot_originate"


async def test_rate_limit_answers_429_with_retry_after(tmp_path: object) -> None:
    from conftest import open_plane_for

    async with await open_plane_for("sqlite", tmp_path, rate_per_s=0.5, rate_burst=3) as p:
        _, auth = await p.customer()
        codes = [(await p.client.get("/v1.0/calls", headers=auth)) for _ in range(5)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
        assert int(codes[3].headers["Retry-After"]) >= 1


async def test_request_id_and_audit_rows(plane: Plane) -> None:
    cid, auth = await plane.customer()
    c = plane.client
    r = await c.post(
        "/v1.0/conferences", json={"name": "x"}, headers={**auth, "X-Request-ID": "req-123"}
    )
    assert r.headers["X-Request-ID"] == "req-123"
    r = await c.get("/v1.0/calls", headers={"Authorization": "AccessKey ak_nope"})
    assert len(r.headers["X-Request-ID"]) == 32  # generated when absent
    rows = await plane.services.db.fetch_all(
        "SELECT customer_id, action, status_code, request_id FROM {p}audits ORDER BY tm_create"
    )
    assert {
        "customer_id": cid,
        "action": "POST",
        "status_code": 201,
        "request_id": "req-123",
    } in rows
    assert any(r["status_code"] == 401 and r["customer_id"] == "" for r in rows)


async def test_health_ready_metrics(plane: Plane) -> None:
    c = plane.client
    assert (await (await c.get("/health")).get_json())["status"] == "ok"
    ready = await (await c.get("/ready")).get_json()
    assert ready["status"] == "ready" and ready["checks"]["db"] == "ok"
    if plane.services.redis is not None:
        assert ready["checks"]["redis"] == "ok"
    _, auth = await plane.customer()
    await c.get("/v1.0/calls", headers=auth)
    text = (await (await c.get("/metrics")).get_data()).decode()
    assert "callbridge_http_request_seconds_bucket" in text
    assert "callbridge_calls_active" in text  # the media core's registry is served too


async def test_revoked_key_stops_working_at_once(plane: Plane) -> None:
    _, admin = await plane.customer()
    c = plane.client
    r = await c.post("/v1.0/accesskeys", json={"name": "temp", "role": "agent_user"}, headers=admin)
    key = await r.get_json()
    temp = {"Authorization": f"AccessKey {key['token']}"}
    assert "token_hash" not in key
    assert (await c.get("/v1.0/calls", headers=temp)).status_code == 200  # now cached
    assert (await c.get("/v1.0/calls", headers=temp)).status_code == 200
    assert (await c.delete(f"/v1.0/accesskeys/{key['id']}", headers=admin)).status_code == 200
    assert (await c.get("/v1.0/calls", headers=temp)).status_code == 401
    r = await c.post("/v1.0/accesskeys", json={"name": "t", "expire_s": 5}, headers=admin)
    assert r.status_code == 400  # below the 60 s minimum


async def test_default_agent_moves_and_routes_are_unique(plane: Plane) -> None:
    _, auth = await plane.customer()
    c = plane.client
    uuid_route = {"audiosocket_uuids": [str(uuid.uuid4())]}
    first = await (
        await c.post(
            "/v1.0/agents", json={**AGENT, "is_default": True, "routes": uuid_route}, headers=auth
        )
    ).get_json()
    assert (await (await c.get(f"/v1.0/agents/{first['id']}", headers=auth)).get_json())[
        "is_default"
    ]  # read once: cached where Redis is configured
    second = await (await c.post("/v1.0/agents", json=AGENT, headers=auth)).get_json()
    r = await c.put(
        f"/v1.0/agents/{second['id']}", json={**AGENT, "is_default": True}, headers=auth
    )
    assert (await r.get_json())["is_default"] is True
    got = await (await c.get(f"/v1.0/agents/{first['id']}", headers=auth)).get_json()
    assert got["is_default"] is False  # the cached copy was invalidated too
    r = await c.put(
        f"/v1.0/agents/{second['id']}", json={**AGENT, "routes": uuid_route}, headers=auth
    )
    assert r.status_code == 409 and (await r.get_json())["fields"][0]["field"] == "routes"
    got = await (await c.get(f"/v1.0/agents/{second['id']}", headers=auth)).get_json()
    assert got["is_default"] is True  # the refused write changed nothing
