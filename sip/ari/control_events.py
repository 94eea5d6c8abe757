"""ARI's view of a call as callbridge events (``call_dtmf_received``, ``call_bridge_joined``,
``call_transfer_succeeded``...): published on the control plane's bus for the call's customer,
so WebSocket subscribers and webhooks see them like every other call event.
"""

from __future__ import annotations

import logging
from typing import Any

from control.db import DatabaseError
from control.hooks import ControlHooks

log = logging.getLogger(__name__)


class ControlEvents:
    """Implements :class:`sip.ari.app.CallEvents` over the control plane's store and bus."""

    def __init__(self, hooks: ControlHooks) -> None:
        self._hooks = hooks

    async def call_event(self, call_id: str, event_type: str, data: dict[str, Any]) -> None:
        try:
            row = await self._hooks.store.get("calls", call_id, None)
            if row is not None:
                await self._hooks.bus.publish(
                    row["customer_id"], f"call_{event_type}", call_id, {"call_id": call_id, **data}
                )
        except DatabaseError as exc:
            log.error("ari event not recorded", extra={"call_id": call_id, "error": str(exc)})
