import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("after_cursor", "from_oldest", "event_types", "kinds", "segments", "customer_ids", "heartbeat_seconds")
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    FROM_OLDEST_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    after_cursor: int
    from_oldest: bool
    event_types: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    segments: _containers.RepeatedScalarFieldContainer[str]
    customer_ids: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_seconds: int
    def __init__(self, after_cursor: _Optional[int] = ..., from_oldest: _Optional[bool] = ..., event_types: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[str]] = ..., segments: _Optional[_Iterable[str]] = ..., customer_ids: _Optional[_Iterable[str]] = ..., heartbeat_seconds: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("cursor", "kind", "customer_id", "event_type", "channel", "at", "interaction_key", "segments", "detail")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_KEY_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    kind: str
    customer_id: str
    event_type: str
    channel: str
    at: _timestamp_pb2.Timestamp
    interaction_key: int
    segments: _containers.RepeatedScalarFieldContainer[str]
    detail: str
    def __init__(self, cursor: _Optional[int] = ..., kind: _Optional[str] = ..., customer_id: _Optional[str] = ..., event_type: _Optional[str] = ..., channel: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interaction_key: _Optional[int] = ..., segments: _Optional[_Iterable[str]] = ..., detail: _Optional[str] = ...) -> None: ...
