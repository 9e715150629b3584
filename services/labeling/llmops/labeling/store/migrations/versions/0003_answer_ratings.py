"""Answer ratings: the feedback scores labeling handled, with their answers (preference pairs)."""

import sqlalchemy as sa
from alembic import op

from llmops.core.sql import UTCDateTime, auto_id

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "answer_ratings",
        auto_id(),
        sa.Column("feedback_id", sa.String(256), nullable=False, unique=True),
        sa.Column("request_id", sa.String(256), nullable=False),
        sa.Column("registered_model", sa.String(256), nullable=False),
        sa.Column("prompt_digest", sa.String(64), nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("completion", sa.Text, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=False),
        sa.Column("arm", sa.String(256), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("rated_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_answer_ratings_prompt", "answer_ratings", ["registered_model", "prompt_digest", "rated_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_answer_ratings_prompt", table_name="answer_ratings")
    op.drop_table("answer_ratings")
