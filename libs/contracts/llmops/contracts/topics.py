"""Every Kafka topic of the platform, in one place.

Names follow ``llmops.<domain>.<event>.v<N>``; one event type per topic, keyed by the entity id.
A message that cannot be processed goes to ``<topic>.dlq``.
"""

from __future__ import annotations

DLQ_SUFFIX = ".dlq"

DOCUMENTS_RAW = "llmops.documents.raw.v1"
DOCUMENTS_CLEANED = "llmops.documents.cleaned.v1"
INGESTION_BATCH_COMPLETED = "llmops.ingestion.batch_completed.v1"
LABELS_CREATED = "llmops.labels.created.v1"
DATASETS_VERSION_CREATED = "llmops.datasets.version_created.v1"
TRAINING_REQUESTED = "llmops.training.requested.v1"
TRAINING_PROGRESS = "llmops.training.progress.v1"
TRAINING_COMPLETED = "llmops.training.completed.v1"
TRAINING_FAILED = "llmops.training.failed.v1"
MODELS_VERSION_REGISTERED = "llmops.models.version_registered.v1"
MODELS_ALIAS_CHANGED = "llmops.models.alias_changed.v1"
MODELS_CANARY_CHANGED = "llmops.models.canary_changed.v1"
INFERENCE_LOGGED = "llmops.inference.logged.v1"
RETRIEVAL_LOGGED = "llmops.retrieval.logged.v1"
FEEDBACK_SUBMITTED = "llmops.feedback.submitted.v1"
FEEDBACK_ACCEPTED = "llmops.feedback.accepted.v1"
FEEDBACK_REJECTED = "llmops.feedback.rejected.v1"
MONITORING_DRIFT_DETECTED = "llmops.monitoring.drift_detected.v1"
MONITORING_ALERT = "llmops.monitoring.alert.v1"
LOOP_STEPPED = "llmops.loop.stepped.v1"
MONITORING_ANSWER_JUDGED = "llmops.monitoring.answer_judged.v1"


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX
