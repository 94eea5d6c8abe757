"""Request bodies of the REST API, validated once at the edge (pydantic), with field-level errors.

The same models produce the OpenAPI request schemas, so the document cannot drift from the
validation. Unknown fields are refused: a typo must not be silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ai_pipeline.engine_names import DEFAULT_ENGINES, ENGINES_BY_KIND
from control.mcp_servers import MCP_NAME

_E164 = r"^\+[1-9][0-9]{6,14}$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_TOOL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$"
_HTTP_URL = r"^https?://[^\s]{3,2040}$"
_HEADER_NAME = r"^[A-Za-z0-9-]{1,64}$"
_HEADER_VALUE = r"^[^\r\n]{0,2000}$"
# What a pattern asks for, in words: control.validation says this instead of the regex.
PATTERN_MEANINGS = {
    _E164: "a phone number in E.164 form, like +15551234567",
    _UUID: "a UUID, like 3f2b5c1e-8d4a-4c7e-9b1a-2e6f0d9c8b7a",
    _TOOL_NAME: "a name of letters, digits and _, not starting with a digit, up to 64",
    _HTTP_URL: "an http:// or https:// URL without spaces",
    MCP_NAME: "a name of letters, digits and -, starting with a letter, up to 32",
    _HEADER_NAME: "an HTTP header name of letters, digits and -, up to 64",
    _HEADER_VALUE: "a header value on one line, up to 2000 characters",
}
E164 = Annotated[str, StringConstraints(pattern=_E164)]
UUIDText = Annotated[str, StringConstraints(pattern=_UUID)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]
EngineName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]{1,64}$")]
ToolName = Annotated[str, StringConstraints(pattern=_TOOL_NAME)]
HttpUrl = Annotated[str, StringConstraints(pattern=_HTTP_URL)]
EventType = Literal[
    "call_created",
    "call_answered",
    "call_hungup",
    "transcript_created",
    "dtmf_received",
    "tool_called",
    "message_created",
    "conference_created",
    "conference_ended",
    "conference_participant_added",
    "conference_participant_removed",
    "conference_participant_updated",
    "conference_participant_talking",
    "conference_participant_dtmf",
    "call_transferred",
    "call_transfer_failed",
    "call_summary",
    "customer_disabled",
    # Asterisk (ARI) calls: what Asterisk reports of the call's channel and bridges
    "call_dtmf_received",
    "call_bridge_joined",
    "call_bridge_left",
    "call_conference_joined",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_engine(kind: str) -> Any:
    def check(name: str) -> str:
        if name not in ENGINES_BY_KIND[kind]:
            known = ", ".join(sorted(ENGINES_BY_KIND[kind]))
            raise ValueError(f"unknown {kind} engine {name!r}; known: {known}")
        return name

    return AfterValidator(check)


class Engines(Body):
    """Engine names as the agent knows them, and each engine's options (``{"llm": {"base_url":
    ..., "model": ..., "api_key_env": ...}}``); keys themselves never belong here."""

    stt: Annotated[EngineName, _known_engine("stt")] = DEFAULT_ENGINES["stt"]
    llm: Annotated[EngineName, _known_engine("llm")] = DEFAULT_ENGINES["llm"]
    tts: Annotated[EngineName, _known_engine("tts")] = DEFAULT_ENGINES["tts"]
    options: dict[Literal["stt", "llm", "tts"], dict[str, Any]] = Field(default_factory=dict)


class Vad(Body):
    stop_secs: float = Field(default=0.2, ge=0.05, le=5.0)
    confidence: float = Field(default=0.7, ge=0.05, le=1.0)


class WebhookTool(Body):
    name: ToolName
    type: Literal["webhook"]
    url: HttpUrl
    secret: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=1000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    # false: accept any certificate (a self-signed receiver in development); this tool only
    tls_verify: bool = True


class McpOAuth(Body):
    """An OAuth 2.0 client-credentials grant (control/mcp_auth.py): its token is sent to the
    server as ``Authorization: Bearer``, renewed before it expires and after a 401."""

    token_url: HttpUrl
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    scope: str = Field(default="", max_length=1000)


class McpTool(Body):
    """An MCP server whose tools the agent is offered as ``<name>__<tool>``, with their schemas.

    With ``url``: the customer's own streamable-HTTP server. Without: a stdio server the operator
    configured (``serve --mcp-stdio NAME=COMMAND``); the API never takes a command, which would run
    on our host."""

    name: Annotated[str, StringConstraints(pattern=MCP_NAME)]
    type: Literal["mcp"]
    url: HttpUrl | None = None
    # sent with every request to url (an Authorization header, an API key...)
    headers: dict[
        Annotated[str, StringConstraints(pattern=_HEADER_NAME)],
        Annotated[str, StringConstraints(pattern=_HEADER_VALUE)],
    ] = Field(default_factory=dict, max_length=10)
    # only these of the server's tools (their names on the server); empty: all of them
    tools: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=64
    )
    oauth: McpOAuth | None = None  # where the url's bearer token comes from, instead of headers

    @model_validator(mode="after")
    def _headers_need_a_url(self) -> McpTool:
        if self.headers and not self.url:
            raise ValueError("headers go to a url: a stdio server takes none")
        if self.oauth is not None and not self.url:
            raise ValueError("oauth goes to a url: a stdio server takes none")
        if self.oauth is not None and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("give an Authorization header or oauth, not both")
        return self


BUILTIN_TOOL_NAMES = ("end_call", "transfer_call", "send_dtmf", "send_sms", "join_conference")
# The kinds of tool entry are told apart by their JSON type (a name or an object) and an
# object's "type" ("mcp", else a webhook: the field was optional-looking before MCP). These tags
# name the union's members for pydantic; control.validation leaves them out of error locations.
_BUILTIN_TAG, _WEBHOOK_TAG, _MCP_TAG = "built-in tool", "webhook tool", "MCP server"
UNION_TAGS = frozenset({_BUILTIN_TAG, _WEBHOOK_TAG, _MCP_TAG})


def _known_tool(name: str) -> str:
    if name not in BUILTIN_TOOL_NAMES:
        allowed = ", ".join(BUILTIN_TOOL_NAMES)
        raise PydanticCustomError(
            "unknown_tool",
            f"unknown tool {name[:64]!r}; allowed: {allowed}, a webhook tool or an MCP server",
        )
    return name


def _tool_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return _BUILTIN_TAG
    if isinstance(value, McpTool) or (isinstance(value, dict) and value.get("type") == "mcp"):
        return _MCP_TAG
    return _WEBHOOK_TAG if isinstance(value, dict | WebhookTool) else None


BuiltinTool = Annotated[
    str,
    AfterValidator(_known_tool),
    WithJsonSchema({"type": "string", "enum": list(BUILTIN_TOOL_NAMES)}),
]
Tool = Annotated[
    Annotated[BuiltinTool, Tag(_BUILTIN_TAG)]
    | Annotated[WebhookTool, Tag(_WEBHOOK_TAG)]
    | Annotated[McpTool, Tag(_MCP_TAG)],
    Discriminator(
        _tool_kind,
        custom_error_type="invalid_tool",
        custom_error_message="a tool is a built-in tool's name, a webhook tool or an MCP server",
    ),
]


class Routes(Body):
    audiosocket_uuids: list[UUIDText] = Field(default_factory=list, max_length=100)
    numbers: list[E164] = Field(default_factory=list, max_length=100)


class KnowledgeItem(Body):
    """A question (several ways to ask it, or a topic) and the answer the agent speaks."""

    questions: list[
        Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]
    ] = Field(min_length=1, max_length=20)
    answer: Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]


class TransferSettings(Body):
    """How the agent's transfers to a number run (media/transfer_plan.py)."""

    mode: Literal["blind", "warm"] = Field(
        default="blind",
        description="blind: the agent leaves once the callee answers; warm: it stays in the "
        "bridge to say its introduction (callee and caller hear it), then leaves",
    )
    announcement: str | None = Field(
        default=None,
        max_length=500,
        description="said to the caller before ringback; null: 'Please hold while I connect "
        "you.'; empty: nothing (an agent that says its own sentence)",
    )
    introduction: str | None = Field(
        default=None,
        max_length=500,
        description="warm: said to the callee once it answers (the transfer_call tool's "
        "summary comes first); null: a default sentence",
    )
    sip: Literal["refer", "bridge"] = Field(
        default="refer",
        description="a SIP caller's blind transfer: REFER (the PBX carries the call on) or "
        "an outbound call bridged here, as on every other leg (warm is always bridged)",
    )


