"""Every SQL store's schema is stated once (its tables) and its migrations agree with it.

A new store is made from the tables and stamped at the newest revision; a store of the release before
migrations (its frozen baseline schema) is stamped at 0001 and upgraded by every later revision to
exactly what the tables say: tables, columns, types, indexes and constraints (Alembic's
``compare_metadata``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from llmops.feedback.store import FeedbackStore
from llmops.ingestion.store.batches import BatchStore
from llmops.labeling.store import LabelingStore
from llmops.registry.store.sql import SqlRegistryStore
from llmops.testing.store_baselines import make_baseline_store
from llmops.training.store.job_store import JobStore

STORES: dict[str, Any] = {
    "feedback": FeedbackStore,
    "ingestion": BatchStore,
    "labeling": LabelingStore,
    "registry": SqlRegistryStore,
    "training": JobStore,
}


def _head(store_class: Any) -> str:
    config = Config()
    config.set_main_option("script_location", str(store_class.migrations))
    return ScriptDirectory.from_config(config).get_current_head()


def _state(url: str, store_class: Any, service: str) -> tuple[list[Any], list[str]]:
    """What differs between the database and the store's tables, and the recorded revisions."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": f"alembic_version_{service}", "compare_type": True}
        )
        diff = compare_metadata(context, store_class.metadata)
        versions = [v for (v,) in conn.exec_driver_sql(f"SELECT version_num FROM alembic_version_{service}")]
    engine.dispose()
    return diff, versions


@pytest.mark.parametrize("service", sorted(STORES))
def test_a_new_store_is_its_tables_at_the_newest_revision(service: str, tmp_path: Path) -> None:
    store_class = STORES[service]
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    store_class(url).close()
    assert _state(url, store_class, service) == ([], [_head(store_class)])
    # Opening it again applies nothing.
    store_class(url).close()
    assert _state(url, store_class, service) == ([], [_head(store_class)])


# Stores that a release before migrations already had (feedback's came later).
PREVIOUS = sorted(set(STORES) - {"feedback"})


@pytest.mark.parametrize("service", PREVIOUS)
def test_the_migrations_bring_a_store_of_the_previous_release_to_its_tables(
    service: str, tmp_path: Path
) -> None:
    store_class = STORES[service]
    url = make_baseline_store(tmp_path / "previous.sqlite", service)
    store_class(url).close()
    assert _state(url, store_class, service) == ([], [_head(store_class)])
