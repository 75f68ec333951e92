import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from shopkeeper._proto.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CustomerRulesRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ...) -> None: ...

class CustomerRule(_message.Message):
    __slots__ = ("name", "yaml", "version", "added_at", "added_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    ADDED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    yaml: str
    version: str
    added_at: _timestamp_pb2.Timestamp
    added_by: str
    def __init__(self, name: _Optional[str] = ..., yaml: _Optional[str] = ..., version: _Optional[str] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., added_by: _Optional[str] = ...) -> None: ...

class CustomerRules(_message.Message):
    __slots__ = ("customer_id", "rules", "changed")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    rules: _containers.RepeatedCompositeFieldContainer[CustomerRule]
    changed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_id: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[CustomerRule, _Mapping]]] = ..., changed: _Optional[_Iterable[str]] = ...) -> None: ...

class AddCustomerRuleRequest(_message.Message):
    __slots__ = ("customer", "yaml", "name", "added_by")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDED_BY_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    yaml: str
    name: str
    added_by: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., yaml: _Optional[str] = ..., name: _Optional[str] = ..., added_by: _Optional[str] = ...) -> None: ...

class RemoveCustomerRuleRequest(_message.Message):
    __slots__ = ("customer", "name")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    name: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("customer", "event", "event_key")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_KEY_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    event: _common_pb2.Event
    event_key: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., event: _Optional[_Union[_common_pb2.Event, _Mapping]] = ..., event_key: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("json", "text")
    JSON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    json: str
    text: str
    def __init__(self, json: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ExplainDecideRequest(_message.Message):
    __slots__ = ("customer", "touchpoint", "placement", "channel")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    TOUCHPOINT_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    touchpoint: str
    placement: str
    channel: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., touchpoint: _Optional[str] = ..., placement: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class ListOutboxRequest(_message.Message):
    __slots__ = ("customer", "status")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    status: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., status: _Optional[str] = ...) -> None: ...

class OutboxItem(_message.Message):
    __slots__ = ("id", "channel", "template", "purpose", "status", "payload", "at", "source")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    channel: str
    template: str
    purpose: str
    status: str
    payload: _struct_pb2.Struct
    at: _timestamp_pb2.Timestamp
    source: str
    def __init__(self, id: _Optional[str] = ..., channel: _Optional[str] = ..., template: _Optional[str] = ..., purpose: _Optional[str] = ..., status: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class ListOutboxResponse(_message.Message):
    __slots__ = ("customer_id", "items")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    items: _containers.RepeatedCompositeFieldContainer[OutboxItem]
    def __init__(self, customer_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[OutboxItem, _Mapping]]] = ...) -> None: ...

class Timer(_message.Message):
    __slots__ = ("id", "rule", "scope", "due", "cancelled_by", "event_type")
    ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    rule: str
    scope: str
    due: _timestamp_pb2.Timestamp
    cancelled_by: _containers.RepeatedScalarFieldContainer[str]
    event_type: str
    def __init__(self, id: _Optional[str] = ..., rule: _Optional[str] = ..., scope: _Optional[str] = ..., due: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled_by: _Optional[_Iterable[str]] = ..., event_type: _Optional[str] = ...) -> None: ...

class ListTimersResponse(_message.Message):
    __slots__ = ("customer_id", "timers")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    timers: _containers.RepeatedCompositeFieldContainer[Timer]
    def __init__(self, customer_id: _Optional[str] = ..., timers: _Optional[_Iterable[_Union[Timer, _Mapping]]] = ...) -> None: ...
