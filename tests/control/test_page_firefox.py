"""The page in Firefox (Debian's ``firefox-esr``), driven over Marionette (``marionette.py``) since
geckodriver is not packaged. Firefox's fake microphone plays a tone, not a file, so the
agent is ``--agent echo``: the page must connect, its microphone frames must reach the media
core, and the echoed tone must play in the page; once hung up, the call's history entry shows its
summary and plays its recording (the page link's credential fetches it). A screenshot is kept in
``test-artifacts/page-firefox.png``."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_service
from tests.control.marionette import Marionette, firefox
from tests.control.test_page_browser import ARTIFACTS, serving_page

T = TypeVar("T")

PREFS: dict[str, object] = {
    "media.navigator.streams.fake": True,  # a tone for getUserMedia, no device needed
    "media.navigator.permission.disabled": True,  # no microphone prompt
    "media.autoplay.default": 0,  # allowed: the agent speaks before the page is touched again
    # CI machines have no sound device, where an AudioContext never starts running; cubeb's
    # mock backend (Firefox's own tests use it) runs the audio graph on its own clock instead.
    "media.cubeb.force_mock_context": True,
    "browser.shell.checkDefaultBrowser": False,
}


@pytest.fixture
def firefox_binary() -> str:
    binary = shutil.which("firefox-esr") or shutil.which("firefox")
    if binary is None:
        require_service("firefox", "apt-get install firefox-esr")
    assert binary is not None
    return binary


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float) -> T:
    """``read()`` until ``done`` says so or ``timeout_s`` passes; the last value either way."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def browser_leg_metrics(http_port: int) -> dict[str, float]:
    """serve's Prometheus samples for the browser leg, by sample name."""
    url = f"http://127.0.0.1:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("leg") == "browser"
    }


CLICK = "const b = document.querySelector(arguments[0]); if (b) b.click(); return !!b"


def page_state(browser: Marionette) -> dict[str, Any]:
    state = browser.execute("return window.callbridge")
    assert isinstance(state, dict)
    return state


@pytest.mark.slow
def test_the_page_calls_the_echo_agent_in_firefox(firefox_binary: str, tmp_path: Path) -> None:
    with (
        serving_page(tmp_path, "--agent", "echo", "--record-dir", str(tmp_path)) as (link, ports),
        firefox(firefox_binary, tmp_path / "profile", PREFS) as browser,
    ):
        browser.set_window_size(1280, 1040)
        browser.navigate(link)
        signed_in = poll(
            lambda: browser.execute("return document.getElementById('app').hidden"),
            lambda hidden: hidden is False,
            10,
        )
        assert signed_in is False, "the page did not sign in with its link"
        browser.click(browser.find("#call-button"))

        # The tone goes out, comes back from the echo agent and plays: seconds of agent audio.
        state = poll(lambda: page_state(browser), lambda s: s["playedMs"] > 2000, 30)
        assert state["state"] == "live" and state["playedMs"] > 2000, state
        metrics = browser_leg_metrics(ports["http"])
        assert metrics.get("callbridge_calls_active") == 1, metrics
        assert metrics.get("callbridge_leg_frames_in_total", 0) > 50, metrics  # over a second
        assert metrics.get("callbridge_leg_frames_out_total", 0) > 50, metrics
        row = poll(
            lambda: browser.execute(
                "return document.querySelectorAll('#calls-body tr .leg-badge.browser').length"
            ),
            lambda rows: rows > 0,
            10,
        )
        assert row > 0, "the page's own call is not in its calls list"
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "page-firefox.png")

        browser.click(browser.find("#call-button"))  # hang up
        state = poll(lambda: page_state(browser), lambda s: s["state"] == "ended", 15)
        assert state["state"] == "ended", state
        notes = browser.execute(
            "return [...document.querySelectorAll('#transcript .note')].map(n => n.textContent)"
        )
        assert notes and notes[-1].startswith("Call ended"), notes
        metrics = poll(
            lambda: browser_leg_metrics(ports["http"]),
            lambda m: m.get("callbridge_calls_active") == 0,
            15,
        )
        assert metrics.get("callbridge_calls_active") == 0, metrics

        # The history: the call's summary, and its recording played from the page.
        call_id = state["callId"]
        details = f"#history-body tr[data-call-id='{call_id}'] button"
        shown = poll(lambda: browser.execute(CLICK, details), bool, 20)
        assert shown, "the ended call is not in the history"
        summary = poll(lambda: page_state(browser)["history"].get("summary"), bool, 20)
        assert summary and summary["call_id"] == call_id and summary["recording"], summary
        assert browser.execute(CLICK, "#history-detail .recording button")
        seconds = poll(
            lambda: page_state(browser)["history"].get("recordingSeconds", 0), lambda s: s > 2, 20
        )
        assert abs(seconds - summary["duration_ms"] / 1000) < 2, (seconds, summary["duration_ms"])