class AgentBody(Body):
    name: Name
    is_default: bool = False
    prompt: str = Field(default="", max_length=20_000)
    greeting: str = Field(default="", max_length=2_000)
    tools: list[Tool] = Field(default_factory=list, max_length=32)
    transfer_targets: dict[str, Annotated[str, StringConstraints(max_length=255)]] = Field(
        default_factory=dict, max_length=64
    )
    transfer: TransferSettings = Field(default_factory=TransferSettings)
    engines: Engines = Field(default_factory=Engines)
    voice: str = Field(default="", max_length=64)
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")
    vad: Vad = Field(default_factory=Vad)
    # Active speech level the agent's voice is brought to at the caller; null: TTS as it comes.
    voice_level_dbfs: float | None = Field(default=-20.0, ge=-35, le=-6)
    routes: Routes = Field(default_factory=Routes)
    # join_conference's conference when the LLM names none (the offline router never names one)
    default_conference_id: UUIDText | None = None
    # The wait after the VAD's stop when the caller's words end unsure (no sentence end); twice
    # that when they lead on ("...talk to"); a complete sentence ends the turn at once
    # (ai_pipeline/end_of_turn.py); 0: answer at the stop
    user_turn_timeout_secs: float = Field(default=0.6, ge=0.0, le=5.0)
    # What the offline agent answers (ai_pipeline/engines/knowledge.py); a miss is said honestly
    knowledge: list[KnowledgeItem] = Field(default_factory=list, max_length=200)


