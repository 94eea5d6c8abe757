"""Recordings that Asterisk makes (``POST /bridges/{id}/record``), stored beside the media
core's own: ``<--record-dir>/<call id>.asterisk.wav`` for a call's bridge (the whole call, the
part after a transfer included, which the media core never hears), and
``conference-<id>.asterisk.wav`` for a conference bridge.

Asterisk writes the file in its own spool; when it reports the recording finished (the bridge
went, or the recording was stopped), a worker fetches it over ARI, writes it to the record
directory and deletes Asterisk's copy, so nothing piles up on the Asterisk host.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from sip.ari import requests as rq
from sip.ari.events import RecordingEvent

if TYPE_CHECKING:
    from sip.ari.app import AriApp

log = logging.getLogger(__name__)

SUFFIX = ".asterisk.wav"


class AriRecordings:
    def __init__(self, app: AriApp) -> None:
        self.app = app
        self.active: dict[str, Path] = {}  # recording name -> where it will be stored
        self.stored: list[Path] = []

    def start(self, bridge_id: str, name: str) -> None:
        record_dir = self.app.cfg.record_dir
        if not record_dir:
            return
        self.active[name] = Path(record_dir) / f"{name}{SUFFIX}"
        self.app.request("record bridge", rq.record_bridge(bridge_id, name))

    def on_event(self, event: RecordingEvent) -> None:
        name = event.recording.name
        path = self.active.get(name)
        if path is None or event.type == "RecordingStarted":
            return
        del self.active[name]
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
