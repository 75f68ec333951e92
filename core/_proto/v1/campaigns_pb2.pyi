import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SendTestRequest(_message.Message):
    __slots__ = ("campaign", "to", "channel")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    to: _containers.RepeatedScalarFieldContainer[str]
    channel: str
    def __init__(self, campaign: _Optional[str] = ..., to: _Optional[_Iterable[str]] = ..., channel: _Optional[str] = ...) -> None: ...

class TestSend(_message.Message):
    __slots__ = ("to", "customer_id", "channel", "intent", "error")
    TO_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    to: str
    customer_id: str
    channel: str
    intent: str
    error: str
    def __init__(self, to: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., intent: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class SendTestResponse(_message.Message):
    __slots__ = ("sends",)
    SENDS_FIELD_NUMBER: _ClassVar[int]
    sends: _containers.RepeatedCompositeFieldContainer[TestSend]
    def __init__(self, sends: _Optional[_Iterable[_Union[TestSend, _Mapping]]] = ...) -> None: ...

class CheckCampaignsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "errors", "warnings")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, campaigns: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class CampaignRequest(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    def __init__(self, campaign: _Optional[str] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: str
    def __init__(self, campaign: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[CampaignRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[CampaignRun, _Mapping]]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("run_id", "window_days")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    window_days: float
    def __init__(self, run_id: _Optional[str] = ..., window_days: _Optional[float] = ...) -> None: ...

class CampaignRun(_message.Message):
    __slots__ = ("id", "campaign", "version", "status", "trigger", "created_at", "snapshot_at", "planned", "delivered", "counts", "error")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_AT_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    campaign: str
    version: str
    status: str
    trigger: str
    created_at: _timestamp_pb2.Timestamp
    snapshot_at: _timestamp_pb2.Timestamp
    planned: int
    delivered: int
    counts: _containers.ScalarMap[str, int]
    error: str
    def __init__(self, id: _Optional[str] = ..., campaign: _Optional[str] = ..., version: _Optional[str] = ..., status: _Optional[str] = ..., trigger: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., snapshot_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., planned: _Optional[int] = ..., delivered: _Optional[int] = ..., counts: _Optional[_Mapping[str, int]] = ..., error: _Optional[str] = ...) -> None: ...

class CampaignReport(_message.Message):
    __slots__ = ("json", "text")
    JSON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    json: str
    text: str
    def __init__(self, json: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
