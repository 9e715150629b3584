"""Event models: one frozen pydantic model per topic, each with the common envelope.

The models are the single definition of what travels on Kafka: producers build them, consumers
validate with them, and ``llmops asyncapi`` documents them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from llmops.contracts import topics


def _now() -> datetime:
    return datetime.now(UTC)


NonEmpty = Annotated[str, Field(min_length=1)]


# The envelope's fields: who and when, not what happened.
ENVELOPE = ("event_id", "occurred_at", "schema_version", "trace_id", "producer")


class Event(BaseModel):
    """The envelope every event carries. Subclasses set ``topic`` and ``key_field``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: ClassVar[str]
    # The field whose value is the Kafka key, so one entity's events stay in order.
    key_field: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique id; consumers dedup on it.")
    occurred_at: datetime = Field(default_factory=_now)
    schema_version: int = 1
    trace_id: str = ""
    producer: str = ""

    def kafka_key(self) -> bytes:
        return str(getattr(self, self.key_field)).encode()

    @classmethod
    def following(cls, cause: Event, /, **fields: Any) -> Self:
        """The event ``cause`` led to: ``fields``, and else ``cause``'s payload fields of the same
        names; it keeps ``cause``'s trace and gets an identity (event id, time, producer) of its own."""
        carried = {
            name: getattr(cause, name)
            for name in cls.model_fields
            if name not in ENVELOPE and name not in fields and name in type(cause).model_fields
        }
        return cls(**carried, **{"trace_id": cause.trace_id, **fields})


# --- ingestion -------------------------------------------------------------------------------------


class DocumentRaw(Event):
    """A document an app pushes for ingestion."""

    topic = topics.DOCUMENTS_RAW
    key_field = "document_id"

    document_id: NonEmpty
    dataset: NonEmpty
    text: str
    source: str = ""
    mime_type: str = "text/plain"
    metadata: dict[str, str] = Field(default_factory=dict)


class DocumentCleaned(Event):
    """A document that passed the ingestion pipeline (normalised, PII redacted, not a duplicate)."""

    topic = topics.DOCUMENTS_CLEANED
    key_field = "document_id"

    document_id: NonEmpty
    dataset: NonEmpty
    batch_id: NonEmpty
    snapshot_id: NonEmpty = Field(description="The content-addressed Parquet snapshot that holds it.")
    text: str
    content_hash: NonEmpty
    source: str = ""
    pii_redacted: dict[str, int] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)


class IngestionBatchCompleted(Event):
    topic = topics.INGESTION_BATCH_COMPLETED
    key_field = "batch_id"

    batch_id: NonEmpty
    dataset: NonEmpty
    snapshot_id: str
    snapshot_uri: str
    counts: dict[str, int]


# --- labeling --------------------------------------------------------------------------------------


class LabelCreated(Event):
    topic = topics.LABELS_CREATED
    key_field = "task_id"

    label_id: NonEmpty
    task_id: NonEmpty
    queue: NonEmpty
    source: Literal["human", "rule", "judge", "feedback"]
    labeler_id: NonEmpty
    value: str
    document_id: str = ""


class DatasetVersionCreated(Event):
    topic = topics.DATASETS_VERSION_CREATED
    key_field = "version_id"

    version_id: NonEmpty
    dataset: NonEmpty
    uri: NonEmpty
    train_count: int
    eval_count: int
    snapshot_ids: list[str] = Field(default_factory=list)
    queues: list[str] = Field(default_factory=list)


# --- training --------------------------------------------------------------------------------------


class TrainingRequested(Event):
    topic = topics.TRAINING_REQUESTED
    key_field = "request_key"

    request_key: NonEmpty = Field(description="Idempotency key: the same key never starts two jobs.")
    base_model: NonEmpty
    dataset_version_id: NonEmpty
    method: Literal["sft_lora", "dpo_lora"] = "sft_lora"
    model_name: NonEmpty
    hyperparameters: dict[str, float | int | str | list[str]] = Field(default_factory=dict)
    resources: dict[str, float | int] = Field(default_factory=dict)
    reason: str = ""
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Kept on the job; champion_adapter_uri makes the judge compare with that champion.",
    )


class TrainingProgress(Event):
    topic = topics.TRAINING_PROGRESS
    key_field = "job_id"

    job_id: NonEmpty
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    tokens_per_second: float = 0.0


class TrainingCompleted(Event):
    topic = topics.TRAINING_COMPLETED
    key_field = "job_id"

    job_id: NonEmpty
    model_name: NonEmpty
    base_model: NonEmpty
    dataset_version_id: NonEmpty
    adapter_uri: NonEmpty
    method: str
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class TrainingFailed(Event):
    topic = topics.TRAINING_FAILED
    key_field = "job_id"

    job_id: NonEmpty
    reason: NonEmpty


# --- registry --------------------------------------------------------------------------------------


