"""The training service's tables: the schema a new store is made with (and the newest revision in
``migrations/versions`` upgrades an older store to)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, Text

from llmops.core.handled_events import handled_table
from llmops.core.outbox import outbox_table
from llmops.core.sql import UTCDateTime, auto_id

metadata = MetaData()

# A change here is a new migration (migrations/versions/NNNN_<what>.py), never an edit of a landed one.
jobs_t = Table(
    "jobs",
    metadata,
    # Insertion order: the queue is FIFO on it, and listings page on it (newest first).
    auto_id(),
    Column("job_id", String(64), nullable=False, unique=True),
    # NULLs are distinct in a unique index, so jobs submitted without a key never collide.
    Column("idempotency_key", String(256), unique=True),
    Column("model_name", String(128), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    # Where the job reads its data and base model from, resolved once at submission.
    Column("dataset_uri", Text, nullable=False),
    Column("base_model_path", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("progress", JSON),
    Column("metrics", JSON, nullable=False),
    Column("adapter_uri", Text, nullable=False),
    Column("error", Text, nullable=False),
    # The Ray Train run name of the latest attempt (<job_id>, then <job_id>-r<n> after a restart).
    Column("ray_run_name", String(128), nullable=False),
    Column("attempts", Integer, nullable=False),
    # The registry's version of the adapter (from models.version_registered); 0 until then.
    Column("registered_version", Integer, nullable=False, default=0),
    Index("ix_jobs_state", "state", "id"),
    Index("ix_jobs_model", "model_name", "id"),
)

# Events written with the changes they announce, and the events this service's consumers handled.
outbox_t = outbox_table(metadata, "training")
handled_t = handled_table(metadata, "training")
