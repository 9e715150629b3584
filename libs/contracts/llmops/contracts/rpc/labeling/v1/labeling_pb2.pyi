import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_TYPE_UNSPECIFIED: _ClassVar[TaskType]
    TASK_TYPE_CLASSIFICATION: _ClassVar[TaskType]
    TASK_TYPE_RATING: _ClassVar[TaskType]
    TASK_TYPE_CORRECTION: _ClassVar[TaskType]
    TASK_TYPE_PAIRWISE_PREFERENCE: _ClassVar[TaskType]

class LabelSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_SOURCE_UNSPECIFIED: _ClassVar[LabelSource]
    LABEL_SOURCE_HUMAN: _ClassVar[LabelSource]
    LABEL_SOURCE_RULE: _ClassVar[LabelSource]
    LABEL_SOURCE_JUDGE: _ClassVar[LabelSource]
    LABEL_SOURCE_FEEDBACK: _ClassVar[LabelSource]

class Preference(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREFERENCE_UNSPECIFIED: _ClassVar[Preference]
    PREFERENCE_A: _ClassVar[Preference]
    PREFERENCE_B: _ClassVar[Preference]
    PREFERENCE_TIE: _ClassVar[Preference]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_OPEN: _ClassVar[TaskState]
    TASK_STATE_LEASED: _ClassVar[TaskState]
    TASK_STATE_COMPLETED: _ClassVar[TaskState]
    TASK_STATE_SKIPPED: _ClassVar[TaskState]

class AgreementMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGREEMENT_METRIC_UNSPECIFIED: _ClassVar[AgreementMetric]
    AGREEMENT_METRIC_COHEN_KAPPA: _ClassVar[AgreementMetric]
    AGREEMENT_METRIC_FLEISS_KAPPA: _ClassVar[AgreementMetric]
    AGREEMENT_METRIC_KRIPPENDORFF_ALPHA: _ClassVar[AgreementMetric]
TASK_TYPE_UNSPECIFIED: TaskType
TASK_TYPE_CLASSIFICATION: TaskType
TASK_TYPE_RATING: TaskType
TASK_TYPE_CORRECTION: TaskType
TASK_TYPE_PAIRWISE_PREFERENCE: TaskType
LABEL_SOURCE_UNSPECIFIED: LabelSource
LABEL_SOURCE_HUMAN: LabelSource
LABEL_SOURCE_RULE: LabelSource
LABEL_SOURCE_JUDGE: LabelSource
LABEL_SOURCE_FEEDBACK: LabelSource
PREFERENCE_UNSPECIFIED: Preference
PREFERENCE_A: Preference
PREFERENCE_B: Preference
PREFERENCE_TIE: Preference
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_OPEN: TaskState
TASK_STATE_LEASED: TaskState
TASK_STATE_COMPLETED: TaskState
TASK_STATE_SKIPPED: TaskState
AGREEMENT_METRIC_UNSPECIFIED: AgreementMetric
AGREEMENT_METRIC_COHEN_KAPPA: AgreementMetric
AGREEMENT_METRIC_FLEISS_KAPPA: AgreementMetric
AGREEMENT_METRIC_KRIPPENDORFF_ALPHA: AgreementMetric

class Queue(_message.Message):
    __slots__ = ("name", "task_type", "label_set", "rating_min", "rating_max", "labelers_per_task", "lease_seconds", "instructions", "created_at", "open_tasks", "leased_tasks", "completed_tasks", "total_tasks", "labeling_functions", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SET_FIELD_NUMBER: _ClassVar[int]
    RATING_MIN_FIELD_NUMBER: _ClassVar[int]
    RATING_MAX_FIELD_NUMBER: _ClassVar[int]
    LABELERS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OPEN_TASKS_FIELD_NUMBER: _ClassVar[int]
    LEASED_TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TASKS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TASKS_FIELD_NUMBER: _ClassVar[int]
    LABELING_FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_type: TaskType
    label_set: _containers.RepeatedScalarFieldContainer[str]
    rating_min: float
    rating_max: float
    labelers_per_task: int
    lease_seconds: int
    instructions: str
    created_at: _timestamp_pb2.Timestamp
    open_tasks: int
    leased_tasks: int
    completed_tasks: int
    total_tasks: int
    labeling_functions: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., label_set: _Optional[_Iterable[str]] = ..., rating_min: _Optional[float] = ..., rating_max: _Optional[float] = ..., labelers_per_task: _Optional[int] = ..., lease_seconds: _Optional[int] = ..., instructions: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open_tasks: _Optional[int] = ..., leased_tasks: _Optional[int] = ..., completed_tasks: _Optional[int] = ..., total_tasks: _Optional[int] = ..., labeling_functions: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateQueueRequest(_message.Message):
    __slots__ = ("name", "task_type", "label_set", "rating_min", "rating_max", "labelers_per_task", "lease_seconds", "instructions", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SET_FIELD_NUMBER: _ClassVar[int]
    RATING_MIN_FIELD_NUMBER: _ClassVar[int]
    RATING_MAX_FIELD_NUMBER: _ClassVar[int]
    LABELERS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_type: TaskType
    label_set: _containers.RepeatedScalarFieldContainer[str]
    rating_min: float
    rating_max: float
    labelers_per_task: int
    lease_seconds: int
    instructions: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., label_set: _Optional[_Iterable[str]] = ..., rating_min: _Optional[float] = ..., rating_max: _Optional[float] = ..., labelers_per_task: _Optional[int] = ..., lease_seconds: _Optional[int] = ..., instructions: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetQueueRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues", "next_page_token")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[Queue]
    next_page_token: str
    def __init__(self, queues: _Optional[_Iterable[_Union[Queue, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TaskInput(_message.Message):
    __slots__ = ("document_id", "text", "prompt", "response", "candidate_a", "candidate_b", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_A_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_B_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    text: str
    prompt: str
    response: str
    candidate_a: str
    candidate_b: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, document_id: _Optional[str] = ..., text: _Optional[str] = ..., prompt: _Optional[str] = ..., response: _Optional[str] = ..., candidate_a: _Optional[str] = ..., candidate_b: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateTasksRequest(_message.Message):
    __slots__ = ("queue", "tasks")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInput]
    def __init__(self, queue: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskInput, _Mapping]]] = ...) -> None: ...

class CreateTasksResponse(_message.Message):
    __slots__ = ("task_ids", "created")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    created: int
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., created: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "queue", "task_type", "input", "state", "lease_id", "lease_expires_at", "created_at", "label_count")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    queue: str
    task_type: TaskType
    input: TaskInput
    state: TaskState
    lease_id: str
    lease_expires_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    label_count: int
    def __init__(self, task_id: _Optional[str] = ..., queue: _Optional[str] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., input: _Optional[_Union[TaskInput, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., lease_id: _Optional[str] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_count: _Optional[int] = ...) -> None: ...

class NextTaskRequest(_message.Message):
    __slots__ = ("queue", "labeler_id")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LABELER_ID_FIELD_NUMBER: _ClassVar[int]
    queue: str
    labeler_id: str
    def __init__(self, queue: _Optional[str] = ..., labeler_id: _Optional[str] = ...) -> None: ...

class NextTaskResponse(_message.Message):
    __slots__ = ("task", "queue_empty")
    TASK_FIELD_NUMBER: _ClassVar[int]
    QUEUE_EMPTY_FIELD_NUMBER: _ClassVar[int]
    task: Task
    queue_empty: bool
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., queue_empty: _Optional[bool] = ...) -> None: ...

class SubmitLabelRequest(_message.Message):
    __slots__ = ("task_id", "lease_id", "labeler_id", "class_label", "rating", "corrected_text", "preference", "comment")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LABELER_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_TEXT_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_id: str
    labeler_id: str
    class_label: str
    rating: float
    corrected_text: str
    preference: Preference
    comment: str
    def __init__(self, task_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., labeler_id: _Optional[str] = ..., class_label: _Optional[str] = ..., rating: _Optional[float] = ..., corrected_text: _Optional[str] = ..., preference: _Optional[_Union[Preference, str]] = ..., comment: _Optional[str] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("label_id", "task_id", "queue", "source", "labeler_id", "class_label", "rating", "corrected_text", "preference", "comment", "created_at", "confidence", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LABELER_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_TEXT_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    task_id: str
    queue: str
    source: LabelSource
    labeler_id: str
    class_label: str
    rating: float
    corrected_text: str
    preference: Preference
    comment: str
    created_at: _timestamp_pb2.Timestamp
    confidence: float
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, label_id: _Optional[str] = ..., task_id: _Optional[str] = ..., queue: _Optional[str] = ..., source: _Optional[_Union[LabelSource, str]] = ..., labeler_id: _Optional[str] = ..., class_label: _Optional[str] = ..., rating: _Optional[float] = ..., corrected_text: _Optional[str] = ..., preference: _Optional[_Union[Preference, str]] = ..., comment: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confidence: _Optional[float] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SkipTaskRequest(_message.Message):
    __slots__ = ("task_id", "lease_id", "labeler_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LABELER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_id: str
    labeler_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., labeler_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SkipTaskResponse(_message.Message):
    __slots__ = ("task_id", "state")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ...) -> None: ...

class ListLabelsRequest(_message.Message):
    __slots__ = ("queue", "source", "page_size", "page_token")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queue: str
    source: LabelSource
    page_size: int
    page_token: str
    def __init__(self, queue: _Optional[str] = ..., source: _Optional[_Union[LabelSource, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLabelsResponse(_message.Message):
    __slots__ = ("labels", "next_page_token")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    next_page_token: str
    def __init__(self, labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AgreementRequest(_message.Message):
    __slots__ = ("queue", "metric", "include_pair_counts")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PAIR_COUNTS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    metric: AgreementMetric
    include_pair_counts: bool
    def __init__(self, queue: _Optional[str] = ..., metric: _Optional[_Union[AgreementMetric, str]] = ..., include_pair_counts: _Optional[bool] = ...) -> None: ...

class LabelPairCount(_message.Message):
    __slots__ = ("label_a", "label_b", "count")
    LABEL_A_FIELD_NUMBER: _ClassVar[int]
    LABEL_B_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    label_a: str
    label_b: str
    count: int
    def __init__(self, label_a: _Optional[str] = ..., label_b: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class AgreementResponse(_message.Message):
    __slots__ = ("queue", "metric", "metric_name", "value", "n_items", "n_labelers", "pair_counts")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    N_ITEMS_FIELD_NUMBER: _ClassVar[int]
    N_LABELERS_FIELD_NUMBER: _ClassVar[int]
    PAIR_COUNTS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    metric: AgreementMetric
    metric_name: str
    value: float
    n_items: int
    n_labelers: int
    pair_counts: _containers.RepeatedCompositeFieldContainer[LabelPairCount]
    def __init__(self, queue: _Optional[str] = ..., metric: _Optional[_Union[AgreementMetric, str]] = ..., metric_name: _Optional[str] = ..., value: _Optional[float] = ..., n_items: _Optional[int] = ..., n_labelers: _Optional[int] = ..., pair_counts: _Optional[_Iterable[_Union[LabelPairCount, _Mapping]]] = ...) -> None: ...

class RegisterLabelingFunctionRequest(_message.Message):
    __slots__ = ("queue", "name", "version", "skip_backfill")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SKIP_BACKFILL_FIELD_NUMBER: _ClassVar[int]
    queue: str
    name: str
    version: str
    skip_backfill: bool
    def __init__(self, queue: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., skip_backfill: _Optional[bool] = ...) -> None: ...

class RegisterLabelingFunctionResponse(_message.Message):
    __slots__ = ("queue", "name", "version", "tasks_labeled", "tasks_abstained")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASKS_LABELED_FIELD_NUMBER: _ClassVar[int]
    TASKS_ABSTAINED_FIELD_NUMBER: _ClassVar[int]
    queue: str
    name: str
    version: str
    tasks_labeled: int
    tasks_abstained: int
    def __init__(self, queue: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., tasks_labeled: _Optional[int] = ..., tasks_abstained: _Optional[int] = ...) -> None: ...

class RunJudgeRequest(_message.Message):
    __slots__ = ("queue", "judge_prompt", "judge_prompt_version", "model_alias", "limit")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    JUDGE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    JUDGE_PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ALIAS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    judge_prompt: str
    judge_prompt_version: str
    model_alias: str
    limit: int
    def __init__(self, queue: _Optional[str] = ..., judge_prompt: _Optional[str] = ..., judge_prompt_version: _Optional[str] = ..., model_alias: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class RunJudgeResponse(_message.Message):
    __slots__ = ("queue", "tasks_labeled", "tasks_failed")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASKS_LABELED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    queue: str
    tasks_labeled: int
    tasks_failed: int
    def __init__(self, queue: _Optional[str] = ..., tasks_labeled: _Optional[int] = ..., tasks_failed: _Optional[int] = ...) -> None: ...

class CreateDatasetVersionRequest(_message.Message):
    __slots__ = ("dataset", "queues", "filter", "sources", "eval_fraction", "seed", "description", "created_after")
    class FilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    EVAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    filter: _containers.ScalarMap[str, str]
    sources: _containers.RepeatedScalarFieldContainer[LabelSource]
    eval_fraction: float
    seed: int
    description: str
    created_after: _timestamp_pb2.Timestamp
    def __init__(self, dataset: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., filter: _Optional[_Mapping[str, str]] = ..., sources: _Optional[_Iterable[_Union[LabelSource, str]]] = ..., eval_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., description: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DatasetLineage(_message.Message):
    __slots__ = ("snapshot_ids", "label_ids_count", "labeler_ids", "queues")
    SNAPSHOT_IDS_FIELD_NUMBER: _ClassVar[int]
    LABEL_IDS_COUNT_FIELD_NUMBER: _ClassVar[int]
    LABELER_IDS_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    snapshot_ids: _containers.RepeatedScalarFieldContainer[str]
    label_ids_count: int
    labeler_ids: _containers.RepeatedScalarFieldContainer[str]
    queues: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, snapshot_ids: _Optional[_Iterable[str]] = ..., label_ids_count: _Optional[int] = ..., labeler_ids: _Optional[_Iterable[str]] = ..., queues: _Optional[_Iterable[str]] = ...) -> None: ...

class DatasetVersion(_message.Message):
    __slots__ = ("version_id", "dataset", "train_count", "eval_count", "uri", "created_at", "lineage", "eval_fraction", "seed", "task_type", "description")
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TRAIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    EVAL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    dataset: str
    train_count: int
    eval_count: int
    uri: str
    created_at: _timestamp_pb2.Timestamp
    lineage: DatasetLineage
    eval_fraction: float
    seed: int
    task_type: TaskType
    description: str
    def __init__(self, version_id: _Optional[str] = ..., dataset: _Optional[str] = ..., train_count: _Optional[int] = ..., eval_count: _Optional[int] = ..., uri: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lineage: _Optional[_Union[DatasetLineage, _Mapping]] = ..., eval_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., task_type: _Optional[_Union[TaskType, str]] = ..., description: _Optional[str] = ...) -> None: ...

class GetDatasetVersionRequest(_message.Message):
    __slots__ = ("version_id",)
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    def __init__(self, version_id: _Optional[str] = ...) -> None: ...

class ListDatasetVersionsRequest(_message.Message):
    __slots__ = ("dataset", "page_size", "page_token")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    page_size: int
    page_token: str
    def __init__(self, dataset: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDatasetVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[DatasetVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[DatasetVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
