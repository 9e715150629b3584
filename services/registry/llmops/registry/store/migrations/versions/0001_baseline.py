"""Baseline: the registry store as the release before migrations made it (``llmops.core.sql.migrate``)."""

revision = "0001"
down_revision = None


def upgrade() -> None:
    pass
