"""The job store: training jobs in SQL (SQLite by default, PostgreSQL by URL), migrated with Alembic."""

from llmops.training.store.job_store import Job, JobStore
from llmops.training.store.tables import jobs_t, metadata

__all__ = ["Job", "JobStore", "jobs_t", "metadata"]
