"""The hooks under a storage outage and with no agent to run: calls are refused cleanly or go on,
the media core never sees a storage exception."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from conftest import AGENT_TOOLS, FakeCall, Plane

from control.db import DatabaseError
from media.hooks import CallInfo, CallRejected


class BrokenDb:
    """A database whose server went away: every operation fails like the real backends do."""

    dialect = "sqlite"
    prefix = ""

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise DatabaseError("connection lost")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise DatabaseError("connection lost")

    async def transaction(self, statements: Sequence[Any]) -> list[int]:
        raise DatabaseError("connection lost")


async def test_no_agent_refuses_the_call(plane: Plane) -> None:
    await plane.services.db.execute("UPDATE {p}agents SET tm_delete = ?", ["x"])
    with pytest.raises(CallRejected, match="no agent"):
        await plane.hooks.call_created(CallInfo(str(uuid.uuid4()), "audiosocket", "unknown"))


async def test_storage_outage(plane: Plane) -> None:
    cid, _ = await plane.customer()
    agent = await plane.services.store.insert(
        "agents", {"customer_id": cid, "name": "a", "is_default": 0, "detail": AGENT_TOOLS}
    )
    await plane.services.store.insert(
        "agent_routes",
        {"customer_id": cid, "agent_id": agent["id"], "kind": "number", "value": "+15550101010"},
    )
    live = FakeCall(str(uuid.uuid4()))
    await plane.hooks.call_created(CallInfo(live.call_id, "sip", callee="+15550101010"))

    store = plane.hooks.store
    real_db, store.db = store.db, BrokenDb()  # type: ignore[assignment]
    try:
        with pytest.raises(CallRejected, match="storage unavailable"):
            await plane.hooks.call_created(CallInfo(str(uuid.uuid4()), "audiosocket"))
        await plane.hooks.call_answered(live)  # logged, not raised
        await plane.hooks.transcript(live.call_id, "user", "hello", True)
        out = await plane.hooks.execute_tool(live, "end_call", {"reason": "bye"})
        assert not out.is_error and live.actions == [("hangup_after_playout", "bye")]
        out = await plane.hooks.execute_tool(live, "send_sms", {"to": "+15550001111", "text": "x"})
        assert out.is_error and out.result["error"] == "unavailable"
        await plane.hooks.call_hungup(live.call_id, "caller", "caller hung up")
    finally:
        store.db = real_db


async def test_api_answers_503_when_storage_is_down(plane: Plane) -> None:
    _, auth = await plane.customer()
    store = plane.services.store
    real_db, store.db = store.db, BrokenDb()  # type: ignore[assignment]
    try:
        r = await plane.client.get("/v1.0/calls", headers=auth)
        body = await r.get_json()
        assert r.status_code == 503 and body["error"] == "unavailable"
        assert r.headers["Retry-After"] == "1" and body["request_id"]
        assert (await plane.client.get("/health")).status_code == 200  # liveness unaffected
    finally:
        store.db = real_db


async def test_a_websocket_caller_picks_only_its_own_customers_agents(plane: Plane) -> None:
    """The media routes put the authenticated customer_id in the params; a client's agent_id
    (Twilio customParameters, AGENT_ID) then picks among that customer's agents only."""
    mine, _ = await plane.customer()
    theirs, _ = await plane.customer()
    store = plane.services.store
    agents = {}
    for cid in (mine, theirs):
        agents[cid] = await store.insert(
            "agents", {"customer_id": cid, "name": "a", "is_default": 1, "detail": AGENT_TOOLS}
        )

    def info(**params: str) -> CallInfo:
        return CallInfo(str(uuid.uuid4()), "twilio", "MZ1", params={"customer_id": mine, **params})

    assert (await plane.hooks.call_created(info())).agent_id == agents[mine]["id"]
    picked = await plane.hooks.call_created(info(agent_id=agents[mine]["id"]))
    assert picked.agent_id == agents[mine]["id"] and picked.customer_id == mine
    with pytest.raises(CallRejected, match="no agent"):
        await plane.hooks.call_created(info(agent_id=agents[theirs]["id"]))
    with pytest.raises(CallRejected, match="no agent"):
        await plane.hooks.call_created(info(AGENT_ID=str(uuid.uuid4())))
