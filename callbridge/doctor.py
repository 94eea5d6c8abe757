"""``callbridge doctor``: check a deployment before (or while) it runs and say what is wrong.

It takes ``serve``'s own options, so ``callbridge doctor --db mysql://... --ari http://...``
checks exactly what ``callbridge serve`` with the same options would use: Python and packages, the
offline model packages (installed and loadable), the listening ports (free, or who holds them),
the database (reachable, migrated), Redis, the agent (started and answering a real agent-link
handshake), Asterisk's ARI when configured, the SIP trunk or Kamailio (``--sip-outbound``,
``--kamailio``: an OPTIONS ping) and the registrar (``--sip-register``: do our credentials pass,
what bindings it holds) when configured, each ``--mcp-stdio`` server (started and listing its
tools), and the timer resolution audio pacing relies on.
Exit status 1 when any check fails (warnings do not), 2 for options that do not parse;
``--json`` prints the findings for machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys

import trio

from callbridge import doctor_checks as checks
from callbridge.doctor_checks import Finding
from callbridge.doctor_sip import sip_checks
from callbridge.workers import link_addresses
from control import config as control_config
from media import config as media_config
from media.config import HostPort
from sip import config as sip_config
from sip.ari import config as ari_config

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument(
        "--skip-agent",
        action="store_true",
        help="do not start the agent (it loads its models: seconds); default: start it",
    )
    parser.add_argument(
        "--kamailio",
        default="",
        metavar="HOST:PORT",
        help="a SIP proxy in front of callbridge (Kamailio) to ping with OPTIONS (default: none)",
    )
    media_config.add_arguments(parser)
    control_config.add_arguments(parser)
    sip_config.add_arguments(parser)
    ari_config.add_arguments(parser)


def run(ns: argparse.Namespace) -> int:
    media = media_config.from_args(ns)
    control = control_config.from_args(ns)
    sip = sip_config.from_args(ns)
    ari = ari_config.from_args(ns, media.audiosocket)
    kamailio = HostPort.parse(ns.kamailio, "--kamailio") if ns.kamailio else None
    findings = trio.run(examine, media, control, sip, ari, ns.skip_agent, kamailio)
    if ns.json:
        ok = not any(f.status == "fail" for f in findings)
        body = {"ok": ok, "findings": [dataclasses.asdict(f) for f in findings]}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        sys.stdout.write(render(findings))
    return 1 if any(f.status == "fail" for f in findings) else 0


async def examine(
    media: media_config.MediaConfig,
    control: control_config.ControlConfig,
    sip: sip_config.SipConfig | None,
    ari: ari_config.AriConfig | None,
    skip_agent: bool = False,
    kamailio: HostPort | None = None,
) -> list[Finding]:
    found = checks.python_and_packages()
    if media.agent_mode == "local":  # the echo and remote agents load no models here
        found += await checks.model_packages(os.environ)
    found.append(checks.port_free("--http", control.http))
    found.append(checks.port_free("--audiosocket", media.audiosocket))
    if control.link_port:  # --workers N: worker j's conference links on BASE + j
        links = link_addresses(control.http.host, control.link_port, control.workers)
        found += [checks.port_free("--link-port", address) for address in links]
    if media.agent_mode != "remote":  # with --agent-workers N, each agent's port
        found += [checks.port_free("--agent-listen", listen) for listen in media.agent_listens]
    if sip is not None:
        found.append(checks.port_free("--sip", sip.listen, socket.SOCK_DGRAM))
    found.append(await checks.database(control))
    found.append(await checks.redis(control))
    if skip_agent:
        found.append(Finding("agent", "skip", "--skip-agent"))
    else:
        found.append(await checks.agent(media))
    found.append(await checks.asterisk(ari))
    found += await sip_checks(sip, kamailio)
    found += await checks.mcp_servers(control)
    found.append(await checks.timer_resolution())
    return found


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"[{_MARK[f.status]}] {f.check}: {f.detail}")
        if f.fix:
            lines.append(f"       fix: {f.fix}")
    failed = sum(f.status == "fail" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    verdict = "all good" if not failed else f"{failed} problem(s) to fix"
    lines.append(f"{verdict}" + (f", {warned} warning(s)" if warned else ""))
    return "\n".join(lines) + "\n"
