import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from shopkeeper._proto.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCustomerRequest(_message.Message):
    __slots__ = ("customer", "recent")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    recent: int
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., recent: _Optional[int] = ...) -> None: ...

class IdentityLink(_message.Message):
    __slots__ = ("namespace", "value", "source", "added_at")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    value: str
    source: str
    added_at: _timestamp_pb2.Timestamp
    def __init__(self, namespace: _Optional[str] = ..., value: _Optional[str] = ..., source: _Optional[str] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HardFacts(_message.Message):
    __slots__ = ("orders", "total_spend", "interactions", "first_seen", "last_seen", "last_channel", "last_order_at")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SPEND_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LAST_ORDER_AT_FIELD_NUMBER: _ClassVar[int]
    orders: int
    total_spend: float
    interactions: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    last_channel: str
    last_order_at: _timestamp_pb2.Timestamp
    def __init__(self, orders: _Optional[int] = ..., total_spend: _Optional[float] = ..., interactions: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_channel: _Optional[str] = ..., last_order_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Fact(_message.Message):
    __slots__ = ("value", "source", "at")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    value: _struct_pb2.Value
    source: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., source: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Score(_message.Message):
    __slots__ = ("value", "source", "at")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    value: float
    source: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[float] = ..., source: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("channel", "purpose", "granted", "source", "at")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    channel: str
    purpose: str
    granted: bool
    source: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, channel: _Optional[str] = ..., purpose: _Optional[str] = ..., granted: _Optional[bool] = ..., source: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("id", "status", "merged_into", "created_at", "identities", "traits", "hard_facts", "interaction_counts", "soft_facts", "consents", "scores", "segments", "rules", "recent_interactions")
    class InteractionCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class SoftFactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Fact
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Fact, _Mapping]] = ...) -> None: ...
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Score
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Score, _Mapping]] = ...) -> None: ...
    class SegmentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _timestamp_pb2.Timestamp
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MERGED_INTO_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    HARD_FACTS_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_COUNTS_FIELD_NUMBER: _ClassVar[int]
    SOFT_FACTS_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    RECENT_INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    merged_into: str
    created_at: _timestamp_pb2.Timestamp
    identities: _containers.RepeatedCompositeFieldContainer[IdentityLink]
    traits: _struct_pb2.Struct
    hard_facts: HardFacts
    interaction_counts: _containers.ScalarMap[str, int]
    soft_facts: _containers.MessageMap[str, Fact]
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    scores: _containers.MessageMap[str, Score]
    segments: _containers.MessageMap[str, _timestamp_pb2.Timestamp]
    rules: _containers.RepeatedScalarFieldContainer[str]
    recent_interactions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Interaction]
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., merged_into: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identities: _Optional[_Iterable[_Union[IdentityLink, _Mapping]]] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., hard_facts: _Optional[_Union[HardFacts, _Mapping]] = ..., interaction_counts: _Optional[_Mapping[str, int]] = ..., soft_facts: _Optional[_Mapping[str, Fact]] = ..., consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ..., scores: _Optional[_Mapping[str, Score]] = ..., segments: _Optional[_Mapping[str, _timestamp_pb2.Timestamp]] = ..., rules: _Optional[_Iterable[str]] = ..., recent_interactions: _Optional[_Iterable[_Union[_common_pb2.Interaction, _Mapping]]] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("identities", "traits", "source", "create_only")
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    identities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Identity]
    traits: _struct_pb2.Struct
    source: str
    create_only: bool
    def __init__(self, identities: _Optional[_Iterable[_Union[_common_pb2.Identity, _Mapping]]] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., source: _Optional[str] = ..., create_only: _Optional[bool] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("customer", "created", "merges", "proposals", "warnings")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MERGES_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    created: bool
    merges: _containers.RepeatedScalarFieldContainer[str]
    proposals: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ..., created: _Optional[bool] = ..., merges: _Optional[_Iterable[str]] = ..., proposals: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class FactFilter(_message.Message):
    __slots__ = ("fact", "op", "value")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_UNSPECIFIED: _ClassVar[FactFilter.Op]
        EQ: _ClassVar[FactFilter.Op]
        NE: _ClassVar[FactFilter.Op]
        GT: _ClassVar[FactFilter.Op]
        GE: _ClassVar[FactFilter.Op]
        LT: _ClassVar[FactFilter.Op]
        LE: _ClassVar[FactFilter.Op]
        EXISTS: _ClassVar[FactFilter.Op]
    OP_UNSPECIFIED: FactFilter.Op
    EQ: FactFilter.Op
    NE: FactFilter.Op
    GT: FactFilter.Op
    GE: FactFilter.Op
    LT: FactFilter.Op
    LE: FactFilter.Op
    EXISTS: FactFilter.Op
    FACT_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    fact: str
    op: FactFilter.Op
    value: _struct_pb2.Value
    def __init__(self, fact: _Optional[str] = ..., op: _Optional[_Union[FactFilter.Op, str]] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class FindCustomersRequest(_message.Message):
    __slots__ = ("identity_prefix", "segment", "facts", "page_size", "page_token")
    IDENTITY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identity_prefix: _common_pb2.Identity
    segment: str
    facts: _containers.RepeatedCompositeFieldContainer[FactFilter]
    page_size: int
    page_token: str
    def __init__(self, identity_prefix: _Optional[_Union[_common_pb2.Identity, _Mapping]] = ..., segment: _Optional[str] = ..., facts: _Optional[_Iterable[_Union[FactFilter, _Mapping]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class CustomerSummary(_message.Message):
    __slots__ = ("id", "status", "identities", "segments", "last_seen")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    identities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Identity]
    segments: _containers.RepeatedScalarFieldContainer[str]
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., identities: _Optional[_Iterable[_Union[_common_pb2.Identity, _Mapping]]] = ..., segments: _Optional[_Iterable[str]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FindCustomersResponse(_message.Message):
    __slots__ = ("customers", "next_page_token")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[CustomerSummary]
    next_page_token: str
    def __init__(self, customers: _Optional[_Iterable[_Union[CustomerSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MergeCustomersRequest(_message.Message):
    __slots__ = ("survivor_id", "absorbed_id", "reason")
    SURVIVOR_ID_FIELD_NUMBER: _ClassVar[int]
    ABSORBED_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    survivor_id: str
    absorbed_id: str
    reason: str
    def __init__(self, survivor_id: _Optional[str] = ..., absorbed_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnmergeCustomersRequest(_message.Message):
    __slots__ = ("merge_id",)
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    merge_id: str
    def __init__(self, merge_id: _Optional[str] = ...) -> None: ...

class Merge(_message.Message):
    __slots__ = ("id", "survivor_id", "absorbed_id", "at", "reason", "source", "undone_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_ID_FIELD_NUMBER: _ClassVar[int]
    ABSORBED_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UNDONE_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    survivor_id: str
    absorbed_id: str
    at: _timestamp_pb2.Timestamp
    reason: str
    source: str
    undone_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., survivor_id: _Optional[str] = ..., absorbed_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., source: _Optional[str] = ..., undone_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListInteractionsRequest(_message.Message):
    __slots__ = ("customer", "channel", "type", "since", "until", "oldest_first", "page_size", "page_token")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    OLDEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    channel: str
    type: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    oldest_first: bool
    page_size: int
    page_token: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., channel: _Optional[str] = ..., type: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., oldest_first: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInteractionsResponse(_message.Message):
    __slots__ = ("customer_id", "interactions", "next_page_token")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    interactions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Interaction]
    next_page_token: str
    def __init__(self, customer_id: _Optional[str] = ..., interactions: _Optional[_Iterable[_Union[_common_pb2.Interaction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetConsentRequest(_message.Message):
    __slots__ = ("customer", "channel", "purpose", "granted", "source")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    channel: str
    purpose: str
    granted: bool
    source: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., channel: _Optional[str] = ..., purpose: _Optional[str] = ..., granted: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class ExportCustomerRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ...) -> None: ...

class ExportCustomerResponse(_message.Message):
    __slots__ = ("customer_id", "json")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    json: str
    def __init__(self, customer_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class ForgetCustomerRequest(_message.Message):
    __slots__ = ("customer", "reason")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    customer: _common_pb2.CustomerRef
    reason: str
    def __init__(self, customer: _Optional[_Union[_common_pb2.CustomerRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ForgetCustomerResponse(_message.Message):
    __slots__ = ("customer_id", "identities_tombstoned")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_TOMBSTONED_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    identities_tombstoned: int
    def __init__(self, customer_id: _Optional[str] = ..., identities_tombstoned: _Optional[int] = ...) -> None: ...
