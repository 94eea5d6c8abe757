"""A private, real Asterisk for tests: its own config in a temp dir, ARI on a free port.

Built by ``../shared/asterisk/build.sh`` (see its README). Nothing of the system's Asterisk
configuration is used: ``asterisk.conf`` points every directory but the module and data
directories into the temp dir, ``modules.conf`` loads an explicit list (start-up well under a
second), ``http.conf`` binds loopback on a free port, ``ari.conf`` holds one user. Tests pass
their own dialplan. No sound packs exist: tests write their own WAVs (:func:`write_wav`).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ARI_USER = "cbtest"
ARI_PASSWORD = "cbtest-secret"
ARI_APP = "callbridge"

# ARI (without res_stasis_snoop and friends res_ari_channels silently does not load)
_ARI_MODULES = (
    "res_http_websocket res_websocket_client res_ari res_ari_model res_stasis app_stasis "
    "res_ari_asterisk res_ari_channels res_ari_bridges res_ari_events res_ari_applications "
    "res_ari_recordings res_ari_playbacks res_ari_endpoints res_ari_device_states res_ari_sounds "
    "res_stasis_answer res_stasis_playback res_stasis_recording res_stasis_snoop "
    "res_stasis_device_state bridge_simple bridge_softmix"
)
# calls without SIP, audio, AudioSocket
_CALL_MODULES = (
    "res_timing_timerfd res_sorcery_config codec_resample codec_ulaw format_wav format_pcm "
    "pbx_config res_clioriginate chan_bridge_media chan_audiosocket res_audiosocket "
    "app_audiosocket "
    "app_mixmonitor app_playback app_dial app_senddtmf app_read app_echo app_verbose "
    "func_callerid func_global func_channel app_playtones res_musiconhold app_stack "
    "chan_websocket"
)
MODULES = (*_ARI_MODULES.split(), *_CALL_MODULES.split())


def asterisk_binary() -> str | None:
    return shutil.which("asterisk")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_wav(path: Path, pcm16: bytes, rate_hz: int = 8000) -> Path:
    """A mono 16-bit WAV Asterisk's ``format_wav`` plays (8 kHz ``.wav``, 16 kHz ``.wav16``)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm16)
    return path


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes()), w.getframerate()


class Asterisk:
    """One running instance. ``rx`` runs a CLI command; ``ari`` makes a REST call."""

    def __init__(self, root: Path, http_port: int) -> None:
        self.root = root
        self.http_port = http_port
        self.conf = root / "etc" / "asterisk.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def recording_dir(self) -> Path:
        return self.root / "spool" / "recording"

    def write_config(self, extensions: str, extra: dict[str, str] | None = None) -> None:
        etc = self.root / "etc"
        for sub in ("etc", "lib", "spool/recording", "run", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        files = {
            "asterisk.conf": (
                "[directories]\n"
                f"astetcdir => {etc}\nastvarlibdir => {self.root / 'lib'}\n"
                f"astspooldir => {self.root / 'spool'}\nastrundir => {self.root / 'run'}\n"
                f"astlogdir => {self.root / 'log'}\nastmoddir => /usr/lib/asterisk/modules\n"
                "astdatadir => /var/lib/asterisk\n"
                "[options]\nverbose = 3\n"
            ),
            "modules.conf": "[modules]\nautoload = no\n"
            + "".join(f"load => {m}.so\n" for m in MODULES),
            "logger.conf": "[general]\n[logfiles]\nmessages.log => notice,warning,error,verbose\n",
            "http.conf": f"[general]\nenabled = yes\nbindaddr = 127.0.0.1\n"
            f"bindport = {self.http_port}\n",
            "ari.conf": "[general]\nenabled = yes\nchannelvars = CB_LANG\n"
            f"[{ARI_USER}]\ntype = user\nread_only = no\npassword = {ARI_PASSWORD}\n",
            "extensions.conf": extensions,
            "musiconhold.conf": "[general]\n",
            **(extra or {}),
        }
        for name, text in files.items():
            (etc / name).write_text(text)

    def start(self, timeout_s: float = 20.0) -> None:
        log = (self.root / "log" / "console.log").open("ab")
        self.proc = subprocess.Popen(
            ["asterisk", "-C", str(self.conf), "-f", "-n"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"asterisk exited {self.proc.returncode}: {self.log_tail()}")
            try:
                self.ari("GET", "/asterisk/info")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise RuntimeError(f"ARI did not answer within {timeout_s} s: {self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.rx("core stop now", check=False)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)

    def rx(self, command: str, check: bool = True) -> str:
        out = subprocess.run(
            ["asterisk", "-C", str(self.conf), "-rx", command],
            capture_output=True,
            timeout=15,
            check=check,
        )
        return out.stdout.decode("utf-8", "replace")

    def ari(self, method: str, path: str, **params: str) -> Any:
        query = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in params.items())
        url = f"{self.base_url}/ari{path}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
        token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def channels(self) -> list[dict[str, Any]]:
        result = self.ari("GET", "/channels")
        assert isinstance(result, list)
        return result

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("console.log", "messages.log"):
            path = self.root / "log" / name
            if path.exists():
                text += path.read_text(errors="replace")[-chars:]
        return text


@contextmanager
def running_asterisk(
    extensions: str | Callable[[Path], str], extra: dict[str, str] | None = None
) -> Iterator[Asterisk]:
    """Start a private Asterisk with ``extensions`` as its dialplan (or what it returns for
    the instance's root directory, where files may go); stop it after.
    (The control socket lives in the temp dir: a short /tmp path keeps it under the
    108-byte limit of a Unix socket path.)"""
    root = Path(tempfile.mkdtemp(prefix="cb-ast-", dir="/tmp"))
    ast = Asterisk(root, free_port())
    ast.write_config(extensions(root) if callable(extensions) else extensions, extra)
    try:
        ast.start()
        yield ast
    finally:
        ast.stop()
        shutil.rmtree(root, ignore_errors=True)
