"""Typed values the labeling store takes and returns (mirrors of the proto messages, without gRPC).

Enums are ``StrEnum`` so they serialise as plain strings (in SQL, Parquet and events); their values
match ``LabelCreated.source`` ("human", "rule", "judge"), except FEEDBACK (see store.labels.label_created).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field


class TaskType(enum.StrEnum):
    CLASSIFICATION = "classification"
    RATING = "rating"
    CORRECTION = "correction"
    PAIRWISE_PREFERENCE = "pairwise_preference"


class LabelSource(enum.StrEnum):
    HUMAN = "human"
    RULE = "rule"
    JUDGE = "judge"
    # Derived from end users' feedback (feedback.accepted): a user's correction, or a preference
    # between two answers from their scores. Below HUMAN, above RULE and JUDGE (see versions.py).
    FEEDBACK = "feedback"


class Preference(enum.StrEnum):
    A = "A"
    B = "B"
    TIE = "TIE"


class TaskState(enum.StrEnum):
    OPEN = "open"
    LEASED = "leased"
    COMPLETED = "completed"
    # In the proto for "skipped by every eligible labeler"; the store never sets it because the set
    # of eligible labelers is open-ended: a skipped task stays OPEN for everyone else.
    SKIPPED = "skipped"


class TaskSource(enum.StrEnum):
    """Where a task came from, kept for lineage."""

    DOCUMENTS = "documents"  # a documents.cleaned event (ingestion snapshot)
    FEEDBACK = "feedback"  # a feedback.accepted event
    API = "api"  # CreateTasks


# The value of one label, by task type: CLASSIFICATION -> str (a member of the label set),
# RATING -> float, CORRECTION -> str (the corrected text), PAIRWISE_PREFERENCE -> Preference.
LabelValue = str | float | Preference

DEFAULT_LEASE_SECONDS = 600


@dataclass(frozen=True)
class QueueSpec:
    """What CreateQueue asks for.

    ``labelers_per_task`` 0 means 1 and ``lease_seconds`` 0 means :data:`DEFAULT_LEASE_SECONDS`
    (as in the proto); see :func:`llmops.labeling.domain.values.validate_queue_spec`.
    """

    name: str
    task_type: TaskType
    label_set: tuple[str, ...] = ()
    rating_min: float = 0.0
    rating_max: float = 0.0
    labelers_per_task: int = 1
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    instructions: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Queue:
    """A stored queue with its task counts at the time of the call.

    ``leased_tasks`` counts open tasks holding at least one unexpired lease, ``open_tasks`` the
    other open tasks; ``total_tasks`` = open + leased + completed.
    """

    name: str
    task_type: TaskType
    label_set: tuple[str, ...]
    rating_min: float
    rating_max: float
    labelers_per_task: int
    lease_seconds: int
    instructions: str
    metadata: dict[str, str]
    created_at: dt.datetime
    open_tasks: int = 0
    leased_tasks: int = 0
    completed_tasks: int = 0
    total_tasks: int = 0
    # Labeling functions enabled on the queue, as "name@version".
    labeling_functions: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskInput:
    """Content of one task (the proto's TaskInput plus lineage: ``snapshot_id`` and ``source``).

    Which fields are required depends on the task type; see
    :func:`llmops.labeling.domain.values.validate_task_input`.
    """

    document_id: str = ""
    text: str = ""
    prompt: str = ""
    response: str = ""
    candidate_a: str = ""
    candidate_b: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    snapshot_id: str = ""
    source: TaskSource = TaskSource.API


@dataclass(frozen=True)
class Task:
    task_id: str
    queue: str
    task_type: TaskType
    input: TaskInput
    state: TaskState
    created_at: dt.datetime
    # Human labels recorded so far (programmatic labels never count towards completion).
    label_count: int = 0
    # Set on the task NextTask returns: the lease to send back with submit_label / skip_task.
    lease_id: str = ""
    lease_expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class Label:
    label_id: str
    task_id: str
    queue: str
    source: LabelSource
    # The labeler for HUMAN; e.g. "rule:name@version" or "judge:prompt@version/alias" otherwise.
    labeler_id: str
    value: LabelValue
    created_at: dt.datetime
    comment: str = ""
    # Confidence of a labeling function or judge in [0, 1]; 0 when not reported (and for humans).
    confidence: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)
    # The task's document, if any, for the LabelCreated event.
    document_id: str = ""

    @property
    def value_text(self) -> str:
        """The value as the string LabelCreated carries ("A"/"B"/"TIE" for a preference)."""
        if isinstance(self.value, float):
            return repr(self.value)
        return str(self.value)


@dataclass(frozen=True)
class SkipResult:
    task_id: str
    # The task's state after the skip, as others see it (OPEN, LEASED or COMPLETED).
    state: TaskState


@dataclass(frozen=True)
class LabelingFunctionRef:
    queue: str
    name: str
    version: str
    registered_at: dt.datetime


@dataclass(frozen=True)
class LabeledTask:
    """A task with its labels (oldest first) and what version building needs from its queue."""

    task: Task
    labels: tuple[Label, ...]
    queue_instructions: str = ""


@dataclass(frozen=True)
class DatasetLineage:
    snapshot_ids: tuple[str, ...] = ()
    # Labels that went into the examples (every label considered by the resolution rules).
    label_ids_count: int = 0
    labeler_ids: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetVersion:
    version_id: str
    dataset: str
    task_type: TaskType
    train_count: int
    eval_count: int
    eval_fraction: float
    seed: int
    created_at: dt.datetime
    lineage: DatasetLineage = DatasetLineage()
    uri: str = ""
    description: str = ""


@dataclass(frozen=True)
class DerivedLabel:
    """A label the service derives itself (not through a lease): source, who, value, how sure."""

    source: LabelSource
    labeler_id: str
    value: LabelValue
    confidence: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DerivedTask:
    """A task for ``queue``, with the label derived for it (if any), to be stored together."""

    queue: str
    input: TaskInput
    label: DerivedLabel | None = None
