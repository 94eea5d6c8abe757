"""Every event the platform publishes can be named in a webhook's ``event_types`` filter: the
Asterisk (ARI) app publishes ``call_<kind>`` events of its own, which the filter refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from control.schemas import EVENT_TYPES, WebhookBody

ARI_EVENTS = ["call_dtmf_received", "call_bridge_joined", "call_bridge_left"]
ARI_EVENTS += ["call_conference_joined"]


@pytest.mark.parametrize("event_type", ARI_EVENTS)
def test_a_webhook_can_subscribe_to_the_asterisk_events(event_type: str) -> None:
    body = WebhookBody(url="https://example.invalid/hook", event_types=[event_type])
    assert body.event_types == [event_type]
    assert event_type in EVENT_TYPES


def test_an_unknown_event_type_is_still_refused() -> None:
    with pytest.raises(ValidationError):
        WebhookBody(url="https://example.invalid/hook", event_types=["call_teleported"])
