"""The job store: training jobs in SQL (SQLite by default, PostgreSQL by URL), migrated with Alembic."""

from llmops.training.store.job_store import Job, JobStore, Page
from llmops.training.store.tables import jobs_t, metadata

__all__ = ["Job", "JobStore", "Page", "jobs_t", "metadata"]
