"""The registry's tables (SQLAlchemy Core): the schema a new store is made with.

A change to a table here needs the same change as a new Alembic revision in ``migrations/versions``
(a store made by an earlier release is upgraded by those). Table names are
prefixed where a generic name could clash with another service's tables in a shared PostgreSQL
database.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from llmops.core.handled_events import handled_table
from llmops.core.outbox import outbox_table
from llmops.core.sql import AutoId, UTCDateTime, auto_id
from llmops.registry.domain.values import MAX_ID_CHARS

metadata = MetaData()

models_t = Table(
    "registered_models",
    metadata,
    auto_id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("base_model", Text, nullable=False),
    # [{"metric": ..., "comparator": ">=", "threshold": ...}, ...]
    Column("gate", JSON, nullable=False),
    # The highest version number given out; the next registration takes latest_version + 1.
    Column("latest_version", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

versions_t = Table(
    "model_versions",
    metadata,
    auto_id(),
    Column("model_id", AutoId, ForeignKey("registered_models.id"), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("base_model", Text, nullable=False),
    Column("adapter", Boolean, nullable=False),
    Column("adapter_kind", String(64), nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    # NULL when the version was not made by a training job; NULLs are distinct, so only real job ids
    # are unique: one job, one version.
    Column("training_job_id", String(MAX_ID_CHARS), unique=True),
    Column("dataset_version_id", String(MAX_ID_CHARS), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("trained_at", UTCDateTime),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    Index("ix_model_versions_status", "status", "id"),
)

aliases_t = Table(
    "model_aliases",
    metadata,
    Column("model_id", AutoId, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
)

alias_changes_t = Table(
    "model_alias_changes",
    metadata,
    # Insertion order is history order: "newest first" is ORDER BY id DESC.
    auto_id(),
    Column("model_id", AutoId, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", BigInteger, nullable=False),
    Column("to_version", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("operation", String(16), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("ix_model_alias_changes_model_alias", "model_id", "alias", "id"),
)

canaries_t = Table(
    "model_canaries",
    metadata,
    Column("model_id", AutoId, ForeignKey("registered_models.id"), nullable=False),
    # The alias requests name; its holder is the champion arm. One canary per alias.
    Column("alias", String(64), nullable=False),
    Column("challenger_alias", String(64), nullable=False),
    Column("share", Float, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model_id", "alias", name="pk_model_canaries"),
    # An alias is the challenger of one canary at most (which canary its deletion ends is then clear).
    UniqueConstraint("model_id", "challenger_alias", name="uq_model_canaries_challenger"),
)

templates_t = Table(
    "prompt_templates",
    metadata,
    auto_id(),
    Column("name", String(200), nullable=False, unique=True),
    # The highest version number given out; the next registration takes latest_version + 1 (under
    # this row's lock, as model versions are numbered).
    Column("latest_version", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

template_versions_t = Table(
    "prompt_template_versions",
    metadata,
    auto_id(),
    Column("template_id", AutoId, ForeignKey("prompt_templates.id"), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("template", Text, nullable=False),
    Column("system", Text, nullable=False),
    # The declared variables, sorted: ["question", ...].
    Column("variables", JSON, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("template_id", "version", name="uq_prompt_template_versions_template_version"),
)

template_aliases_t = Table(
    "prompt_template_aliases",
    metadata,
    Column("template_id", AutoId, ForeignKey("prompt_templates.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("template_id", "alias", name="pk_prompt_template_aliases"),
)

dataset_versions_t = Table(
    "lineage_dataset_versions",
    metadata,
    Column("version_id", String(MAX_ID_CHARS), primary_key=True),
    Column("dataset", String(MAX_ID_CHARS), nullable=False),
    Column("uri", Text, nullable=False),
    Column("train_count", BigInteger, nullable=False),
    Column("eval_count", BigInteger, nullable=False),
    Column("snapshot_ids", JSON, nullable=False),
    Column("queues", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

batches_t = Table(
    "lineage_ingestion_batches",
    metadata,
    Column("batch_id", String(MAX_ID_CHARS), primary_key=True),
    Column("dataset", String(MAX_ID_CHARS), nullable=False),
    # Content addressed: batches with the same content share a snapshot.
    Column("snapshot_id", String(MAX_ID_CHARS), nullable=False, index=True),
    Column("snapshot_uri", Text, nullable=False),
    Column("counts", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

outbox_t = outbox_table(metadata, "registry")
handled_t = handled_table(metadata, "registry")
