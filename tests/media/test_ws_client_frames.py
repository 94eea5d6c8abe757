"""The agent link's directly built frames are what a WebSocket server reads, masked afresh."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from media.ws_client_frames import BinaryFramer


def open_server() -> ServerProtocol:
    client, server = ClientProtocol(parse_uri("ws://agent/")), ServerProtocol(max_size=None)
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    server.send_response(server.accept(server.events_received()[0]))
    return server


@pytest.mark.parametrize("n_bytes", [0, 1, 125, 126, 127, 655, 65535, 65536, 70000])
def test_server_reads_each_length(n_bytes: int) -> None:
    server = open_server()
    payload = bytes(i % 251 for i in range(n_bytes))
    server.receive_data(BinaryFramer().frame(payload))
    (event,) = server.events_received()
    assert isinstance(event, Frame) and event.opcode is Opcode.BINARY and event.fin
    assert bytes(event.data) == payload


def test_keys_vary_and_survive_the_pool_refill() -> None:
    server, framer = open_server(), BinaryFramer()
    keys = set()
    for i in range(1500):  # past one 4 KiB pool of keys
        data = framer.frame(i.to_bytes(2, "big"))
        keys.add(data[2:6])
        server.receive_data(data)
    frames = server.events_received()
    assert [int.from_bytes(bytes(f.data), "big") for f in frames] == list(range(1500))
    assert len(keys) > 1400  # random 32-bit keys: collisions are rare