class AccessKeyBody(Body):
    name: Name
    role: Literal["customer_admin", "customer_manager", "agent_user"] = "agent_user"
    expire_s: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)


class WebhookBody(Body):
    url: HttpUrl
    secret: str = Field(default="", min_length=0, max_length=255)
    event_types: list[EventType] = Field(default_factory=list, max_length=len(EVENT_TYPES))
    # false: accept any certificate (a self-signed receiver in development); this webhook only
    tls_verify: bool = True


class ConferenceBody(Body):
    name: Name
    tones: bool = True  # entry/exit tones to the others when somebody joins or leaves
    max_participants: int = Field(default=0, ge=0, le=100)  # 0: no limit
    on_leave: Literal["agent", "hangup"] = "agent"  # where a call goes when it leaves
    # asterisk: Asterisk mixes it (serve --ari); only Asterisk calls join, their agents leave
    mixer: Literal["callbridge", "asterisk"] = "callbridge"


VolumePct = Annotated[int, Field(ge=0, le=400)]


class ParticipantBody(Body):
    call_id: UUIDText
    mute_send: bool = False  # the others do not hear this participant
    mute_hear: bool = False  # this participant hears nobody
    talk_volume_pct: VolumePct = 100  # how loud the others hear it
    listen_volume_pct: VolumePct = 100  # how loud it hears the others
    moderator: bool = False  # the conference ends when a moderator leaves


class ParticipantUpdateBody(Body):
    mute_send: bool | None = None
    mute_hear: bool | None = None
    talk_volume_pct: VolumePct | None = None
    listen_volume_pct: VolumePct | None = None


class CallCreateBody(Body):
    leg: Literal["audiosocket", "chan_websocket", "twilio", "sip", "asterisk"]
    source: E164
    destination: E164
    agent_id: UUIDText


HangupCauseName = Literal["normal", "busy", "rejected", "no_answer", "congestion"]


class HangupBody(Body):
    """Why the call ends, as the caller's network hears it: an Asterisk call is hung up with
    the Q.850 cause of that name (sip/ari/causes.py); a SIP call's BYE carries it in a
    ``Reason: Q.850;cause=N`` header, an unanswered SIP caller gets its status (busy: 486,
    rejected: 603, congestion: 503, else 480). The call's ``hangup_reason`` names it
    (``api: busy``)."""

    cause: HangupCauseName = "normal"


class DtmfBody(Body):
    digits: Annotated[str, StringConstraints(pattern=r"^[0-9*#A-Da-d]{1,32}$")]


class SayBody(Body):
    text: Annotated[str, StringConstraints(min_length=1, max_length=2_000)]
    # true: cut the agent off and say this now; false: say it after what the agent is saying
    interrupt: bool = False


class TransferBody(Body):
    """A number or SIP URI (an outbound call bridged with the caller, or REFER on SIP), or
    ``agent:<agent_id>`` (the call's link switches to that agent). ``mode``, ``announcement``
    and ``introduction`` override the agent's ``transfer`` settings for this transfer."""

    target: Annotated[
        str,
        StringConstraints(
            pattern=r"^(\+[1-9][0-9]{6,14}|sips?:[^\s]{3,250}|[0-9]{2,15}|agent:[0-9a-fA-F-]{36})$"
        ),
    ]
    mode: Literal["blind", "warm"] | None = Field(
        default=None, description="null: the agent's transfer.mode"
    )
    announcement: str | None = Field(
        default=None, max_length=500, description="null: the agent's transfer.announcement"
    )
    introduction: str | None = Field(
        default=None, max_length=500, description="warm; null: the agent's transfer.introduction"
    )
