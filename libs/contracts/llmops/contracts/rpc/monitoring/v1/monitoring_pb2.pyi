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
    __slots__ = ("model", "baseline_start", "baseline_end", "window_start", "window_end", "signals", "reference_scope", "publish", "numeric_method")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASELINE_START_FIELD_NUMBER: _ClassVar[int]
    BASELINE_END_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_METHOD_FIELD_NUMBER: _ClassVar[int]
    model: str
    baseline_start: _timestamp_pb2.Timestamp
    baseline_end: _timestamp_pb2.Timestamp
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    signals: _containers.RepeatedScalarFieldContainer[str]
    reference_scope: str
    publish: bool
    numeric_method: str
    def __init__(self, model: _Optional[str] = ..., baseline_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., baseline_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., signals: _Optional[_Iterable[str]] = ..., reference_scope: _Optional[str] = ..., publish: _Optional[bool] = ..., numeric_method: _Optional[str] = ...) -> None: ...

class DriftSignal(_message.Message):
    __slots__ = ("name", "statistic", "value", "threshold", "drifted", "model_version", "arm", "p_value", "alpha", "reference_count", "current_count", "status", "collection", "mode", "note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    statistic: str
    value: float
    threshold: float
    drifted: bool
    model_version: str
    arm: str
    p_value: float
    alpha: float
    reference_count: int
    current_count: int
    status: str
    collection: str
    mode: str
    note: str
    def __init__(self, name: _Optional[str] = ..., statistic: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., drifted: _Optional[bool] = ..., model_version: _Optional[str] = ..., arm: _Optional[str] = ..., p_value: _Optional[float] = ..., alpha: _Optional[float] = ..., reference_count: _Optional[int] = ..., current_count: _Optional[int] = ..., status: _Optional[str] = ..., collection: _Optional[str] = ..., mode: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class DriftReportResponse(_message.Message):
    __slots__ = ("model", "signals", "drifted", "baseline_count", "window_count", "report_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    signals: _containers.RepeatedCompositeFieldContainer[DriftSignal]
    drifted: bool
    baseline_count: int
    window_count: int
    report_id: str
    def __init__(self, model: _Optional[str] = ..., signals: _Optional[_Iterable[_Union[DriftSignal, _Mapping]]] = ..., drifted: _Optional[bool] = ..., baseline_count: _Optional[int] = ..., window_count: _Optional[int] = ..., report_id: _Optional[str] = ...) -> None: ...

class GetLoopStatusRequest(_message.Message):
    __slots__ = ("model", "max_steps")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_steps: int
    def __init__(self, model: _Optional[str] = ..., max_steps: _Optional[int] = ...) -> None: ...

class LoopStep(_message.Message):
    __slots__ = ("loop_id", "step", "reason", "occurred_at", "next_step", "actor", "values", "evidence", "dataset_version_id", "training_job_id", "champion_version", "challenger_version", "canary_share")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LOOP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_STEP_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_SHARE_FIELD_NUMBER: _ClassVar[int]
    loop_id: str
    step: str
    reason: str
    occurred_at: _timestamp_pb2.Timestamp
    next_step: str
    actor: str
    values: _containers.ScalarMap[str, float]
    evidence: _containers.ScalarMap[str, str]
    dataset_version_id: str
    training_job_id: str
    champion_version: int
    challenger_version: int
    canary_share: float
    def __init__(self, loop_id: _Optional[str] = ..., step: _Optional[str] = ..., reason: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_step: _Optional[str] = ..., actor: _Optional[str] = ..., values: _Optional[_Mapping[str, float]] = ..., evidence: _Optional[_Mapping[str, str]] = ..., dataset_version_id: _Optional[str] = ..., training_job_id: _Optional[str] = ..., champion_version: _Optional[int] = ..., challenger_version: _Optional[int] = ..., canary_share: _Optional[float] = ...) -> None: ...

class LoopStatus(_message.Message):
    __slots__ = ("model", "loop_id", "state", "active", "awaiting_approval", "steps", "policy_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOOP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    AWAITING_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    POLICY_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    loop_id: str
    state: str
    active: bool
    awaiting_approval: bool
    steps: _containers.RepeatedCompositeFieldContainer[LoopStep]
    policy_json: str
    def __init__(self, model: _Optional[str] = ..., loop_id: _Optional[str] = ..., state: _Optional[str] = ..., active: _Optional[bool] = ..., awaiting_approval: _Optional[bool] = ..., steps: _Optional[_Iterable[_Union[LoopStep, _Mapping]]] = ..., policy_json: _Optional[str] = ...) -> None: ...

class ApproveLoopStepRequest(_message.Message):
    __slots__ = ("model", "loop_id", "actor", "approve", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOOP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    loop_id: str
    actor: str
    approve: bool
    reason: str
    def __init__(self, model: _Optional[str] = ..., loop_id: _Optional[str] = ..., actor: _Optional[str] = ..., approve: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class StartLoopRequest(_message.Message):
    __slots__ = ("model", "actor", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    actor: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
