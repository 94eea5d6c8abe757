"""Where a node's conference links are reached (``link_base``), and with ``--workers`` each
worker's own link listener (``--link-port``): the shared ``--http`` listener may hand a link to a
sibling, which has no ticket for it."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator

import pytest

from callbridge.workers import link_addresses
from control import config as control_config
from control.conference_links import link_base
from control.config import ControlConfig
from media.config import ConfigError, HostPort


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def test_one_process_is_reached_on_its_http_listener_or_node_url() -> None:
    http = HostPort("127.0.0.1", 8080)
    assert link_base(ControlConfig(http=http)) == "ws://127.0.0.1:8080"
    on = ControlConfig(http=http, node_url="http://box.example:9000/")
    assert link_base(on) == "ws://box.example:9000"
    wildcard = ControlConfig(http=HostPort("0.0.0.0", 8080))
    assert link_base(wildcard) == f"ws://{socket.gethostname()}:8080"


def test_a_worker_is_reached_on_its_own_link_listener(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    worker = ControlConfig(http=HostPort("127.0.0.1", 8080), link_fd=listener.fileno())
    assert link_base(worker) == f"ws://127.0.0.1:{port}"  # not the shared 8080
    named = ControlConfig(
        http=HostPort("0.0.0.0", 8080),
        node_url="http://box.example:8080",
        link_fd=listener.fileno(),
    )
    assert link_base(named) == f"ws://box.example:{port}"  # --node-url's host, its own port
    v6 = ControlConfig(http=HostPort("::1", 8080), link_fd=listener.fileno())
    assert link_base(v6) == f"ws://[::1]:{port}"
    assert listener.getsockname()[1] == port  # (the listener is left open)


def test_link_ports_are_base_plus_worker_id_or_picked_by_the_kernel() -> None:
    assert [a.port for a in link_addresses("0.0.0.0", 9100, 3)] == [9100, 9101, 9102]
    assert {a.host for a in link_addresses("10.0.0.5", 9100, 2)} == {"10.0.0.5"}
    assert [a.port for a in link_addresses("127.0.0.1", 0, 2)] == [0, 0]


def _config(*args: str) -> ControlConfig:
    parser = argparse.ArgumentParser()
    control_config.add_arguments(parser)
    return control_config.from_args(parser.parse_args(list(args)))


def test_link_port_needs_workers_and_room_for_each() -> None:
    redis = ("--redis", "redis://127.0.0.1:6379/15")
    assert _config("--workers", "3", *redis, "--link-port", "9100").link_port == 9100
    assert _config("--workers", "3", *redis).link_port == 0
    with pytest.raises(ConfigError, match="--link-port"):
        _config("--link-port", "9100")  # one process: its links come to --http
    with pytest.raises(ConfigError, match="--link-port"):
        _config("--workers", "3", *redis, "--link-port", "65534")  # worker 2 on 65536
