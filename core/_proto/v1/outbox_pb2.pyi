import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from shopkeeper._proto.v1 import customers_pb2 as _customers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PendingIntentsRequest(_message.Message):
    __slots__ = ("channels", "limit", "include_deferred", "refs_only")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DEFERRED_FIELD_NUMBER: _ClassVar[int]
    REFS_ONLY_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    include_deferred: bool
    refs_only: bool
    def __init__(self, channels: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., include_deferred: _Optional[bool] = ..., refs_only: _Optional[bool] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("id", "customer_id", "channel", "template", "purpose", "payload", "status", "message_id", "not_before", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    customer_id: str
    channel: str
    template: str
    purpose: str
    payload: _struct_pb2.Struct
    status: str
    message_id: str
    not_before: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., template: _Optional[str] = ..., purpose: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[str] = ..., message_id: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PendingIntentsResponse(_message.Message):
    __slots__ = ("intents",)
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedCompositeFieldContainer[Intent]
    def __init__(self, intents: _Optional[_Iterable[_Union[Intent, _Mapping]]] = ...) -> None: ...

class IntentRef(_message.Message):
    __slots__ = ("customer_id", "intent_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    intent_id: str
    def __init__(self, customer_id: _Optional[str] = ..., intent_id: _Optional[str] = ...) -> None: ...

class GetIntentsRequest(_message.Message):
    __slots__ = ("refs", "contact_only")
    REFS_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ONLY_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[IntentRef]
    contact_only: bool
    def __init__(self, refs: _Optional[_Iterable[_Union[IntentRef, _Mapping]]] = ..., contact_only: _Optional[bool] = ...) -> None: ...

class IntentState(_message.Message):
    __slots__ = ("intent", "customer")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    intent: Intent
    customer: _customers_pb2.Customer
    def __init__(self, intent: _Optional[_Union[Intent, _Mapping]] = ..., customer: _Optional[_Union[_customers_pb2.Customer, _Mapping]] = ...) -> None: ...

class GetIntentsResponse(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[IntentState]
    def __init__(self, states: _Optional[_Iterable[_Union[IntentState, _Mapping]]] = ...) -> None: ...
