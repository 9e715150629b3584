"""Ingestion's batch store on llmops.core.sql: the Alembic schema, and stores the previous release made."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import insert, text

from llmops.core.sql import make_engine
from llmops.ingestion.store.batches import (
    SUCCEEDED,
    BatchRecord,
    BatchStore,
    batches,
    metadata,
    seen_hashes,
)


def test_a_store_from_the_previous_release_keeps_its_batches_and_hashes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ingestion.sqlite'}"
    created = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)
    # The previous release: tables from metadata.create_all, no Alembic version table.
    old = make_engine(url)
    metadata.create_all(old)
    with old.begin() as conn:
        conn.execute(
            insert(batches).values(
                batch_id="batch-old",
                dataset="docs",
                state=SUCCEEDED,
                source_description="kafka:documents.raw",
                metadata={"team": "support"},
                counts={"received": 2, "kept": 1},
                errors=[],
                snapshot_id="snap-1",
                snapshot_uri="file:///artifacts/snap-1.parquet",
                created_at=created,
            )
        )
        conn.execute(insert(seen_hashes).values(content_hash="h1", document_id="d1", batch_id="batch-old"))
    old.dispose()

    with BatchStore(url) as store:
        record = store.get("batch-old")
        assert record is not None
        assert (record.dataset, record.state, record.snapshot_id) == ("docs", SUCCEEDED, "snap-1")
        assert record.metadata == {"team": "support"} and record.counts == {"received": 2, "kept": 1}
        assert record.created_at == created and record.completed_at is None
        assert store.load_hashes() == {"h1"}
        with store._read() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version_ingestion")).scalar() == "0001"


def test_a_new_store_gets_the_schema_of_its_tables(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    with BatchStore(url) as store:
        store.create(BatchRecord(batch_id="b1", dataset="docs", state="RECEIVING"))
        store.add_hashes([("h1", "d1", "b1"), ("h1", "d2", "b1")])
        assert store.get("b1") is not None and store.load_hashes() == {"h1"}
        with store._read() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": "alembic_version_ingestion", "compare_type": True}
            )
            diff = compare_metadata(context, metadata)
    # Migration 0001 makes exactly the tables, columns, types and indexes the store declares.
    assert diff == []
    # Opening again finds the head revision and changes nothing.
    with BatchStore(url) as store:
        assert store.get("b1") is not None
