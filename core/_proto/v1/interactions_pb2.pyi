from google.protobuf import struct_pb2 as _struct_pb2
from shopkeeper._proto.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordInteractionRequest(_message.Message):
    __slots__ = ("event", "trace")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    event: _common_pb2.Event
    trace: bool
    def __init__(self, event: _Optional[_Union[_common_pb2.Event, _Mapping]] = ..., trace: _Optional[bool] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("batch_id", "events")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    events: _containers.RepeatedCompositeFieldContainer[_common_pb2.Event]
    def __init__(self, batch_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_common_pb2.Event, _Mapping]]] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("batch_id", "statuses", "applied", "duplicates", "rejected")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    statuses: _containers.RepeatedCompositeFieldContainer[_common_pb2.EventStatus]
    applied: int
    duplicates: int
    rejected: int
    def __init__(self, batch_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_common_pb2.EventStatus, _Mapping]]] = ..., applied: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("customer", "touchpoint", "placement", "context", "limit")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    TOUCHPOINT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    touchpoint: str
    placement: str
    context: _struct_pb2.Struct
    limit: int
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., touchpoint: _Optional[str] = ..., placement: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("kind", "id", "score", "reason", "payload", "plugin")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    score: float
    reason: str
    payload: _struct_pb2.Struct
    plugin: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., plugin: _Optional[str] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("customer_id", "actions", "no_offer_reason", "no_offer_detail")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    NO_OFFER_REASON_FIELD_NUMBER: _ClassVar[int]
    NO_OFFER_DETAIL_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    no_offer_reason: str
    no_offer_detail: str
    def __init__(self, customer_id: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., no_offer_reason: _Optional[str] = ..., no_offer_detail: _Optional[str] = ...) -> None: ...
