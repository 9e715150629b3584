import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryRequest(_message.Message):
    __slots__ = ("sql", "parameters", "max_rows")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SQL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    sql: str
    parameters: _containers.ScalarMap[str, str]
    max_rows: int
    def __init__(self, sql: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., max_rows: _Optional[int] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, values: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("columns", "rows", "truncated", "elapsed_ms")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    rows: _containers.RepeatedCompositeFieldContainer[Row]
    truncated: bool
    elapsed_ms: float
    def __init__(self, columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., truncated: _Optional[bool] = ..., elapsed_ms: _Optional[float] = ...) -> None: ...

class DriftReportRequest(_message.Message):
    __slots__ = ("model", "baseline_start", "baseline_end", "window_start", "window_end", "signals")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASELINE_START_FIELD_NUMBER: _ClassVar[int]
    BASELINE_END_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    model: str
    baseline_start: _timestamp_pb2.Timestamp
    baseline_end: _timestamp_pb2.Timestamp
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    signals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., baseline_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., baseline_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., signals: _Optional[_Iterable[str]] = ...) -> None: ...

class DriftSignal(_message.Message):
    __slots__ = ("name", "statistic", "value", "threshold", "drifted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    statistic: str
    value: float
    threshold: float
    drifted: bool
    def __init__(self, name: _Optional[str] = ..., statistic: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., drifted: _Optional[bool] = ...) -> None: ...

class DriftReportResponse(_message.Message):
    __slots__ = ("model", "signals", "drifted", "baseline_count", "window_count")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    model: str
    signals: _containers.RepeatedCompositeFieldContainer[DriftSignal]
    drifted: bool
    baseline_count: int
    window_count: int
    def __init__(self, model: _Optional[str] = ..., signals: _Optional[_Iterable[_Union[DriftSignal, _Mapping]]] = ..., drifted: _Optional[bool] = ..., baseline_count: _Optional[int] = ..., window_count: _Optional[int] = ...) -> None: ...
