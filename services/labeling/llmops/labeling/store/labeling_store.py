"""The labeling service's store: queues, tasks and leases, labels and dataset versions in one SQL
database (SQLite by default, PostgreSQL by URL), each aggregate in its own module.

SQLAlchemy Core with a sync engine (callers on an event loop run the methods in a thread). The
methods are safe to call from several threads and processes: SQLite writers take the write lock at
``BEGIN IMMEDIATE`` and readers never block in WAL mode; PostgreSQL locks candidate rows (see
tasks.py). Every method that takes ``now`` uses it for timestamps and lease expiry; it defaults to
the current time (UTC), and naive datetimes are taken as UTC.
"""

from __future__ import annotations

from pathlib import Path

from llmops.labeling.store.dataset_versions import SqlDatasetVersions
from llmops.labeling.store.labels import SqlLabels
from llmops.labeling.store.queues import SqlQueues
from llmops.labeling.store.ratings import SqlRatings
from llmops.labeling.store.tables import metadata
from llmops.labeling.store.tasks import SqlTasks


class LabelingStore(SqlQueues, SqlTasks, SqlLabels, SqlDatasetVersions, SqlRatings):
    """Persistence and concurrency rules of the labeling service; opening it migrates the schema.

    ``sqlite:///:memory:`` gives a private in-memory database on one shared connection, for
    single-threaded tests; use a file for anything concurrent.
    """

    metadata = metadata
    migrations = Path(__file__).parent / "migrations"
    service = "labeling"
