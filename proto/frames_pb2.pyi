from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TextFrame(_message.Message):
    __slots__ = ("id", "name", "text")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    text: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class AudioRawFrame(_message.Message):
    __slots__ = ("id", "name", "audio", "sample_rate", "num_channels", "pts")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    NUM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    audio: bytes
    sample_rate: int
    num_channels: int
    pts: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., audio: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., num_channels: _Optional[int] = ..., pts: _Optional[int] = ...) -> None: ...

class TranscriptionFrame(_message.Message):
    __slots__ = ("id", "name", "text", "user_id", "timestamp")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    text: str
    user_id: str
    timestamp: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., text: _Optional[str] = ..., user_id: _Optional[str] = ..., timestamp: _Optional[str] = ...) -> None: ...

class MessageFrame(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: str
    def __init__(self, data: _Optional[str] = ...) -> None: ...

class InterruptionFrame(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class CallStartFrame(_message.Message):
    __slots__ = ("call_id", "agent_id", "agent_config", "sample_rate", "num_channels", "leg", "caller", "callee", "customer_id")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    NUM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CALLEE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    agent_id: str
    agent_config: str
    sample_rate: int
    num_channels: int
    leg: str
    caller: str
    callee: str
    customer_id: str
    def __init__(self, call_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., agent_config: _Optional[str] = ..., sample_rate: _Optional[int] = ..., num_channels: _Optional[int] = ..., leg: _Optional[str] = ..., caller: _Optional[str] = ..., callee: _Optional[str] = ..., customer_id: _Optional[str] = ...) -> None: ...

class DTMFFrame(_message.Message):
    __slots__ = ("digit", "duration_ms")
    DIGIT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    digit: str
    duration_ms: int
    def __init__(self, digit: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class FunctionCallFrame(_message.Message):
    __slots__ = ("tool_call_id", "function_name", "arguments")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    function_name: str
    arguments: str
    def __init__(self, tool_call_id: _Optional[str] = ..., function_name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class FunctionCallResultFrame(_message.Message):
    __slots__ = ("tool_call_id", "function_name", "result", "is_error")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    function_name: str
    result: str
    is_error: bool
    def __init__(self, tool_call_id: _Optional[str] = ..., function_name: _Optional[str] = ..., result: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class HangupFrame(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class MarkFrame(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TranscriptFrame(_message.Message):
    __slots__ = ("role", "text", "final")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    role: str
    text: str
    final: bool
    def __init__(self, role: _Optional[str] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ...) -> None: ...

class ErrorFrame(_message.Message):
    __slots__ = ("code", "message", "fatal")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    fatal: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., fatal: _Optional[bool] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("text", "audio", "transcription", "message", "interruption", "call_start", "dtmf", "function_call", "function_call_result", "hangup", "mark", "transcript", "error")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTION_FIELD_NUMBER: _ClassVar[int]
    CALL_START_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_CALL_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_CALL_RESULT_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    text: TextFrame
    audio: AudioRawFrame
    transcription: TranscriptionFrame
    message: MessageFrame
    interruption: InterruptionFrame
    call_start: CallStartFrame
    dtmf: DTMFFrame
    function_call: FunctionCallFrame
    function_call_result: FunctionCallResultFrame
    hangup: HangupFrame
    mark: MarkFrame
    transcript: TranscriptFrame
    error: ErrorFrame
    def __init__(self, text: _Optional[_Union[TextFrame, _Mapping]] = ..., audio: _Optional[_Union[AudioRawFrame, _Mapping]] = ..., transcription: _Optional[_Union[TranscriptionFrame, _Mapping]] = ..., message: _Optional[_Union[MessageFrame, _Mapping]] = ..., interruption: _Optional[_Union[InterruptionFrame, _Mapping]] = ..., call_start: _Optional[_Union[CallStartFrame, _Mapping]] = ..., dtmf: _Optional[_Union[DTMFFrame, _Mapping]] = ..., function_call: _Optional[_Union[FunctionCallFrame, _Mapping]] = ..., function_call_result: _Optional[_Union[FunctionCallResultFrame, _Mapping]] = ..., hangup: _Optional[_Union[HangupFrame, _Mapping]] = ..., mark: _Optional[_Union[MarkFrame, _Mapping]] = ..., transcript: _Optional[_Union[TranscriptFrame, _Mapping]] = ..., error: _Optional[_Union[ErrorFrame, _Mapping]] = ...) -> None: ...
