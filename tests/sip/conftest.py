"""Fixtures shared by the SIP tests that run real peers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ai_pipeline.echo import echo_call
from tests.media.conftest import agent_in_thread
from tests.sip.peers import require_binary


@pytest.fixture
def echo_agent() -> Iterator[str]:
    with agent_in_thread(echo_call) as url:
        yield url


@pytest.fixture
def sip_peers() -> None:
    """Kamailio and sipp are installed (skips, or fails with CI=true, where they are not)."""
    require_binary("kamailio")
    require_binary("sipp")
