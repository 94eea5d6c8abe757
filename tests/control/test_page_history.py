"""The page's call history and live conference view in headless Chromium, against ``callbridge
serve --agent local --record-dir``: a real call from the page (its fake microphone plays a speech
fixture to the offline agent) is moved into a conference through the API; the page shows it there,
sees it talk, mutes it and kicks it through its own buttons (checked through the API); after the
hang-up, the history shows the call's summary (transcript, tool calls, turn latency) and plays
its recording, fetched with the page's credential. Screenshots are kept in
``test-artifacts/page-conference.png`` and ``page-history.png``."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.control.test_page_browser import (
    ARTIFACTS,
    chrome_paths,
    fake_microphone,
    serving_page,
    start_chrome,
    wait_for_log,
)

__all__ = ["chrome_paths"]  # the fixture, used by name below
T = TypeVar("T")


class Api:
    """The REST API with the first admin key serve logged (a customer_admin of the page's
    customer)."""

    def __init__(self, port: int, key: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.key = key

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"AccessKey {self.key}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())


def until(what: str, get: Callable[[], T], ok: Callable[[T], bool], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = get()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{what}: {value!r}"
        time.sleep(0.3)


@pytest.mark.slow
def test_history_and_live_conference_in_chromium(
    chrome_paths: tuple[str, str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    record_dir = tmp_path / "recordings"
    record_dir.mkdir()
    args = ("--agent", "local", "--record-dir", str(record_dir))
    with serving_page(tmp_path, *args) as (link, ports):
        key = wait_for_log(tmp_path / "serve.log", "first admin access key created", 10)
        api = Api(ports["http"], str(key["access_key"]))
        conference = api("POST", "/v1.0/conferences", {"name": "team room", "tones": False})
        microphone, _ = fake_microphone(tmp_path)
        driver = start_chrome(chrome_paths, microphone)
        state = lambda: driver.execute_script("return window.callbridge")  # noqa: E731

        def shot(element_id: str, name: str) -> None:
            driver.execute_script(f"document.getElementById('{element_id}').scrollIntoView()")
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / name))

        def click(selector: str) -> None:
            # Lists re-render on events: find and click in one step, never a stale element.
            assert driver.execute_script(
                "const b = document.querySelector(arguments[0]); if (b) b.click(); return !!b",
                selector,
            ), selector

        try:
            # Signed in with the access key (the page link's role may only watch conferences).
            driver.get(link.partition("#")[0])
            until("sign-in", lambda: driver.find_element(By.ID, "signin").is_displayed(), bool, 10)
            driver.find_element(By.ID, "signin-input").send_keys(str(key["access_key"]))
            driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
            until("the app", lambda: driver.find_element(By.ID, "app").is_displayed(), bool, 10)

            driver.find_element(By.ID, "call-button").click()
            talked = until(
                "the caller heard and answered",
                state,
                lambda s: (
                    any(t["role"] == "caller" for t in s["transcripts"])
                    and s["transcripts"][-1]["role"] == "agent"
                ),
                90,
            )
            call_id = talked["callId"]

            # Into the conference through the API: the page's view follows by its events.
            api("POST", f"/v1.0/conferences/{conference['id']}/participants", {"call_id": call_id})
            seen = until(
                "the participant in the view, talking",
                lambda: state()["conference"],
                lambda c: (
                    [p["call_id"] for p in c.get("participants", [])] == [call_id]
                    and c.get("talkingSeen", False)
                ),
                40,
            )
            participant_id = seen["participants"][0]["id"]
            path = f"/v1.0/conferences/{conference['id']}/participants/{participant_id}"
            row = f"#conference-body tr[data-participant-id='{participant_id}']"
            click(f"{row} button[data-action='mute_send']")
            until("muted", lambda: api("GET", path)["mute_send"], bool, 10)
            until(
                "the view shows the mute",
                lambda: state()["conference"]["participants"],
                lambda ps: bool(ps) and ps[0]["mute_send"],
                10,
            )
            shot("conference-body", "page-conference.png")
            click(f"{row} button[data-action='kick']")
            until("kicked", lambda: api("GET", path)["status"], lambda s: s == "left", 10)
            until("gone", lambda: state()["conference"]["participants"], lambda p: p == [], 10)
            assert api("GET", f"/v1.0/calls/{call_id}")["status"] != "hangup"  # back to its agent

            driver.find_element(By.ID, "call-button").click()  # hang up
            until("ended", lambda: state()["state"], lambda s: s == "ended", 20)
            history_row = f"#history-body tr[data-call-id='{call_id}']"
            rows = lambda: driver.find_elements(By.CSS_SELECTOR, history_row)  # noqa: E731
            until("the call in the history", rows, bool, 20)
            click(f"{history_row} button")
            summary = until("the summary", lambda: state()["history"].get("summary"), bool, 20)
            assert summary["call_id"] == call_id
            # its call_summary event (and call_transfer_failed) are not taken for live calls
            assert driver.find_elements(By.CSS_SELECTOR, "#calls-body tr.empty")
            detail = driver.find_element(By.ID, "history-detail")
            text = str(detail.get_attribute("textContent"))
            callers = detail.find_elements(By.CSS_SELECTOR, ".bubble.caller")
            assert callers and all(b.text for b in callers)
            said = [t["text"] for t in talked["transcripts"] if t["role"] == "caller"]
            assert any(said[0] in b.text for b in callers), (said, [b.text for b in callers])
            tools = [t.text for t in detail.find_elements(By.CSS_SELECTOR, ".history-tools li")]
            assert any("transfer_call" in t for t in tools), tools
            assert "Turn latency" in text
            # the greeting needs no caller words; the answer to them was measured by the core
            figures = summary["latency"]
            assert figures["answers"] >= 1 and 0 < figures["median_ms"] <= figures["max_ms"]
            assert f"{figures['median_ms']} ms" in text
            assert summary["text"] in text
            click("#history-detail .recording button")
            seconds = until(
                "the recording plays",
                lambda: state()["history"].get("recordingSeconds", 0),
                lambda s: s > 2,
                20,
            )
            call_s = api("GET", f"/v1.0/calls/{call_id}")["duration_ms"] / 1000
            assert abs(seconds - call_s) < 3, (seconds, call_s)  # the whole call, not a part
            shot("history-detail", "page-history.png")

            # The page link's credential (agent_user) may watch a conference, not change it:
            # the view says so and nothing changes.
            driver.get(link)
            driver.refresh()
            until("the app", lambda: driver.find_element(By.ID, "app").is_displayed(), bool, 10)
            until("the conference", lambda: state()["conference"].get("id"), bool, 10)
            click("#conference-end")
            error = until("refused", lambda: state()["conference"].get("error"), bool, 10)
            assert "customer_manager" in error
            assert api("GET", f"/v1.0/conferences/{conference['id']}")["status"] != "ended"
        finally:
            driver.quit()
