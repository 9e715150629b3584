"""Initial: the feedback store's first release; a new database is made from its tables
(``llmops.core.sql.migrate``), so this revision changes nothing."""

revision = "0001"
down_revision = None


def upgrade() -> None:
    pass
