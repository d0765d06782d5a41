from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActualState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTUAL_STATE_UNKNOWN: _ClassVar[ActualState]
    ACTUAL_STATE_ON: _ClassVar[ActualState]
    ACTUAL_STATE_OFF: _ClassVar[ActualState]
    ACTUAL_STATE_MIA: _ClassVar[ActualState]
    ACTUAL_STATE_OVERCURRENT: _ClassVar[ActualState]

class EdgeStop(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDGE_STOP_NONE: _ClassVar[EdgeStop]
    EDGE_STOP_UNSUPERVISED_TOO_LONG: _ClassVar[EdgeStop]
    EDGE_STOP_CIRCUIT_OVER_LIMIT: _ClassVar[EdgeStop]

class RequestedState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUESTED_STATE_UNKNOWN: _ClassVar[RequestedState]
    REQUESTED_STATE_ON: _ClassVar[RequestedState]
    REQUESTED_STATE_OFF: _ClassVar[RequestedState]

class DriverReplyCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIVER_REPLY_CODE_UNSPECIFIED: _ClassVar[DriverReplyCode]
    DRIVER_REPLY_CODE_OK: _ClassVar[DriverReplyCode]
    DRIVER_REPLY_CODE_UNKNOWN_PLUG: _ClassVar[DriverReplyCode]
    DRIVER_REPLY_CODE_REFUSED: _ClassVar[DriverReplyCode]
    DRIVER_REPLY_CODE_BAD_REQUEST: _ClassVar[DriverReplyCode]
ACTUAL_STATE_UNKNOWN: ActualState
ACTUAL_STATE_ON: ActualState
ACTUAL_STATE_OFF: ActualState
ACTUAL_STATE_MIA: ActualState
ACTUAL_STATE_OVERCURRENT: ActualState
EDGE_STOP_NONE: EdgeStop
EDGE_STOP_UNSUPERVISED_TOO_LONG: EdgeStop
EDGE_STOP_CIRCUIT_OVER_LIMIT: EdgeStop
REQUESTED_STATE_UNKNOWN: RequestedState
REQUESTED_STATE_ON: RequestedState
REQUESTED_STATE_OFF: RequestedState
DRIVER_REPLY_CODE_UNSPECIFIED: DriverReplyCode
DRIVER_REPLY_CODE_OK: DriverReplyCode
DRIVER_REPLY_CODE_UNKNOWN_PLUG: DriverReplyCode
DRIVER_REPLY_CODE_REFUSED: DriverReplyCode
DRIVER_REPLY_CODE_BAD_REQUEST: DriverReplyCode

class Reading(_message.Message):
    __slots__ = ("plug_id", "fuze_id", "actual_state", "current_a", "voltage_v", "power_factor", "timestamp_ms", "active_power_w", "energy_wh", "edge_stop")
    PLUG_ID_FIELD_NUMBER: _ClassVar[int]
    FUZE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_A_FIELD_NUMBER: _ClassVar[int]
    VOLTAGE_V_FIELD_NUMBER: _ClassVar[int]
    POWER_FACTOR_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_POWER_W_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WH_FIELD_NUMBER: _ClassVar[int]
    EDGE_STOP_FIELD_NUMBER: _ClassVar[int]
    plug_id: str
    fuze_id: str
    actual_state: ActualState
    current_a: float
    voltage_v: float
    power_factor: float
    timestamp_ms: int
    active_power_w: float
    energy_wh: float
    edge_stop: EdgeStop
    def __init__(self, plug_id: _Optional[str] = ..., fuze_id: _Optional[str] = ..., actual_state: _Optional[_Union[ActualState, str]] = ..., current_a: _Optional[float] = ..., voltage_v: _Optional[float] = ..., power_factor: _Optional[float] = ..., timestamp_ms: _Optional[int] = ..., active_power_w: _Optional[float] = ..., energy_wh: _Optional[float] = ..., edge_stop: _Optional[_Union[EdgeStop, str]] = ...) -> None: ...

class ReadingChunk(_message.Message):
    __slots__ = ("site_id", "seq", "readings")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    READINGS_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    seq: int
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    def __init__(self, site_id: _Optional[str] = ..., seq: _Optional[int] = ..., readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ...) -> None: ...

class LocalStateRequest(_message.Message):
    __slots__ = ("request_id", "plug_id", "requested_state", "issued_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PLUG_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_STATE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    plug_id: str
    requested_state: RequestedState
    issued_ms: int
    def __init__(self, request_id: _Optional[str] = ..., plug_id: _Optional[str] = ..., requested_state: _Optional[_Union[RequestedState, str]] = ..., issued_ms: _Optional[int] = ...) -> None: ...

class LocalStateResponse(_message.Message):
    __slots__ = ("request_id", "plug_id", "actual_state", "ok", "error", "timestamp_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PLUG_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_STATE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    plug_id: str
    actual_state: ActualState
    ok: bool
    error: str
    timestamp_ms: int
    def __init__(self, request_id: _Optional[str] = ..., plug_id: _Optional[str] = ..., actual_state: _Optional[_Union[ActualState, str]] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("plug_id", "fuze_id", "model", "address", "channel")
    PLUG_ID_FIELD_NUMBER: _ClassVar[int]
    FUZE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    plug_id: str
    fuze_id: str
    model: str
    address: str
    channel: int
    def __init__(self, plug_id: _Optional[str] = ..., fuze_id: _Optional[str] = ..., model: _Optional[str] = ..., address: _Optional[str] = ..., channel: _Optional[int] = ...) -> None: ...

class DeviceAnnouncement(_message.Message):
    __slots__ = ("site_id", "announcement_id", "devices", "timestamp_ms")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    announcement_id: str
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    timestamp_ms: int
    def __init__(self, site_id: _Optional[str] = ..., announcement_id: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class DeviceAnnouncementAck(_message.Message):
    __slots__ = ("site_id", "announcement_id", "accepted_plug_ids", "rejected_plug_ids", "rejected_reasons")
    class RejectedReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_PLUG_IDS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_PLUG_IDS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REASONS_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    announcement_id: str
    accepted_plug_ids: _containers.RepeatedScalarFieldContainer[str]
    rejected_plug_ids: _containers.RepeatedScalarFieldContainer[str]
    rejected_reasons: _containers.ScalarMap[str, str]
    def __init__(self, site_id: _Optional[str] = ..., announcement_id: _Optional[str] = ..., accepted_plug_ids: _Optional[_Iterable[str]] = ..., rejected_plug_ids: _Optional[_Iterable[str]] = ..., rejected_reasons: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StateMachineTransition(_message.Message):
    __slots__ = ("plug_id", "from_state", "to_state", "trigger", "timestamp_ms", "session_id")
    PLUG_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    plug_id: str
    from_state: str
    to_state: str
    trigger: str
    timestamp_ms: int
    session_id: str
    def __init__(self, plug_id: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., trigger: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class PlugStatus(_message.Message):
    __slots__ = ("plug_id", "site_id", "state", "prompts", "active_power_w", "session_energy_wh", "session_cost_cents", "session_id", "timestamp_ms", "actual_state", "fuze_id", "currency", "price_cents_per_kwh", "session_started_ms", "last_end_reason", "queue_position", "queue_eta_min")
    PLUG_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_POWER_W_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENERGY_WH_FIELD_NUMBER: _ClassVar[int]
    SESSION_COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_STATE_FIELD_NUMBER: _ClassVar[int]
    FUZE_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRICE_CENTS_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    SESSION_STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_END_REASON_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_ETA_MIN_FIELD_NUMBER: _ClassVar[int]
    plug_id: str
    site_id: str
    state: str
    prompts: _containers.RepeatedScalarFieldContainer[str]
    active_power_w: float
    session_energy_wh: float
    session_cost_cents: int
    session_id: str
    timestamp_ms: int
    actual_state: ActualState
    fuze_id: str
    currency: str
    price_cents_per_kwh: int
    session_started_ms: int
    last_end_reason: str
    queue_position: int
    queue_eta_min: int
    def __init__(self, plug_id: _Optional[str] = ..., site_id: _Optional[str] = ..., state: _Optional[str] = ..., prompts: _Optional[_Iterable[str]] = ..., active_power_w: _Optional[float] = ..., session_energy_wh: _Optional[float] = ..., session_cost_cents: _Optional[int] = ..., session_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., actual_state: _Optional[_Union[ActualState, str]] = ..., fuze_id: _Optional[str] = ..., currency: _Optional[str] = ..., price_cents_per_kwh: _Optional[int] = ..., session_started_ms: _Optional[int] = ..., last_end_reason: _Optional[str] = ..., queue_position: _Optional[int] = ..., queue_eta_min: _Optional[int] = ...) -> None: ...

class DriverRequest(_message.Message):
    __slots__ = ("request_id", "user_id", "plug_id", "prompt")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PLUG_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    plug_id: str
    prompt: str
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., plug_id: _Optional[str] = ..., prompt: _Optional[str] = ...) -> None: ...

class DriverReply(_message.Message):
    __slots__ = ("request_id", "code", "reason", "status")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    code: DriverReplyCode
    reason: str
    status: PlugStatus
    def __init__(self, request_id: _Optional[str] = ..., code: _Optional[_Union[DriverReplyCode, str]] = ..., reason: _Optional[str] = ..., status: _Optional[_Union[PlugStatus, _Mapping]] = ...) -> None: ...

class BalanceChanged(_message.Message):
    __slots__ = ("user_id", "ledger_key", "timestamp_ms")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LEDGER_KEY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    ledger_key: str
    timestamp_ms: int
    def __init__(self, user_id: _Optional[str] = ..., ledger_key: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...
