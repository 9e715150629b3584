"""Dataset versions in SQL: immutable records of what a version holds and where its file is."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from llmops.contracts.events import DatasetVersionCreated
from llmops.core.convert import copy_fields
from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, keyset_page, utc, values_of
from llmops.labeling.domain.errors import InvalidArgument, NotFound
from llmops.labeling.domain.models import DatasetVersion, TaskType
from llmops.labeling.store.rows import check_id, dataset_version_of
from llmops.labeling.store.tables import dataset_versions_t


class SqlDatasetVersions(SqlStore):
    """Dataset version records (the files themselves live in the artifact store)."""

    def save_dataset_version(self, version: DatasetVersion) -> DatasetVersion:
        """Store a dataset version record; a version is immutable, so saving an existing id returns
        the stored record unchanged."""
        check_id("version_id", version.version_id)
        check_id("dataset", version.dataset)
        if not version.uri:
            raise InvalidArgument(f"dataset version {version.version_id} has no uri: write its file first")
        lineage = version.lineage
        try:
            with self._write() as conn:
                existing = conn.execute(
                    select(dataset_versions_t).where(dataset_versions_t.c.version_id == version.version_id)
                ).first()
                if existing is not None:
                    return dataset_version_of(existing)
                conn.execute(
                    insert(dataset_versions_t).values(
                        values_of(
                            dataset_versions_t,
                            version,
                            task_type=TaskType(version.task_type).value,
                            lineage={
                                "snapshot_ids": list(lineage.snapshot_ids),
                                "label_ids_count": lineage.label_ids_count,
                                "labeler_ids": list(lineage.labeler_ids),
                                "queues": list(lineage.queues),
                            },
                            created_at=utc(version.created_at),
                        )
                    )
                )
                self._announce(
                    conn,
                    copy_fields(
                        DatasetVersionCreated,
                        version,
                        snapshot_ids=list(lineage.snapshot_ids),
                        queues=list(lineage.queues),
                    ),
                )
        except IntegrityError:
            pass  # saved concurrently by another caller: read theirs below
        return self.get_dataset_version(version.version_id)

    def get_dataset_version(self, version_id: str) -> DatasetVersion:
        """Raises: NotFound: no such version."""
        with self._read() as conn:
            row = conn.execute(
                select(dataset_versions_t).where(dataset_versions_t.c.version_id == version_id)
            ).first()
        if row is None:
            raise NotFound(f"dataset version {version_id!r} not found")
        return dataset_version_of(row)

    def list_dataset_versions(
        self, dataset: str, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[DatasetVersion]:
        """Versions of ``dataset``, newest first (an unknown dataset has no versions)."""
        query = select(dataset_versions_t).where(dataset_versions_t.c.dataset == dataset)
        with self._read() as conn:
            page = keyset_page(conn, query, dataset_versions_t.c.id, page_size, page_token, descending=True)
        return page.map(dataset_version_of)
