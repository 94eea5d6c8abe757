"""A bridge recording that Asterisk never reports finished is fetched anyway once its bridge is
gone (real Asterisk dropped ``RecordingFinished`` after ``BridgeDestroyed`` in about one call in
four); one that is reported is fetched once, not twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from sip.ari import recordings as recordings_module
from sip.ari import requests as rq
from sip.ari.events import Recording as AriRecording
from sip.ari.events import RecordingEvent
from sip.ari.recordings import AriRecordings

WAV = b"RIFF....WAVEfmt "


class StandInApp:
    """What AriRecordings uses of the app: its config, a job queue and the REST client. The
    stored file is there only from ``ready_after`` GETs on (Asterisk still closing it)."""

    def __init__(self, record_dir: Path, nursery: trio.Nursery, ready_after: int = 0) -> None:
        self.cfg = SimpleNamespace(record_dir=str(record_dir))
        self.client = self
        self.nursery = nursery
        self.ready_after = ready_after
        self.calls: list[tuple[str, str]] = []

    def request(self, what: str, req: rq.AriRequest) -> None:
        self.calls.append((req.method, req.path))

    def submit(self, what: str, job: Callable[[], Awaitable[Any]]) -> None:
        self.nursery.start_soon(job)

    def after(self, delay_s: float, what: str, job: Callable[[], Awaitable[Any]]) -> None:
        async def wait_then_run() -> None:
            await trio.sleep(delay_s)
            await job()

        self.nursery.start_soon(wait_then_run)

    async def call(self, req: rq.AriRequest) -> Any:
        self.calls.append((req.method, req.path))
        gets = sum(1 for m, p in self.calls if m == "GET" and p.endswith("/file"))
        if req.method == "GET" and gets <= self.ready_after:
            raise rq.AriRequestError(404, "Recording not found", req)
        return WAV if req.method == "GET" else None


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recordings_module, "FINISH_GRACE_S", 0.2)
    monkeypatch.setattr(recordings_module, "FETCH_RETRY_S", 0.05)


def _run(test: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await test(nursery)

    trio.run(main)


async def _stored(path: Path) -> bytes:
    stored = trio.Path(path)
    with trio.fail_after(10):
        while not await stored.exists():
            await trio.sleep(0.01)
    return await stored.read_bytes()


def test_an_unreported_recording_is_fetched_once_its_bridge_is_gone(tmp_path: Path) -> None:
    async def test(nursery: trio.Nursery) -> None:
        app = StandInApp(tmp_path, nursery, ready_after=2)
        recordings = AriRecordings(app)  # type: ignore[arg-type]
        recordings.start("bridge-1", "call-1")
        recordings.on_bridge_destroyed("bridge-1")
        assert await _stored(tmp_path / "call-1.asterisk.wav") == WAV
        await trio.sleep(0.1)  # the DELETE follows the write
        assert ("DELETE", "/recordings/stored/call-1") in app.calls
        assert recordings.active == {}

    _run(test)


def test_a_reported_recording_is_fetched_once(tmp_path: Path) -> None:
    async def test(nursery: trio.Nursery) -> None:
        app = StandInApp(tmp_path, nursery)
        recordings = AriRecordings(app)  # type: ignore[arg-type]
        recordings.start("bridge-1", "call-1")
        recordings.on_bridge_destroyed("bridge-1")
        recordings.on_event(RecordingEvent("RecordingFinished", AriRecording("call-1")))
        assert await _stored(tmp_path / "call-1.asterisk.wav") == WAV
        await trio.sleep(2 * recordings_module.FINISH_GRACE_S)  # past the unreported path's wait
        gets = [c for c in app.calls if c == ("GET", "/recordings/stored/call-1/file")]
        assert len(gets) == 1

    _run(test)
