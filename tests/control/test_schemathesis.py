"""Schema-driven API test: schemathesis generates requests from ``/openapi.json`` (valid and
invalid bodies, parameters, ids) against the real server; none may answer 5xx."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis  # a test dependency: missing, this must fail, not skip
import trio
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry

from control.bootstrap import create_access_key, ensure_bootstrap
from control.config import ControlConfig
from control.db import DatabaseUrl
from control.plane import create_app, open_services
from media.config import HostPort
from media.metrics import MediaMetrics
from media.registry import CallRegistry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_server() -> Iterator[tuple[str, str]]:
    """The control plane on a real port, in its own thread running Trio."""
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve

    port = _free_port()
    tmp = tempfile.mkdtemp()
    cfg = ControlConfig(
        http=HostPort("127.0.0.1", port),
        db=DatabaseUrl.parse(f"sqlite:///{tmp}/st.db"),
        rate_per_s=10_000,
        rate_burst=10_000,
    )
    state: dict[str, Any] = {}
    ready, stop = threading.Event(), threading.Event()

    async def main() -> None:
        metrics = MediaMetrics(CollectorRegistry())
        async with open_services(cfg, CallRegistry(), metrics) as (services, _hooks, nursery):
            boot = await ensure_bootstrap(services.store)
            _, state["token"] = await create_access_key(
                services.store, boot.customer_id, "customer_admin", "st"
            )
            hc = HypercornConfig()
            hc.bind = [str(cfg.http)]
            hc.accesslog = None
            await nursery.start(serve, create_app(services, metrics), hc)
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(20), "server did not start"
    yield f"http://127.0.0.1:{port}", f"AccessKey {state['token']}"
    stop.set()
    thread.join(10)


def test_no_server_errors(live_server: tuple[str, str]) -> None:
    """Every operation, a few generated cases each (valid and not): never a 5xx."""
    base, auth = live_server
    api = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 30
    calls: list[tuple[str, int]] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            response = case.call(headers={"Authorization": auth}, timeout=10)
            calls.append((case.operation.label, response.status_code))
            not_a_server_error_status(case.operation.label, response.status_code, case)

        check()
    assert len(calls) >= len(operations)
    assert any(code < 300 for _, code in calls)  # some generated requests were accepted
    assert any(code == 400 for _, code in calls)  # and invalid ones refused cleanly


def not_a_server_error_status(label: str, status_code: int, case: Any) -> None:
    assert status_code < 500, f"{label} answered {status_code} for {case.as_curl_command()}"
