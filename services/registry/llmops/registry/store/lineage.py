"""Lineage records: dataset versions and ingestion batches as their events announced them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table, insert, select
from sqlalchemy.exc import IntegrityError

from llmops.core.sql import SqlStore, chunks, values_of
from llmops.registry.domain.errors import InvalidArgument
from llmops.registry.domain.models import DatasetVersionRecord, IngestionBatchRecord
from llmops.registry.domain.values import MAX_ID_CHARS, check_model_name, check_text, check_version_number
from llmops.registry.store.base import LineageRecords
from llmops.registry.store.rows import (
    batch_of,
    change_of,
    dataset_version_of,
    load_version_by_number,
    model_row,
)
from llmops.registry.store.tables import alias_changes_t, batches_t, dataset_versions_t


class SqlLineage(SqlStore):
    """Where versions came from: recorded once per event, read back per version.

    A lineage record's fields are its table's columns, so it is stored as ``values_of(table, record)``.
    """

    def record_dataset_version(self, record: DatasetVersionRecord) -> bool:
        _check_lineage_id("version_id", record.version_id)
        return self._insert_once(dataset_versions_t, dataset_versions_t.c.version_id, record)

    def record_ingestion_batch(self, record: IngestionBatchRecord) -> bool:
        _check_lineage_id("batch_id", record.batch_id)
        return self._insert_once(batches_t, batches_t.c.batch_id, record)

    def lineage_records(self, model: str, version: int) -> LineageRecords:
        check_model_name(model)
        check_version_number(version)
        with self._read() as conn:
            m = model_row(conn, model)
            mv = load_version_by_number(conn, m, version)
            dataset_version = None
            batches: list[IngestionBatchRecord] = []
            if mv.dataset_version_id:
                row = conn.execute(
                    select(dataset_versions_t).where(dataset_versions_t.c.version_id == mv.dataset_version_id)
                ).first()
                if row is not None:
                    dataset_version = dataset_version_of(row)
                    for chunk in chunks(list(dataset_version.snapshot_ids)):
                        batches.extend(
                            batch_of(r)
                            for r in conn.execute(select(batches_t).where(batches_t.c.snapshot_id.in_(chunk)))
                        )
            history = [
                change_of(r, model)
                for r in conn.execute(
                    select(alias_changes_t)
                    .where(alias_changes_t.c.model_id == m.id)
                    .order_by(alias_changes_t.c.id)
                )
            ]
        return LineageRecords(mv, dataset_version, batches, history)

    def _insert_once(self, table: Table, key_column: Column[Any], record: Any) -> bool:
        # Lineage records are immutable facts: the first delivery wins, redelivery changes nothing.
        key = getattr(record, key_column.name)
        try:
            with self._write() as conn:
                if conn.execute(select(key_column).where(key_column == key)).first() is not None:
                    return False
                conn.execute(insert(table).values(values_of(table, record)))
                return True
        except IntegrityError:
            return False


def _check_lineage_id(field: str, value: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is empty")
    check_text(value, field, MAX_ID_CHARS)
