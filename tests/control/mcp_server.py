"""A real MCP server for the tests, written with the official ``mcp`` SDK (``MCPServer``).

``python tests/control/mcp_server.py stdio`` serves over stdin/stdout; ``... http PORT`` serves
streamable HTTP on 127.0.0.1:PORT at ``/mcp`` (``... http PORT TOKEN``: only to requests with
``Authorization: Bearer TOKEN``, others get 401; ``... http PORT oauth CLIENT_ID:SECRET``: only
with a token this process issued at ``/token`` by a client-credentials grant, HTTP Basic client
authentication; ``POST /revoke`` revokes them all); ``... garbage`` answers stdin with lines that
are not JSON-RPC. Tools: ``add`` (a result), ``lookup_order`` (structured text), ``pid`` (the
process id), ``open_ticket`` (a pydantic model argument: a schema with ``$defs``), ``hang`` (never
answers), ``crash`` (the process dies mid-call), ``garble`` (writes a line that is not JSON-RPC
instead of its answer), ``fail`` (a tool error).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
import urllib.parse
from typing import Any

import uvicorn
from mcp.server import stdio as mcp_stdio
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

server = MCPServer("callbridge-test")


@server.tool(description="Add two integers")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Look up an order's status by its number")
def lookup_order(order_number: str) -> str:
    return f"order {order_number} shipped on Monday"


class Address(BaseModel):
    street: str
    city: str


class Customer(BaseModel):
    name: str
    address: Address


@server.tool(description="Open a support ticket for a customer")
def open_ticket(customer: Customer, priority: int = 1) -> dict[str, str]:
    return {"ticket": f"T-{priority}", "for": f"{customer.name} in {customer.address.city}"}


@server.tool(description="Answers with a line that is not JSON-RPC")
def garble() -> str:
    # The SDK moves fd 1 aside while it serves (prints must not corrupt the wire): write where
    # its answers go, which it keeps in its stream claim for fd 1.
    wire = mcp_stdio._claims[1].private_fd
    os.write(wire if wire is not None else 1, b"}}} this is not JSON-RPC {{{\n")
    time.sleep(3600)
    return "late"


@server.tool(description="This server process's id")
def pid() -> int:
    return os.getpid()


@server.tool(description="Never answers")
def hang() -> str:
    time.sleep(3600)
    return "late"


@server.tool(description="Dies in the middle of the call")
def crash() -> str:
    os._exit(3)


@server.tool(description="Always fails")
def fail() -> str:
    raise ValueError("the order system is down")


async def _answer(send: Any, status: int, body: dict[str, Any] | None = None) -> None:
    headers = [(b"content-type", b"application/json")] if body is not None else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode() if body else b""})


def with_token(app: Any, token: str) -> Any:
    """The ASGI app, behind a bearer token."""
    return with_tokens(app, {token}, {})


def with_tokens(app: Any, tokens: set[str], endpoints: dict[str, Any]) -> Any:
    """The ASGI app, only to a bearer of one of ``tokens``; ``endpoints`` (path: ASGI) first."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in endpoints:
            await endpoints[scope["path"]](scope, receive, send)
            return
        bearer = dict(scope.get("headers", [])).get(b"authorization", b"").decode()
        if scope["type"] == "http" and bearer.removeprefix("Bearer ") not in tokens:
            await _answer(send, 401, {"error": "invalid_token"})
            return
        await app(scope, receive, send)

    return guarded


def with_oauth(app: Any, client: str) -> Any:
    """The ASGI app behind tokens from a client-credentials grant to ``client`` (ID:SECRET)."""
    issued: set[str] = set()
    basic = b"Basic " + base64.b64encode(client.encode())

    async def token(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = urllib.parse.parse_qs(body.decode())
        if dict(scope["headers"]).get(b"authorization") != basic:
            await _answer(send, 401, {"error": "invalid_client"})
        elif form.get("grant_type") != ["client_credentials"]:
            await _answer(send, 400, {"error": "unsupported_grant_type"})
        else:
            issued.add(value := f"tok-{secrets.token_hex(16)}")
            answer = {"access_token": value, "token_type": "Bearer", "expires_in": 3600}
            await _answer(send, 200, answer)

    async def revoke(scope: Any, receive: Any, send: Any) -> None:
        issued.clear()
        await _answer(send, 200, {})

    return with_tokens(app, issued, {"/token": token, "/revoke": revoke})


def main() -> None:
    mode = sys.argv[1]
    if mode == "garbage":
        for _line in sys.stdin:
            sys.stdout.write("this is not JSON-RPC\n")
            sys.stdout.flush()
    elif mode == "http" and len(sys.argv) > 4 and sys.argv[3] == "oauth":
        app = with_oauth(server.streamable_http_app(), sys.argv[4])
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    elif mode == "http" and len(sys.argv) > 3:
        app = with_token(server.streamable_http_app(), sys.argv[3])
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    elif mode == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
