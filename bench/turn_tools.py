"""``bench turn``'s tool calls, made to succeed through the real control plane.

The offline agent's tool call is ``transfer_call`` ("I have a question about my bill" -> billing).
Over AudioSocket, the leg the turn bench calls on, a leg transfer cannot succeed (the PBX
transfers, by ARI): the control plane answers ``leg_cannot_transfer``, and timing that times an
error reply. So the bench's agent gets ``transfer_call`` as a **webhook tool** (an integrator's
own transfer service, a real configuration), answered by :class:`ToolReceiver` on loopback: the
agent's ``FunctionCall`` goes agent -> media core -> control plane -> signed HTTP POST ->
receiver, and the successful answer back the same way. The turn agent times that round trip on
the agent link (``tool_calls`` in its record); the bench reports it labelled so.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ai_pipeline.tools import BUILTIN_TOOLS, TRANSFER_CALL

TOOL_PATH = "/transfer"


class ToolReceiver:
    """A loopback HTTP endpoint answering every tool POST with success; keeps what it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.requests.append(body)
                department = body.get("arguments", {}).get("department", "")
                answer = json.dumps({"status": "transferring", "target": department}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the bench prints its own report

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{TOOL_PATH}"

    @contextlib.contextmanager
    def running(self) -> Iterator[ToolReceiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


def make_default_agent(
    http_port: int, access_key: str, tool_url: str, extra: dict[str, Any] | None = None
) -> str:
    """Create the default agent, its ``transfer_call`` a webhook tool at ``tool_url`` (and the
    API fields in ``extra``); its id."""
    builtin = BUILTIN_TOOLS[TRANSFER_CALL]  # the same schema as the built-in, for the LLM
    body = {
        **(extra or {}),
        "name": "turn-bench",
        "is_default": True,
        "tools": [
            {
                "name": TRANSFER_CALL,
                "type": "webhook",
                "url": tool_url,
                "description": builtin.description,
                "parameters": {
                    "type": "object",
                    "properties": dict(builtin.properties),
                    "required": list(builtin.required),
                },
            },
            "end_call",
        ],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1.0/agents",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"AccessKey {access_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        created: dict[str, Any] = json.loads(resp.read())
    return str(created["id"])


def tool_round_trips(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The turn agent's tool calls of one call, each with its round trip in ms."""
    return [
        {
            "name": call["name"],
            "is_error": call["is_error"],
            "round_trip_ms": (call["answered"] - call["sent"]) * 1000,
        }
        for call in record.get("tool_calls", [])
        if call.get("answered") is not None
    ]
