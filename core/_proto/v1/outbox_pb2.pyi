from google.protobuf import struct_pb2 as _struct_pb2
from shopkeeper._proto.v1 import common_pb2 as _common_pb2
from shopkeeper._proto.v1 import interactions_pb2 as _interactions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PendingIntentsRequest(_message.Message):
    __slots__ = ("channels", "limit")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, channels: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("id", "customer_id", "channel", "template", "purpose", "payload", "status", "message_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    customer_id: str
    channel: str
    template: str
    purpose: str
    payload: _struct_pb2.Struct
    status: str
    message_id: str
    def __init__(self, id: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., template: _Optional[str] = ..., purpose: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[str] = ..., message_id: _Optional[str] = ...) -> None: ...

class PendingIntentsResponse(_message.Message):
    __slots__ = ("intents",)
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedCompositeFieldContainer[Intent]
    def __init__(self, intents: _Optional[_Iterable[_Union[Intent, _Mapping]]] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("type", "customer_id", "channel", "idempotency_key", "data", "identities", "touchpoint")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    TOUCHPOINT_FIELD_NUMBER: _ClassVar[int]
    type: str
    customer_id: str
    channel: str
    idempotency_key: str
    data: _struct_pb2.Struct
    identities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Identity]
    touchpoint: str
    def __init__(self, type: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., identities: _Optional[_Iterable[_Union[_common_pb2.Identity, _Mapping]]] = ..., touchpoint: _Optional[str] = ...) -> None: ...

class TransitionBatch(_message.Message):
    __slots__ = ("transitions",)
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    transitions: _containers.RepeatedCompositeFieldContainer[Transition]
    def __init__(self, transitions: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ...) -> None: ...
