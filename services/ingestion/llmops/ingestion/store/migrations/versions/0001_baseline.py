"""Baseline: the ingestion schema as the release before migrations made it (``metadata.create_all``).

A database from that release is stamped here and upgraded; a new database is made from the tables'
definitions and stamped at the newest revision (``llmops.core.sql.migrate``). A change to the schema
is a new revision here and the same change in ``store/tables.py``; the store tests check that both agree.
"""

revision = "0001"
down_revision = None


def upgrade() -> None:
    pass
