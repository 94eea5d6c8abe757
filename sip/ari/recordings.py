"""Recordings that Asterisk makes (``POST /bridges/{id}/record``), stored beside the media
core's own: ``<--record-dir>/<call id>.asterisk.wav`` for a call's bridge (the whole call, the
part after a transfer included, which the media core never hears), and
``conference-<id>.asterisk.wav`` for a conference bridge.

Asterisk writes the file in its own spool; when it reports the recording finished (the bridge
went, or the recording was stopped), a worker fetches it over ARI, writes it to the record
directory and deletes Asterisk's copy, so nothing piles up on the Asterisk host.

Asterisk does not always report it: when a call's bridge is destroyed, ``RecordingFinished`` came
after ``BridgeDestroyed`` in most runs and not at all in about one in four (the app's
subscription to the bridge goes with it; real Asterisk, ``tests/sip/test_ari_conference.py``).
So a recording whose bridge is gone and which is not reported finished within
:data:`FINISH_GRACE_S` is fetched anyway, retried while Asterisk may still be closing the file.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from sip.ari import requests as rq
from sip.ari.client import AriUnavailable
from sip.ari.events import RecordingEvent

if TYPE_CHECKING:
    from sip.ari.app import AriApp

log = logging.getLogger(__name__)

SUFFIX = ".asterisk.wav"
FINISH_GRACE_S = 2.0
"""How long after its bridge went a recording may still be reported finished."""
FETCH_TRIES = 5
FETCH_RETRY_S = 1.0


class AriRecordings:
    def __init__(self, app: AriApp) -> None:
        self.app = app
        self.active: dict[str, Path] = {}  # recording name -> where it will be stored
        self.by_bridge: dict[str, str] = {}  # bridge id -> its active recording's name
        self.stored: list[Path] = []

    def start(self, bridge_id: str, name: str) -> None:
        record_dir = self.app.cfg.record_dir
        if not record_dir:
            return
        self.active[name] = Path(record_dir) / f"{name}{SUFFIX}"
        self.by_bridge[bridge_id] = name
        self.app.request("record bridge", rq.record_bridge(bridge_id, name))

    def on_bridge_destroyed(self, bridge_id: str) -> None:
        """The bridge went: its recording ends, reported or not (see the module docstring)."""
        name = self.by_bridge.pop(bridge_id, None)
        if name is not None and name in self.active:
            self.app.after(FINISH_GRACE_S, "fetch unreported recording", lambda: self._claim(name))

    async def _claim(self, name: str) -> None:
        path = self.active.pop(name, None)
        if path is not None:  # not reported meanwhile (on_event fetches what is)
            await self._fetch_unreported(name, path, FETCH_TRIES)

    async def _fetch_unreported(self, name: str, path: Path, tries: int) -> None:
        try:
            await self._fetch(name, path)
        except (rq.AriRequestError, AriUnavailable) as exc:
            if tries > 1:  # Asterisk may still be closing the file
                retry = partial(self._fetch_unreported, name, path, tries - 1)
                self.app.after(FETCH_RETRY_S, "fetch unreported recording", retry)
                return
            log.warning(
                "asterisk recording not fetched", extra={"recording": name, "error": str(exc)}
            )

    def on_event(self, event: RecordingEvent) -> None:
        name = event.recording.name
        path = self.active.get(name)
        if path is None or event.type == "RecordingStarted":
            return
        del self.active[name]
        self.by_bridge = {b: n for b, n in self.by_bridge.items() if n != name}
        if event.type == "RecordingFailed":
            log.warning(
                "asterisk recording failed",
                extra={"recording": name, "cause": event.recording.cause},
            )
            return
        self.app.submit("fetch recording", lambda: self._fetch(name, path))

    async def _fetch(self, name: str, path: Path) -> None:
        data = await self.app.client.call(rq.stored_recording_file(name))
        await trio.to_thread.run_sync(_write, path, data)
        self.stored.append(path)
        log.info("asterisk recording stored", extra={"recording": name, "path": str(path)})
        await self.app.client.call(rq.delete_stored_recording(name))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)  # a reader never sees half a file
