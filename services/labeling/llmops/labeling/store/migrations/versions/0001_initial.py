"""The labeling tables as the release before migrations made them (metadata.create_all)."""

import sqlalchemy as sa
from alembic import op

from llmops.core.sql import AutoId, UTCDateTime, auto_id

revision = "0001"
down_revision = None

# llmops.labeling.store.tables.MAX_ID_CHARS when this revision was written; a revision is frozen.
ID_CHARS = 256


def upgrade() -> None:
    op.create_table(
        "queues",
        auto_id(),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("label_set", sa.JSON, nullable=False),
        sa.Column("rating_min", sa.Float, nullable=False),
        sa.Column("rating_max", sa.Float, nullable=False),
        sa.Column("labelers_per_task", sa.Integer, nullable=False),
        sa.Column("lease_seconds", sa.Integer, nullable=False),
        sa.Column("instructions", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "tasks",
        auto_id(),
        sa.Column("task_id", sa.String(64), nullable=False, unique=True),
        sa.Column("queue_id", AutoId, sa.ForeignKey("queues.id"), nullable=False),
        sa.Column("document_id", sa.String(ID_CHARS)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("candidate_a", sa.Text, nullable=False),
        sa.Column("candidate_b", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("snapshot_id", sa.String(ID_CHARS), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("human_label_count", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime),
        sa.UniqueConstraint("queue_id", "document_id", name="uq_tasks_queue_document"),
    )
    op.create_index("ix_tasks_queue_state", "tasks", ["queue_id", "state", "id"])
    op.create_table(
        "labels",
        auto_id(),
        sa.Column("label_id", sa.String(64), nullable=False, unique=True),
        sa.Column("task_pk", AutoId, sa.ForeignKey("tasks.id"), nullable=False),
        sa.Column("queue_id", AutoId, sa.ForeignKey("queues.id"), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("labeler_id", sa.String(ID_CHARS), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("lease_id", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("task_pk", "source", "labeler_id", name="uq_labels_task_source_labeler"),
    )
    op.create_index("ix_labels_queue", "labels", ["queue_id", "id"])
    op.create_table(
        "leases",
        sa.Column("lease_id", sa.String(64), primary_key=True),
        sa.Column("task_pk", AutoId, sa.ForeignKey("tasks.id"), nullable=False),
        sa.Column("queue_id", AutoId, sa.ForeignKey("queues.id"), nullable=False),
        sa.Column("labeler_id", sa.String(ID_CHARS), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("released_at", UTCDateTime),
        sa.Column("outcome", sa.String(16)),
    )
    op.create_index("ix_leases_task_active", "leases", ["task_pk", "released_at", "expires_at"])
    op.create_index("ix_leases_queue_labeler", "leases", ["queue_id", "labeler_id", "released_at"])
    op.create_table(
        "skips",
        auto_id(),
        sa.Column("task_pk", AutoId, sa.ForeignKey("tasks.id"), nullable=False),
        sa.Column("labeler_id", sa.String(ID_CHARS), nullable=False),
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("task_pk", "labeler_id", name="uq_skips_task_labeler"),
    )
    op.create_table(
        "dataset_versions",
        auto_id(),
        sa.Column("version_id", sa.String(128), nullable=False, unique=True),
        sa.Column("dataset", sa.String(ID_CHARS), nullable=False),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("train_count", sa.BigInteger, nullable=False),
        sa.Column("eval_count", sa.BigInteger, nullable=False),
        sa.Column("eval_fraction", sa.Float, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("lineage", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_dataset_versions_dataset", "dataset_versions", ["dataset", "id"])
    op.create_table(
        "labeling_functions",
        auto_id(),
        sa.Column("queue_id", AutoId, sa.ForeignKey("queues.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("registered_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("queue_id", "name", "version", name="uq_labeling_functions"),
    )


def downgrade() -> None:
    # Children before the tables their foreign keys point at.
    for table in ("labeling_functions", "dataset_versions", "skips", "leases", "labels", "tasks", "queues"):
        op.drop_table(table)
