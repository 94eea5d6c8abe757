"""Client-to-server WebSocket binary frames for the agent link's audio, built directly.

RFC 6455 section 5.2: FIN + opcode 0x2, the MASK bit and a 7-bit, 16-bit or 64-bit payload
length, a 4-byte masking key, then the payload XORed with it. Section 5.3 requires the key to
come from a strong source of entropy; here keys are cut from ``os.urandom`` fetched 4 KiB at a
time (one syscall per 1024 frames instead of one per frame, as ``websockets`` does through
``secrets.token_bytes``). The XOR is ``websockets``' own C ``apply_mask``.

Only whole, unfragmented binary messages are built here; everything else (handshake, pings,
close, fragmentation) stays with ``websockets``' ``ClientProtocol``, whose state is unaffected
by complete data frames written beside it.
"""

from __future__ import annotations

import os
import struct

from websockets.speedups import apply_mask

_FIN_BINARY = 0x82
_MASK_BIT = 0x80
_KEY_POOL_BYTES = 4096


class BinaryFramer:
    def __init__(self) -> None:
        self._keys = b""
        self._at = 0

    def _key(self) -> bytes:
        if self._at >= len(self._keys):
            self._keys, self._at = os.urandom(_KEY_POOL_BYTES), 0
        key = self._keys[self._at : self._at + 4]
        self._at += 4
        return key

    def frame(self, payload: bytes) -> bytes:
        """One masked, final binary frame carrying ``payload``."""
        n = len(payload)
        if n < 126:
            head = bytes((_FIN_BINARY, _MASK_BIT | n))
        elif n < 1 << 16:
            head = struct.pack("!BBH", _FIN_BINARY, _MASK_BIT | 126, n)
        else:
            head = struct.pack("!BBQ", _FIN_BINARY, _MASK_BIT | 127, n)
        key = self._key()
        return b"".join((head, key, apply_mask(payload, key)))
