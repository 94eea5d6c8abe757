"""A throwaway AudioSocket echo server for the bench smoke tests (not callbridge's media core).

Run as ``python tests/bench/echo_server.py PORT``: every 8 kHz audio frame is sent straight back,
so the load generator and the capacity bench can be tested before and apart from ``serve``.
"""

from __future__ import annotations

import sys

import trio

from media.audiosocket import Audio, AudioSocketConnection, Hangup, Kind, NeedData, encode_frame


async def echo(stream: trio.SocketStream) -> None:
    conn = AudioSocketConnection()
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            conn.receive_data(data)
            while not isinstance(event := conn.next_event(), NeedData):
                if isinstance(event, Hangup):
                    return
                if isinstance(event, Audio):
                    try:
                        await stream.send_all(encode_frame(Kind.SLIN, event.pcm16))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return


async def main(port: int) -> None:
    await trio.serve_tcp(echo, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
