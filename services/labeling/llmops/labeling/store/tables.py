"""The labeling store's tables (SQLAlchemy Core): the schema a new store is made with.

A change here needs a new revision in migrations/versions that makes the same change (it upgrades
stores made by earlier releases).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from llmops.core.handled_events import handled_table
from llmops.core.outbox import outbox_table
from llmops.core.sql import AutoId, UTCDateTime, auto_id

MAX_ID_CHARS = 256

metadata = MetaData()

queues_t = Table(
    "queues",
    metadata,
    auto_id(),
    Column("name", String(128), nullable=False, unique=True),
    Column("task_type", String(32), nullable=False),
    Column("label_set", JSON, nullable=False),
    Column("rating_min", Float, nullable=False),
    Column("rating_max", Float, nullable=False),
    Column("labelers_per_task", Integer, nullable=False),
    Column("lease_seconds", Integer, nullable=False),
    Column("instructions", Text, nullable=False),
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("created_at", UTCDateTime, nullable=False),
)

tasks_t = Table(
    "tasks",
    metadata,
    # Insertion order: "oldest task first" is ORDER BY id.
    auto_id(),
    Column("task_id", String(64), nullable=False, unique=True),
    Column("queue_id", AutoId, ForeignKey("queues.id"), nullable=False),
    # NULL when the task has no document; NULLs are distinct, so only real ids are deduplicated.
    Column("document_id", String(MAX_ID_CHARS)),
    Column("text", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("response", Text, nullable=False),
    Column("candidate_a", Text, nullable=False),
    Column("candidate_b", Text, nullable=False),
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("snapshot_id", String(MAX_ID_CHARS), nullable=False),
    Column("source", String(16), nullable=False),
    # "open" or "completed"; LEASED is derived from the leases at query time.
    Column("state", String(16), nullable=False),
    # Denormalised count of human labels, so picking a task needs no aggregate over labels.
    Column("human_label_count", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    UniqueConstraint("queue_id", "document_id", name="uq_tasks_queue_document"),
    Index("ix_tasks_queue_state", "queue_id", "state", "id"),
)

labels_t = Table(
    "labels",
    metadata,
    auto_id(),
    Column("label_id", String(64), nullable=False, unique=True),
    Column("task_pk", AutoId, ForeignKey("tasks.id"), nullable=False),
    Column("queue_id", AutoId, ForeignKey("queues.id"), nullable=False),
    Column("source", String(8), nullable=False),
    Column("labeler_id", String(MAX_ID_CHARS), nullable=False),
    # Canonical text form (see values.encode_label_value); decoded with the queue's task type.
    Column("value", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("lease_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    # One label per labeler per task: a human never labels a task twice, and a labeling function
    # or judge at one version labels it once (programmatic labels are idempotent on this).
    UniqueConstraint("task_pk", "source", "labeler_id", name="uq_labels_task_source_labeler"),
    Index("ix_labels_queue", "queue_id", "id"),
)

leases_t = Table(
    "leases",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("task_pk", AutoId, ForeignKey("tasks.id"), nullable=False),
    Column("queue_id", AutoId, ForeignKey("queues.id"), nullable=False),
    Column("labeler_id", String(MAX_ID_CHARS), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime),
    # "labeled" or "skipped" once released.
    Column("outcome", String(16)),
    Index("ix_leases_task_active", "task_pk", "released_at", "expires_at"),
    Index("ix_leases_queue_labeler", "queue_id", "labeler_id", "released_at"),
)

skips_t = Table(
    "skips",
    metadata,
    auto_id(),
    Column("task_pk", AutoId, ForeignKey("tasks.id"), nullable=False),
    Column("labeler_id", String(MAX_ID_CHARS), nullable=False),
    Column("lease_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("task_pk", "labeler_id", name="uq_skips_task_labeler"),
)

# Every feedback score labeling handled whose answer it found, with that answer: the record preference
# pairs are made from. Written in the transaction that marks the feedback handled, so the feedback
# handled next sees it (a pair no longer depends on both scores having reached monitoring first).
answer_ratings_t = Table(
    "answer_ratings",
    metadata,
    auto_id(),
    Column("feedback_id", String(MAX_ID_CHARS), nullable=False, unique=True),
    Column("request_id", String(MAX_ID_CHARS), nullable=False),
    Column("registered_model", String(MAX_ID_CHARS), nullable=False),
    # sha256 of the prompt: an index on the text itself would be as long as the prompts.
    Column("prompt_digest", String(64), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("completion", Text, nullable=False),
    Column("model", String(MAX_ID_CHARS), nullable=False),
    Column("model_version", String(MAX_ID_CHARS), nullable=False),
    Column("arm", String(MAX_ID_CHARS), nullable=False),
    Column("score", Float, nullable=False),
    Column("rated_at", UTCDateTime, nullable=False),
    Index("ix_answer_ratings_prompt", "registered_model", "prompt_digest", "rated_at"),
)

dataset_versions_t = Table(
    "dataset_versions",
    metadata,
    auto_id(),
    Column("version_id", String(128), nullable=False, unique=True),
    Column("dataset", String(MAX_ID_CHARS), nullable=False),
    Column("task_type", String(32), nullable=False),
    Column("train_count", BigInteger, nullable=False),
    Column("eval_count", BigInteger, nullable=False),
    Column("eval_fraction", Float, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("uri", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_dataset_versions_dataset", "dataset", "id"),
)

labeling_functions_t = Table(
    "labeling_functions",
    metadata,
    auto_id(),
    Column("queue_id", AutoId, ForeignKey("queues.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
    UniqueConstraint("queue_id", "name", "version", name="uq_labeling_functions"),
)

# Events written with the changes they announce, and the events this service's consumers handled.
outbox_t = outbox_table(metadata, "labeling")
handled_t = handled_table(metadata, "labeling")
