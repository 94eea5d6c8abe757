"""How a transfer to a number runs: blind or warm, what the caller is told before it moves, what
the callee is told on answering (warm), and whether a SIP caller is REFERred or bridged.

An agent's configuration (``transfer`` in the API's agent) gives a :class:`TransferPlan`; one
transfer (the ``transfer_call`` tool's arguments, the API's body) may override parts of it with
:class:`TransferOptions`. Pure values: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

TransferMode = Literal["blind", "warm"]
SipTransfer = Literal["refer", "bridge"]
TRANSFER_MODES: dict[str, TransferMode] = {"blind": "blind", "warm": "warm"}  # by name
SIP_TRANSFERS: tuple[SipTransfer, ...] = ("refer", "bridge")

DEFAULT_ANNOUNCEMENT = "Please hold while I connect you."
"""Said in the agent's voice before the caller hears ringback (an agent that already said its
own sentence can turn it off with an empty announcement)."""
DEFAULT_INTRODUCTION = "Hello, I have a caller on the line for you. I'm connecting you now."
"""Warm: said to the callee when neither the agent's LLM (the tool's ``summary``) nor its
configuration gives an introduction."""
MAX_SENTENCE_CHARS = 500


@dataclass(frozen=True, slots=True)
class TransferOptions:
    """What one transfer asks on top of the agent's plan; ``None`` keeps the plan's value."""

    mode: TransferMode | None = None
    announcement: str | None = None
    introduction: str | None = None


NO_OPTIONS = TransferOptions()


@dataclass(frozen=True, slots=True)
class TransferPlan:
    """``mode``: blind (the agent leaves once the callee answers) or warm (the agent stays in
    the bridge to say ``introduction``, heard by the callee and the caller, then leaves).
    ``announcement``: said to the caller before it moves ("" for none). ``sip``: a SIP caller's
    blind transfer by REFER (the PBX carries the call on) or bridged like any other leg's; a
    SIP caller's warm transfer is always bridged. (An ARI call transfers as Asterisk does.)"""

    mode: TransferMode = "blind"
    announcement: str = DEFAULT_ANNOUNCEMENT
    introduction: str = DEFAULT_INTRODUCTION
    sip: SipTransfer = "refer"

    def with_options(self, options: TransferOptions) -> TransferPlan:
        changes = {k: v for k, v in _options(options).items() if v is not None}
        return replace(self, **changes) if changes else self

    @property
    def by_refer(self) -> bool:
        """Whether a leg that can REFER should: a blind transfer its agent did not ask to
        bridge."""
        return self.mode == "blind" and self.sip == "refer"


def _options(options: TransferOptions) -> dict[str, Any]:
    return {
        "mode": options.mode,
        "announcement": options.announcement,
        "introduction": options.introduction or None,  # "" asks for the default
    }


def plan_from_config(config: Mapping[str, Any] | None) -> TransferPlan:
    """The plan an agent's stored ``transfer`` object describes (already validated by the
    API; anything else falls back to the default)."""
    if not isinstance(config, Mapping):
        return TransferPlan()
    plan = TransferPlan()
    mode, sip = config.get("mode"), config.get("sip")
    announcement, introduction = config.get("announcement"), config.get("introduction")
    return replace(
        plan,
        mode=TRANSFER_MODES.get(mode, plan.mode) if isinstance(mode, str) else plan.mode,
        sip=sip if sip in SIP_TRANSFERS else plan.sip,
        announcement=_sentence(announcement, plan.announcement, empty_ok=True),
        introduction=_sentence(introduction, plan.introduction, empty_ok=False),
    )


def _sentence(value: object, default: str, empty_ok: bool) -> str:
    if not isinstance(value, str) or (not value.strip() and not empty_ok):
        return default
    return value.strip()[:MAX_SENTENCE_CHARS]


def caller_introduction(caller_said: str) -> str:
    """A warm transfer's introduction made of the caller's last words, when neither the agent's
    LLM nor its configuration gives one."""
    words = " ".join(caller_said.split())[:300]
    return f'Hello, I have a caller on the line who said: "{words}". I\'m connecting you now.'


def failure_sentence(reason: str) -> str:
    """What the agent tells the caller back from a transfer that did not connect (one asked
    for through the API: no tool result tells the agent)."""
    lowered = reason.lower()
    if "486" in lowered or "600" in lowered or "busy" in lowered:
        why = "the line is busy"
    elif "no answer" in lowered or "408" in lowered or "480" in lowered or "487" in lowered:
        why = "nobody answered"
    else:
        why = "the call could not be placed"
    return f"I'm sorry, I couldn't put you through: {why}. I'm still here with you."
