"""The page over HTTPS (issue 20): ``callbridge serve --tls-cert --tls-key --agent echo`` logs an
``https://`` link; headless Chromium, trusting the test's certificate by its public key, loads it
as a secure context, signs in, and its call works over ``wss://``: the fake microphone's tone goes
to the echo agent and comes back to play."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from control.tls import TlsFiles
from tests.control.certs import self_signed
from tests.control.test_page_browser import SIGNIN_WAIT_S, chrome_paths, serving_page

__all__ = ["chrome_paths"]  # the fixture, shared with the page's other browser test


def _spki_sha256(cert_path: str) -> str:
    """What Chromium's --ignore-certificate-errors-spki-list wants: base64 SHA-256 of the key."""
    der = subprocess.run(
        ["openssl", "x509", "-in", cert_path, "-noout", "-pubkey"],
        check=True,
        capture_output=True,
    ).stdout
    spki = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, check=True, capture_output=True
    ).stdout
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.mark.slow
def test_the_page_over_https_calls_the_echo_agent(
    chrome_paths: tuple[str, str], tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tls = TlsFiles(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    self_signed(tls)
    options = webdriver.ChromeOptions()
    options.binary_location = chrome_paths[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--ignore-certificate-errors-spki-list={_spki_sha256(tls.cert_path)}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",  # a beeping tone for a microphone
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    args = ("--agent", "echo", "--tls-cert", tls.cert_path, "--tls-key", tls.key_path)
    with serving_page(tmp_path, *args) as (link, _):
        assert link.startswith("https://"), link
        driver = webdriver.Chrome(options=options, service=Service(chrome_paths[1]))
        try:
            driver.get(link)
            driver.refresh()  # the link's fragment alone does not reload the page
            assert driver.execute_script("return [location.protocol, isSecureContext]") == [
                "https:",
                True,
            ]
            deadline = time.monotonic() + SIGNIN_WAIT_S
            while driver.execute_script("return document.getElementById('app').hidden"):
                assert time.monotonic() < deadline, "the page did not sign in with its link"
                time.sleep(0.1)
            driver.execute_script("document.getElementById('call-button').click()")
            deadline = time.monotonic() + 30
            state = driver.execute_script("return window.callbridge")
            while state["playedMs"] <= 2000 and time.monotonic() < deadline:
                time.sleep(0.5)
                state = driver.execute_script("return window.callbridge")
            assert state["state"] == "live" and state["playedMs"] > 2000, state
        finally:
            driver.quit()
