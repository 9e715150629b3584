"""The jobs table as the release before migrations made it (metadata.create_all)."""

import sqlalchemy as sa
from alembic import op

from llmops.core.sql import UTCDateTime, auto_id

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        auto_id(),
        sa.Column("job_id", sa.String(64), nullable=False, unique=True),
        sa.Column("idempotency_key", sa.String(256), unique=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dataset_uri", sa.Text, nullable=False),
        sa.Column("base_model_path", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("progress", sa.JSON),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("adapter_uri", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("ray_run_name", sa.String(128), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("registered_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_jobs_state", "jobs", ["state", "id"])
    op.create_index("ix_jobs_model", "jobs", ["model_name", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_model", table_name="jobs")
    op.drop_index("ix_jobs_state", table_name="jobs")
    op.drop_table("jobs")
