"""The labeling service's store: queues, tasks, leases, labels and dataset versions in SQL."""

from llmops.labeling.store.sql import CreatedTasks, LabelingStore

__all__ = ["CreatedTasks", "LabelingStore"]
