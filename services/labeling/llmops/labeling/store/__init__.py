"""The labeling service's store: queues, tasks, leases, labels and dataset versions in SQL."""

from llmops.labeling.store.labeling_store import LabelingStore
from llmops.labeling.store.tasks import CreatedTasks

__all__ = ["CreatedTasks", "LabelingStore"]
