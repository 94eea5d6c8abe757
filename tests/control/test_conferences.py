"""Conference rules through the REST API and the bridges (control/conferences.py), with the
media core's calls stood in by FakeCall (which joins the real media bridge): limits, moderator,
bad input, a participant whose call ends. The audio itself: tests/e2e/test_conference.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from control.conferences import ConferenceError, Conferences
from media.hooks import CallInfo
from media.message_socket import memory_socket_pair
from tests.control.conftest import FakeCall, Plane, open_plane_for


async def live_calls(plane: Plane, n: int) -> tuple[str, dict[str, str], list[FakeCall]]:
    """A customer with a default agent and ``n`` live calls of it."""
    cid, auth = await plane.customer()
    await plane.services.store.insert(
        "agents", {"customer_id": cid, "name": "a", "is_default": 1, "detail": {}}
    )
    calls = []
    for _ in range(n):
        call = FakeCall(str(uuid.uuid4()))
        await plane.hooks.call_created(CallInfo(call.call_id, "sip", params={"customer_id": cid}))
        plane.calls.add(call)
        calls.append(call)
    return cid, auth, calls


async def post(plane: Plane, auth: dict[str, str], path: str, body: Any) -> tuple[int, Any]:
    r = await plane.client.post(path, json=body, headers=auth)
    return r.status_code, await r.get_json()


async def until(condition: Any, what: str) -> None:
    with trio.fail_after(5):
        while not await condition():
            await trio.sleep(0.02)


async def test_limits_and_bad_input(plane: Plane) -> None:
    _, auth, (a, b, c) = await live_calls(plane, 3)
    _, stranger_auth, (stranger,) = await live_calls(plane, 1)
    _, conf = await post(plane, auth, "/v1.0/conferences", {"name": "r", "max_participants": 2})
    _, other = await post(plane, auth, "/v1.0/conferences", {"name": "o"})
    parts = f"/v1.0/conferences/{conf['id']}/participants"
    for call in (a, b):
        status, _ = await post(plane, auth, parts, {"call_id": call.call_id})
        assert status == 201
    assert [x[0] for x in a.actions] == ["join_bridge"]
    status, body = await post(plane, auth, parts, {"call_id": c.call_id})
    assert (status, body["error"]) == (409, "conference_full")
    assert c.bridge is None and not c.actions  # nothing half done
    status, body = await post(
        plane, auth, f"/v1.0/conferences/{other['id']}/participants", {"call_id": a.call_id}
    )
    assert (status, body["error"]) == (409, "call_in_bridge")
    status, _ = await post(plane, auth, parts, {"call_id": stranger.call_id})
    assert status == 404  # another customer's call is not found
    status, _ = await post(plane, stranger_auth, parts, {"call_id": stranger.call_id})
    assert status == 404  # nor is another customer's conference
    status, body = await post(plane, auth, parts, {"call_id": c.call_id, "talk_volume_pct": 900})
    assert status == 400
    await plane.client.delete(f"/v1.0/conferences/{other['id']}", headers=auth)
    status, body = await post(
        plane, auth, f"/v1.0/conferences/{other['id']}/participants", {"call_id": c.call_id}
    )
    assert (status, body["error"]) == (409, "conference_ended")
    rows = await plane.services.store.find("participants", conference_id=conf["id"])
    assert len(rows) == 2  # the refused adds left no row


class FakeAsterisk:
    """Asterisk's mixing (sip/ari/conference.py) as the conferences service sees it."""

    def __init__(self) -> None:
        self.joined: list[tuple[str, str]] = []
        self.ended: list[str] = []

    async def join(self, call_id: str, conference_id: str) -> str:
        self.joined.append((call_id, conference_id))
        return f"cbc-{conference_id}"

    async def end(self, conference_id: str) -> None:
        self.ended.append(conference_id)


async def test_an_asterisk_mixed_conference_takes_asterisk_calls_only(plane: Plane) -> None:
    _, auth, (sip_call, ari_call) = await live_calls(plane, 2)
    ari_call.leg = "asterisk"
    body = {"name": "a", "mixer": "asterisk"}
    _, conf = await post(plane, auth, "/v1.0/conferences", body)
    parts = f"/v1.0/conferences/{conf['id']}/participants"
    status, got = await post(plane, auth, parts, {"call_id": ari_call.call_id})
    assert (status, got["error"]) == (422, "no_asterisk")  # serve without --ari
    assert plane.services.conferences is not None
    plane.services.conferences.asterisk = asterisk = FakeAsterisk()
    status, got = await post(plane, auth, parts, {"call_id": sip_call.call_id})
    assert (status, got["error"]) == (422, "not_an_asterisk_call"), got
    assert "Asterisk calls only" in got["message"] and not sip_call.actions
    status, joined = await post(plane, auth, parts, {"call_id": ari_call.call_id})
    assert status == 201 and asterisk.joined == [(ari_call.call_id, conf["id"])]
    assert not ari_call.actions  # Asterisk mixes it: the media core's bridge is not involved
    r = await plane.client.patch(f"{parts}/{joined['id']}", json={"mute_send": True}, headers=auth)
    assert (r.status_code, (await r.get_json())["error"]) == (422, "mixed_by_asterisk")
    await plane.client.delete(f"/v1.0/conferences/{conf['id']}", headers=auth)
    rows = await plane.services.store.find("participants", conference_id=conf["id"])
    assert asterisk.ended == [conf["id"]] and [row["status"] for row in rows] == ["left"]
    status, _ = await post(plane, auth, "/v1.0/conferences", {"name": "b", "mixer": "x"})
    assert status == 400


