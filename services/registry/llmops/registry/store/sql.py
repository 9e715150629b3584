"""The SQL backend of the registry store: SQLite by default, PostgreSQL by URL.

SQLAlchemy 2.x Core on :class:`llmops.core.sql.SqlStore` (engine, transactions, Alembic migrations
at open). ``sqlite:///path/registry.sqlite`` or ``postgresql+psycopg://user:password@host/db``.
One module per aggregate (models, versions, aliases, canaries, lineage, prompt templates), composed
here; the outbox and the
record of handled events are the kernel's (its SqlStore, from the tables). Concurrency, per backend:

* SQLite: every writing transaction starts with ``BEGIN IMMEDIATE``, which takes the database's write
  lock up front, so writers (threads or processes) are serialised and a read-then-write (read the
  latest version number, insert the next) cannot interleave with another; WAL keeps readers unblocked.
* PostgreSQL: a writing transaction locks its model's row (``SELECT ... FOR UPDATE``) before it reads
  anything it will decide on, so changes to one model are serialised and changes to different models
  run in parallel. Unique constraints ((model, version), training_job_id, model name) are the
  backstop: a transaction that loses a race on one is retried and then sees the winner's row.

Version numbers come from a counter on the model row (``latest_version``), not ``MAX(version) + 1``,
so the next number is decided under the same lock that serialises registrations.
"""

from __future__ import annotations

from pathlib import Path

from llmops.registry.store.base import RegistryStore
from llmops.registry.store.canaries import SqlCanaries
from llmops.registry.store.lineage import SqlLineage
from llmops.registry.store.models import SqlModels
from llmops.registry.store.tables import metadata
from llmops.registry.store.templates import SqlPromptTemplates
from llmops.registry.store.versions import SqlVersions


# SqlCanaries is SqlAliases with alias deletion that ends or refuses a canary (store/canaries.py).
class SqlRegistryStore(SqlModels, SqlVersions, SqlCanaries, SqlLineage, SqlPromptTemplates, RegistryStore):
    """The registry store on SQLite or PostgreSQL (see the module docstring).

    ``sqlite:///:memory:`` gives a private in-memory database on one shared connection, for
    single-threaded tests; use a file for anything concurrent.
    """

    metadata = metadata
    migrations = Path(__file__).parent / "migrations"
    # Names the Alembic version table and is the producer stamped on queued events.
    service = "registry"
