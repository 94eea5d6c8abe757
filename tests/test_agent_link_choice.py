"""``--agent-link auto`` resolved: ``mux`` to the agents serve starts, ``ws`` to the URLs the
operator gives; explicit choices kept; ``serve --workers`` hands its workers the resolved one."""

from __future__ import annotations

import argparse

import pytest

from callbridge.workers import shared_agent_args
from media import config
from media.config import MediaConfig


def parsed(*argv: str) -> MediaConfig:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.from_args(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        ((), "mux"),  # the offline agent serve starts
        (("--agent", "echo"), "mux"),
        (("--agent", "echo", "--agent-workers", "3"), "mux"),
        (("--agent", "ws://127.0.0.1:9"), "ws"),
        (("--agent", "ws://127.0.0.1:9?agent_protocol=pipecat"), "ws"),
        (("--agent", "echo", "--agent-link", "ws"), "ws"),
        (("--agent", "ws://127.0.0.1:9", "--agent-link", "mux"), "mux"),
    ],
)
def test_the_link_each_agent_gets(argv: tuple[str, ...], kind: str) -> None:
    assert parsed(*argv).link_kind == kind


def test_workers_are_handed_the_parents_choice_not_auto() -> None:
    """A worker sees the parent's agents as ws:// URLs: ``auto`` there would read as ws."""
    argv = shared_agent_args(parsed("--agent", "echo", "--agent-workers", "2"))
    worker = parsed(*argv)
    assert worker.agent_mode == "remote"
    assert worker.link_kind == "mux"
    assert parsed(*shared_agent_args(parsed("--agent-link", "ws"))).link_kind == "ws"
    assert parsed(*shared_agent_args(parsed("--agent", "ws://127.0.0.1:9"))).link_kind == "ws"


def test_a_stock_pipecat_agent_still_refuses_mux() -> None:
    with pytest.raises(config.ConfigError, match="agent-link mux"):
        parsed("--agent", "ws://127.0.0.1:9?agent_protocol=pipecat", "--agent-link", "mux")
