import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Identity(_message.Message):
    __slots__ = ("namespace", "value")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    value: str
    def __init__(self, namespace: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class CustomerRef(_message.Message):
    __slots__ = ("id", "identity")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    identity: Identity
    def __init__(self, id: _Optional[str] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "channel", "ts", "identities", "idempotency_key", "data", "touchpoint", "traits")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOUCHPOINT_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    type: str
    channel: str
    ts: _timestamp_pb2.Timestamp
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    idempotency_key: str
    data: _struct_pb2.Struct
    touchpoint: str
    traits: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., channel: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., touchpoint: _Optional[str] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("key", "ts", "type", "channel", "touchpoint", "data", "idempotency_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOUCHPOINT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    key: int
    ts: _timestamp_pb2.Timestamp
    type: str
    channel: str
    touchpoint: str
    data: _struct_pb2.Struct
    idempotency_key: str
    def __init__(self, key: _Optional[int] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[str] = ..., channel: _Optional[str] = ..., touchpoint: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EventStatus(_message.Message):
    __slots__ = ("index", "outcome", "customer_id", "interaction_key", "created", "code", "field", "reason", "merges", "warnings", "trace")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[EventStatus.Outcome]
        APPLIED: _ClassVar[EventStatus.Outcome]
        DUPLICATE: _ClassVar[EventStatus.Outcome]
        REJECTED: _ClassVar[EventStatus.Outcome]
    OUTCOME_UNSPECIFIED: EventStatus.Outcome
    APPLIED: EventStatus.Outcome
    DUPLICATE: EventStatus.Outcome
    REJECTED: EventStatus.Outcome
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MERGES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    index: int
    outcome: EventStatus.Outcome
    customer_id: str
    interaction_key: int
    created: bool
    code: int
    field: str
    reason: str
    merges: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    trace: _struct_pb2.Struct
    def __init__(self, index: _Optional[int] = ..., outcome: _Optional[_Union[EventStatus.Outcome, str]] = ..., customer_id: _Optional[str] = ..., interaction_key: _Optional[int] = ..., created: _Optional[bool] = ..., code: _Optional[int] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ..., merges: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., trace: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