class ModelVersionRegistered(Event):
    topic = topics.MODELS_VERSION_REGISTERED
    key_field = "model"

    model: NonEmpty
    version: int
    artifact_uri: NonEmpty
    base_model: NonEmpty
    metrics: dict[str, float] = Field(default_factory=dict)


class ModelAliasChanged(Event):
    topic = topics.MODELS_ALIAS_CHANGED
    key_field = "model"

    model: NonEmpty
    alias: NonEmpty
    version: int | None = Field(description="The new holder; None when the alias was removed.")
    previous_version: int | None = None
    artifact_uri: str = ""
    base_model: str = ""
    actor: str = ""
    reason: str = ""


class ModelCanaryChanged(Event):
    """A canary started, changed its share, or ended (``active`` False, with its outcome)."""

    topic = topics.MODELS_CANARY_CHANGED
    key_field = "model"

    model: NonEmpty
    alias: NonEmpty = Field(description="The alias requests name; its holder is the champion arm.")
    challenger_alias: NonEmpty
    share: float = Field(ge=0.0, le=1.0, description="Share of the alias's traffic the challenger gets.")
    champion_version: int | None = None
    challenger_version: int | None = None
    active: bool = True
    outcome: Literal["", "promote", "rollback"] = ""
    actor: str = ""
    reason: str = ""


# --- serving and retrieval -------------------------------------------------------------------------


class Citation(BaseModel):
    """A retrieved chunk an answer was given as context."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    index: int = Field(ge=1, description="Its number in the prompt ([1], [2], ...).")
    chunk_id: str
    document_id: str
    score: float


class InferenceLogged(Event):
    """One request's end, as served: an answer, or a server-side failure with `error` set."""

    topic = topics.INFERENCE_LOGGED
    key_field = "request_id"

    request_id: NonEmpty
    model: NonEmpty
    model_version: str = ""
    prompt: str
    completion: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    latency_ms: float = Field(ge=0)
    time_to_first_token_ms: float = Field(ge=0)
    finish_reason: str = ""
    streamed: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    user: str = Field("", description="The end user the caller named (canary stickiness).")
    arm: str = Field("", description="The alias that answered; under a canary, the arm.")
    template: str = Field("", description="The prompt template's name, when one was used.")
    template_version: int | None = None
    retrieval_collection: str = ""
    citations: list[Citation] = Field(default_factory=list)
    error: str = Field(
        "",
        description="The status code's name when the request failed on the server side (UNAVAILABLE, "
        "DEADLINE_EXCEEDED, ABORTED, INTERNAL); empty for an answer.",
    )


class RetrievalLogged(Event):
    topic = topics.RETRIEVAL_LOGGED
    key_field = "request_id"

    request_id: NonEmpty
    collection: NonEmpty
    query: str
    top_k: int
    document_ids: list[str] = Field(default_factory=list)
    chunk_ids: list[str] = Field(default_factory=list)
    scores: list[float] = Field(default_factory=list)
    latency_ms: float = 0.0
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"


# --- feedback --------------------------------------------------------------------------------------


class FeedbackSubmitted(Event):
    """Feedback as an app publishes it. Business rules are checked by the feedback service, which
    answers with feedback.accepted or feedback.rejected; a message that is not even this shape goes
    to the dead-letter topic."""

    topic = topics.FEEDBACK_SUBMITTED
    key_field = "request_id"

    request_id: str
    feedback_id: str = ""
    score: float | None = None
    thumb: Literal["up", "down"] | None = None
    comment: str = ""
    correction: str = ""
    user_id: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)


class FeedbackAccepted(Event):
    topic = topics.FEEDBACK_ACCEPTED
    key_field = "request_id"

    feedback_id: NonEmpty
    request_id: NonEmpty
    score: float = Field(ge=0.0, le=1.0, description="Normalised: thumb up is 1, thumb down is 0.")
    thumb: Literal["up", "down"] | None = None
    comment: str = ""
    correction: str = ""
    user_id: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    submitted_event_id: uuid.UUID | None = None


class FeedbackRejected(Event):
    topic = topics.FEEDBACK_REJECTED
    key_field = "request_id"

    request_id: str
    feedback_id: str = ""
    reasons: list[str]
    submitted_event_id: uuid.UUID | None = None


# --- monitoring ------------------------------------------------------------------------------------


class DriftDetected(Event):
    """One statistic of one signal that drifted, for one (model version, arm) of the current window.

    Every drifted result of one drift run (the scheduled job or a DriftReport call) shares its
    ``report_id``; ``window_*`` is the current window and ``reference_*`` what it was compared with.
    """

    topic = topics.MONITORING_DRIFT_DETECTED
    key_field = "model"

    model: NonEmpty
    signal: NonEmpty
    statistic: str
    value: float
    threshold: float
    window_start: datetime
    window_end: datetime
    model_version: str = ""
    arm: str = ""
    p_value: float | None = None
    alpha: float | None = Field(None, description="What p_value must stay under, for tests.")
    reference_start: datetime | None = None
    reference_end: datetime | None = None
    reference_count: int = Field(0, ge=0)
    current_count: int = Field(0, ge=0)
    collection: str = Field("", description="For retrieval signals: the collection compared.")
    mode: str = Field("", description="For retrieval signals: the retrieval mode compared.")
    report_id: str = ""


