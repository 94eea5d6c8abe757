"""Firefox driven over its own Marionette protocol, the one geckodriver speaks to it: geckodriver
is not a Debian package, and a PyPI/npm copy is either a download at install time or a stale
third-party binary, so the page's Firefox test talks to ``firefox-esr --marionette`` directly.

Wire format (Marionette protocol level 3, Firefox source docs: testing/marionette/Protocol):
every message is ``<decimal byte length>:<JSON>``; Firefox greets with
``{"applicationType": "gecko", "marionetteProtocol": 3}``; a command is ``[0, id, name, params]``
and its answer ``[1, id, error, result]``, where ``error`` is null or ``{"error", "message",
"stacktrace"}``. Command names and parameters are WebDriver's, prefixed ``WebDriver:``."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import end_process

# WebDriver's key for an element reference in JSON (W3C WebDriver, "Elements").
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a full-page screenshot is a few MB of base64


class MarionetteError(Exception):
    """Firefox answered a command with an error (``error`` is WebDriver's error code)."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        super().__init__(f"{command}: {error.get('error')}: {error.get('message')}")
        self.error = str(error.get("error"))


class Marionette:
    """One blocking connection; commands run one at a time, each answered before the next."""

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self.sock = sock
        self.sock.settimeout(timeout_s)
        self.buffer = b""
        self.ids = itertools.count(1)
        greeting = self._receive()
        if not isinstance(greeting, dict) or greeting.get("marionetteProtocol") != 3:
            raise MarionetteError("greeting", {"error": "unsupported", "message": str(greeting)})

    @classmethod
    def connect(cls, profile: Path, timeout_s: float = 60) -> Marionette:
        """Connect once Firefox listens: with ``marionette.port`` 0 it picks a free port and
        writes it to ``MarionetteActivePort`` in its profile, a few seconds after it starts."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                port = int((profile / "MarionetteActivePort").read_text())
                return cls(socket.create_connection(("127.0.0.1", port), timeout=5), timeout_s)
            except (OSError, ValueError):  # no file yet, or half written, or not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _receive(self) -> Any:
        while b":" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b":")
        length = int(head)
        if length > MAX_MESSAGE_BYTES:
            raise ValueError(f"Marionette message of {length} bytes")
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return json.loads(body)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Firefox closed the Marionette connection")
        self.buffer += chunk

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        msg_id = next(self.ids)
        body = json.dumps([0, msg_id, name, params or {}]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            kind, answer_id, error, result = self._receive()
            if kind == 1 and answer_id == msg_id:
                break
        if error is not None:
            raise MarionetteError(name, error)
        return result

    def new_session(self) -> None:
        self.command("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {}}})

    def set_window_size(self, width: int, height: int) -> None:
        self.command("WebDriver:SetWindowRect", {"width": width, "height": height})

    def navigate(self, url: str) -> None:
        self.command("WebDriver:Navigate", {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        """``script`` is a function body, as in WebDriver's Execute Script; ``return`` a value."""
        return self.command("WebDriver:ExecuteScript", {"script": script, "args": list(args)})[
            "value"
        ]

    def find(self, css: str) -> str:
        found = self.command("WebDriver:FindElement", {"using": "css selector", "value": css})
        return str(found["value"][ELEMENT_KEY])

    def click(self, element: str) -> None:
        self.command("WebDriver:ElementClick", {"id": element})

    def screenshot(self, path: Path) -> None:
        shot = self.command("WebDriver:TakeScreenshot", {"full": False, "hash": False})
        path.write_bytes(base64.b64decode(shot["value"]))

    def close(self) -> None:
        self.sock.close()


@contextmanager
def firefox(binary: str, profile: Path, prefs: dict[str, object]) -> Iterator[Marionette]:
    """Headless Firefox on a fresh ``profile`` with ``prefs``, in a WebDriver session. Its
    output goes to ``firefox.log`` beside the profile: a pipe nobody reads would block it."""
    profile.mkdir()
    prefs = {"marionette.port": 0, **prefs}
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
    )
    with (profile.parent / "firefox.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "-headless", "-no-remote", "-profile", str(profile), "--marionette"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            marionette = Marionette.connect(profile)
        except (OSError, ValueError) as err:
            tail = (profile.parent / "firefox.log").read_text(errors="replace")[-2000:]
            raise ConnectionError(f"Firefox's Marionette never answered ({err}): {tail}") from err
        try:
            marionette.new_session()
            yield marionette
        finally:
            marionette.close()
    finally:
        end_process(proc, 15)
