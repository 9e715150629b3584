"""Ingestion's batch store on llmops.core.sql: the Alembic schema, and stores the previous release made."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import insert, text

from llmops.core.sql import make_engine
from llmops.ingestion.store.batches import (
    SUCCEEDED,
    BatchStore,
    batches,
    seen_hashes,
)
from llmops.testing.store_baselines import make_baseline_store


def test_a_store_from_the_previous_release_keeps_its_batches_and_hashes(tmp_path: Path) -> None:
    created = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)
    # The previous release: its tables (frozen baseline schema), no Alembic version table.
    url = make_baseline_store(tmp_path / "ingestion.sqlite", "ingestion")
    old = make_engine(url)
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
            assert conn.execute(text("SELECT version_num FROM alembic_version_ingestion")).scalar() == "0002"