class AlertRaised(Event):
    """A rule fired; the evidence is the query that found it, its window and the values it saw."""

    topic = topics.MONITORING_ALERT
    key_field = "rule"

    rule: NonEmpty
    severity: Literal["info", "warning", "critical"]
    message: NonEmpty
    labels: dict[str, str] = Field(default_factory=dict)
    model: str = ""
    subject: str = Field("", description="What the alert is about: a model version, an arm, a caller.")
    query: str = Field("", description="The SQL that found it, as run (parameters in `parameters`).")
    parameters: dict[str, str] = Field(default_factory=dict)
    window_start: datetime | None = None
    window_end: datetime | None = None
    values: dict[str, float] = Field(
        default_factory=dict, description="The figures it saw, e.g. observed, threshold, requests."
    )


# --- the loop --------------------------------------------------------------------------------------

LoopStep = Literal[
    "triggered",  # drift or falling feedback met the model's policy
    "dataset_built",  # a dataset version from recent feedback and labels
    "training_requested",  # training.requested published
    "trained",  # training.completed (or failed: step "failed")
    "evaluated",  # judge win rate against the champion and the gate's metrics
    "registered",  # the adapter is a registry version, set as challenger
    "canary_started",
    "canary_stepped",  # the challenger's share raised
    "awaiting_approval",  # a human must approve the next step (llmops loop approve)
    "approved",
    "promoted",
    "rolled_back",
    "failed",
    "stopped",
]


class LoopStepped(Event):
    """One step of a model's feedback loop; the latest event of a ``loop_id`` is where it stands."""

    topic = topics.LOOP_STEPPED
    key_field = "model"

    loop_id: NonEmpty
    model: NonEmpty
    step: LoopStep
    reason: NonEmpty = Field(description="Why, in words a person reads in `llmops loop status`.")
    # What the step refers to; empty / None when not known yet.
    trigger: str = Field("", description="What started the loop: drift, feedback, manual.")
    dataset_version_id: str = ""
    training_request_key: str = ""
    training_job_id: str = ""
    champion_version: int | None = None
    challenger_version: int | None = None
    canary_share: float | None = Field(None, ge=0.0, le=1.0)
    next_step: str = Field("", description="What the loop does next (or waits for approval to do).")
    actor: str = Field("", description="Who approved, for human steps.")
    # The evidence: figures (win rate, feedback means, p-values, counts) and the ids behind them.
    values: dict[str, float] = Field(default_factory=dict)
    evidence: dict[str, str] = Field(default_factory=dict)


class AnswerJudged(Event):
    """A live answer scored by an LLM judge (monitoring's canary analysis asks one, when its policy
    names a judge): the judge's rating of how well the answer serves its request, read from what the
    judge said. An answer the judge would not rate is recorded too (``score`` None), so it is not
    asked again."""

    topic = topics.MONITORING_ANSWER_JUDGED
    key_field = "request_id"

    request_id: NonEmpty = Field(description="The judged answer's request id (inference.logged).")
    model: NonEmpty = Field(description="The registered model that answered.")
    model_version: str = Field("", description="The version that answered, as serving logged it.")
    arm: str = ""
    judge: NonEmpty = Field(description="The model serving answered the judge's question with.")
    prompt_version: NonEmpty = Field(description="The judge prompt's version (a version is never edited).")
    score: float | None = Field(None, ge=0.0, le=1.0, description="The rating on [0, 1]; None: no rating.")
    rating: float | None = Field(None, description="The rating as the judge gave it (e.g. 1 to 5).")
    judge_answer: str = Field("", description="What the judge said (its first 200 characters).")
    loop_id: str = Field("", description="The feedback loop whose canary asked, if any.")


ALL_EVENTS: tuple[type[Event], ...] = (
    DocumentRaw,
    DocumentCleaned,
    IngestionBatchCompleted,
    LabelCreated,
    DatasetVersionCreated,
    TrainingRequested,
    TrainingProgress,
    TrainingCompleted,
    TrainingFailed,
    ModelVersionRegistered,
    ModelAliasChanged,
    ModelCanaryChanged,
    InferenceLogged,
    RetrievalLogged,
    FeedbackSubmitted,
    FeedbackAccepted,
    FeedbackRejected,
    DriftDetected,
    AlertRaised,
    LoopStepped,
    AnswerJudged,
)

EVENT_BY_TOPIC: dict[str, type[Event]] = {e.topic: e for e in ALL_EVENTS}
