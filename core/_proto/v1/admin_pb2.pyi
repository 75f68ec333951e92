from shopkeeper._proto.v1 import interactions_pb2 as _interactions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stats(_message.Message):
    __slots__ = ("store", "generation", "customers", "interactions", "duplicates", "forgotten", "storage_bytes", "events_committed", "conflicts", "queue_depth", "open_streams", "watchers", "uptime_seconds", "last_cursor", "event_types", "version")
    STORE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAMS_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_CURSOR_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    store: str
    generation: int
    customers: int
    interactions: int
    duplicates: int
    forgotten: int
    storage_bytes: int
    events_committed: int
    conflicts: int
    queue_depth: int
    open_streams: int
    watchers: int
    uptime_seconds: float
    last_cursor: int
    event_types: _containers.RepeatedScalarFieldContainer[str]
    version: str
    def __init__(self, store: _Optional[str] = ..., generation: _Optional[int] = ..., customers: _Optional[int] = ..., interactions: _Optional[int] = ..., duplicates: _Optional[int] = ..., forgotten: _Optional[int] = ..., storage_bytes: _Optional[int] = ..., events_committed: _Optional[int] = ..., conflicts: _Optional[int] = ..., queue_depth: _Optional[int] = ..., open_streams: _Optional[int] = ..., watchers: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., last_cursor: _Optional[int] = ..., event_types: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ...) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Plugin(_message.Message):
    __slots__ = ("name", "version", "disabled", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    disabled: bool
    error: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., disabled: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("plugins",)
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[Plugin]
    def __init__(self, plugins: _Optional[_Iterable[_Union[Plugin, _Mapping]]] = ...) -> None: ...

class ReloadRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadRulesResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, messages: _Optional[_Iterable[str]] = ...) -> None: ...

class PackRequest(_message.Message):
    __slots__ = ("days",)
    DAYS_FIELD_NUMBER: _ClassVar[int]
    days: float
    def __init__(self, days: _Optional[float] = ...) -> None: ...

class PackResponse(_message.Message):
    __slots__ = ("bytes_before", "bytes_after")
    BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    bytes_before: int
    bytes_after: int
    def __init__(self, bytes_before: _Optional[int] = ..., bytes_after: _Optional[int] = ...) -> None: ...

class ApplySegmentsRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class FitModelsRequest(_message.Message):
    __slots__ = ("as_of_seconds", "holdout_end_seconds", "horizon_weeks", "clv_horizon_weeks", "discount", "discount_per", "discount_step", "batch", "dry_run")
    AS_OF_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_WEEKS_FIELD_NUMBER: _ClassVar[int]
    CLV_HORIZON_WEEKS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PER_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_STEP_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    as_of_seconds: float
    holdout_end_seconds: float
    horizon_weeks: float
    clv_horizon_weeks: float
    discount: float
    discount_per: str
    discount_step: str
    batch: int
    dry_run: bool
    def __init__(self, as_of_seconds: _Optional[float] = ..., holdout_end_seconds: _Optional[float] = ..., horizon_weeks: _Optional[float] = ..., clv_horizon_weeks: _Optional[float] = ..., discount: _Optional[float] = ..., discount_per: _Optional[str] = ..., discount_step: _Optional[str] = ..., batch: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class JsonReport(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportRowsRequest(_message.Message):
    __slots__ = ("batch_id", "rows", "derived_keys", "historical", "validate_only", "source")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DERIVED_KEYS_FIELD_NUMBER: _ClassVar[int]
    HISTORICAL_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    rows: _containers.RepeatedScalarFieldContainer[str]
    derived_keys: _containers.RepeatedScalarFieldContainer[int]
    historical: bool
    validate_only: bool
    source: str
    def __init__(self, batch_id: _Optional[str] = ..., rows: _Optional[_Iterable[str]] = ..., derived_keys: _Optional[_Iterable[int]] = ..., historical: _Optional[bool] = ..., validate_only: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...