async def test_an_asterisk_member_who_hangs_up_has_left(plane: Plane) -> None:
    cid, auth, calls = await live_calls(plane, 2)
    for call in calls:
        call.leg = "asterisk"
    _, conf = await post(plane, auth, "/v1.0/conferences", {"name": "a", "mixer": "asterisk"})
    parts = f"/v1.0/conferences/{conf['id']}/participants"
    assert plane.services.conferences is not None
    plane.services.conferences.asterisk = FakeAsterisk()
    for call in calls:
        await post(plane, auth, parts, {"call_id": call.call_id})
    # what sip/ari/conference.py reports when the first caller hangs up in Asterisk's bridge
    await plane.services.conferences.asterisk_member_left(conf["id"], calls[0].call_id)
    store = plane.services.store
    rows = {r["call_id"]: r["status"] for r in await store.find("participants")}
    assert rows == {calls[0].call_id: "left", calls[1].call_id: "joined"}
    events = await store.find("events", customer_id=cid, type="conference_participant_removed")
    assert len(events) == 1 and calls[0].call_id in str(events[0])


async def test_an_asterisk_mixed_conference_is_asterisks_after_a_restart(plane: Plane) -> None:
    """Which conferences Asterisk mixes is the stored ``mixer``: a restarted serve (a new
    conferences service on the same storage) still sends their calls there, refuses their
    per-participant controls, counts their seats and hangs their members up at the end."""
    _, auth, (a, b, c) = await live_calls(plane, 3)
    for call in (a, b, c):
        call.leg = "asterisk"
    body = {"name": "a", "mixer": "asterisk", "max_participants": 2}
    _, conf = await post(plane, auth, "/v1.0/conferences", body)
    assert plane.services.conferences is not None
    plane.services.conferences.asterisk = FakeAsterisk()
    _, joined = await post(
        plane, auth, f"/v1.0/conferences/{conf['id']}/participants", {"call_id": a.call_id}
    )
    store = plane.services.store
    restarted = Conferences(store, plane.services.bus, plane.calls)
    restarted.asterisk = asterisk = FakeAsterisk()
    row = await store.get("conferences", conf["id"], None)
    assert row is not None
    await restarted.add_call(row, b.call_id)
    assert asterisk.joined == [(b.call_id, conf["id"])] and not b.actions
    with pytest.raises(ConferenceError, match="full"):  # the seats counted from the rows
        await restarted.add_call(row, c.call_id)
    with pytest.raises(ConferenceError, match="no per-participant controls"):
        await restarted.update(joined, mute_send=True)
    with pytest.raises(ConferenceError, match="no per-participant controls"):
        await restarted.remove(joined)
    await restarted.end(conf["id"])
    assert asterisk.ended == [conf["id"]]
    rows = await store.find("participants", conference_id=conf["id"])
    assert [r["status"] for r in rows] == ["left", "left"]


async def test_a_participant_whose_call_ends_has_left(plane: Plane) -> None:
    _, auth, (a, b) = await live_calls(plane, 2)
    _, conf = await post(plane, auth, "/v1.0/conferences", {"name": "r"})
    parts = f"/v1.0/conferences/{conf['id']}/participants"
    for call in (a, b):
        await post(plane, auth, parts, {"call_id": call.call_id})
    a.bridge.leave(a.call_id)  # what the media core's Call does when its leg hangs up
    store = plane.services.store

    async def a_left() -> bool:
        (row,) = await store.find("participants", call_id=a.call_id)
        return bool(row["status"] == "left")

    await until(a_left, "a's row marked left")
    listing = await (await plane.client.get(parts, headers=auth)).get_json()
    states = {p["call_id"]: p["status"] for p in listing["result"]}
    assert states == {a.call_id: "left", b.call_id: "joined"}
    assert b.bridge is not None  # the other one goes on


async def test_the_conference_ends_when_its_moderator_leaves(plane: Plane) -> None:
    cid, auth, (mod, guest) = await live_calls(plane, 2)
    _, conf = await post(plane, auth, "/v1.0/conferences", {"name": "r", "on_leave": "hangup"})
    parts = f"/v1.0/conferences/{conf['id']}/participants"
    _, mod_part = await post(plane, auth, parts, {"call_id": mod.call_id, "moderator": True})
    await post(plane, auth, parts, {"call_id": guest.call_id})
    r = await plane.client.delete(f"{parts}/{mod_part['id']}?then=agent", headers=auth)
    assert r.status_code == 200
    assert ("leave_bridge", "agent") in mod.actions  # ?then= overrides on_leave

    async def ended() -> bool:  # its event is the last thing written
        events = await plane.services.store.find("events", customer_id=cid, type="conference_ended")
        return len(events) == 1

    await until(ended, "the conference ended")
    row = await plane.services.store.get("conferences", conf["id"], cid)
    assert row is not None and row["status"] == "ended"
    assert ("leave_bridge", "hangup") in guest.actions  # on_leave for everyone else
    (guest_row,) = await plane.services.store.find("participants", call_id=guest.call_id)
    assert guest_row["status"] == "left"


async def test_a_conferences_recordings_are_listed_and_downloadable(tmp_path: Path) -> None:
    """With serve recording (--record-dir), a conference's mix is listed with its duration and
    downloads as a WAV; another customer finds neither."""
    (tmp_path / "rec").mkdir()
    async with await open_plane_for("sqlite", tmp_path, record_dir=str(tmp_path / "rec")) as plane:
        _, auth, (a, b) = await live_calls(plane, 2)
        _, stranger_auth, _ = await live_calls(plane, 0)
        _, conf = await post(plane, auth, "/v1.0/conferences", {"name": "r"})
        listing = f"/v1.0/conferences/{conf['id']}/recordings"
        r = await plane.client.get(listing, headers=auth)
        assert (r.status_code, (await r.get_json())["result"]) == (200, [])  # nobody in yet
        for call in (a, b):
            await post(
                plane,
                auth,
                f"/v1.0/conferences/{conf['id']}/participants",
                {"call_id": call.call_id},
            )

        async def recorded() -> bool:
            r = await plane.client.get(listing, headers=auth)
            found = (await r.get_json())["result"]
            return bool(found) and found[0]["duration_ms"] > 0

        await until(recorded, "the mix on disk")
        await plane.client.delete(f"/v1.0/conferences/{conf['id']}", headers=auth)
        r = await plane.client.get(listing, headers=auth)
        (item,) = (await r.get_json())["result"]
        assert item["conference_id"] == conf["id"] and item["status"] == "done"
        assert (item["format"], item["sample_rate_hz"], item["channels"]) == ("wav", 16000, 1)
        r = await plane.client.get(item["url"], headers=auth)
        wav = await r.get_data()
        assert r.status_code == 200 and r.content_type == "audio/wav"
        assert wav[:4] == b"RIFF" and len(wav) >= item["size_bytes"]
        for path in (listing, item["url"]):
            r = await plane.client.get(path, headers=stranger_auth)
            assert r.status_code == 404  # another customer's conference: not found


async def test_conference_commands_from_another_node_are_checked(plane: Plane) -> None:
    """A conference command crossed a process boundary (control/conference_links.py): bad
    ones answer 400/404/409 as the holder would, a full conference counts seats promised to
    other nodes' calls, and a link with a ticket nobody minted (or minted twice) is refused."""
    conferences = plane.services.conferences
    assert conferences is not None
    cid, auth, (a, b) = await live_calls(plane, 2)
    _, conf = await post(plane, auth, "/v1.0/conferences", {"name": "x", "max_participants": 2})
    assert (await conferences.execute(conf["id"], "reboot", {})).status == 400
    assert (
        await conferences.execute(a.call_id, "add", {"conference_id": conf["id"]})
    ).status == 400
    unknown = await conferences.execute(str(uuid.uuid4()), "admit", {"call_id": a.call_id})
    assert unknown.status == 400  # (no participant id)
    seat = await plane.services.store.insert(
        "participants",
        {"customer_id": cid, "conference_id": conf["id"], "call_id": "far-1", "status": "joined"},
    )
    args = {"call_id": "far-1", "participant_id": seat["id"]}
    first = await conferences.execute(conf["id"], "admit", args)
    assert first.status == 200 and "/v1.0/conference-links?ticket=" in first.body["url"]
    status, _ = await post(
        plane, auth, f"/v1.0/conferences/{conf['id']}/participants", {"call_id": a.call_id}
    )
    assert status == 201  # one local call and one promised seat: full
    full = await conferences.execute(conf["id"], "admit", {**args, "call_id": "far-2"})
    assert (full.status, full.body["code"]) == (409, "conference_full")

    ticket = first.body["url"].split("ticket=")[1]
    holder_end, far_end = memory_socket_pair()
    await conferences.serve_link("not-a-ticket", holder_end)
    assert far_end.close_code == 4401
    bridge = conferences._live[conf["id"]].bridge
    holder_end, far_end = memory_socket_pair()
    async with trio.open_nursery() as nursery:  # the minted one: a participant while linked
        nursery.start_soon(conferences.serve_link, ticket, holder_end)

        async def linked() -> bool:
            return "far-1" in bridge.participants

        await until(linked, "the linked call in the bridge")
        await far_end.close()
    assert "far-1" not in bridge.participants
    holder_end, far_end = memory_socket_pair()
    await conferences.serve_link(ticket, holder_end)  # used up
    assert far_end.close_code == 4401 and b.bridge is None
