"""Typed values the registry store takes and returns (mirrors of the proto messages, without gRPC).

Enums are ``StrEnum`` so they are stored and logged as plain strings; their values are what the
proto's string fields carry (``AliasChange.operation``) or what an operator writes in a gate rule.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Comparator(enum.StrEnum):
    """How a gate rule compares a metric with its threshold; the value is the operator's spelling."""

    GTE = ">="
    LTE = "<="
    GT = ">"
    LT = "<"


class VersionStatus(enum.StrEnum):
    PENDING = "pending"  # registered, artifact not yet verified
    READY = "ready"  # artifact present; can be aliased and served
    FAILED = "failed"  # artifact missing or invalid
    ARCHIVED = "archived"  # retired; cannot be promoted


class AliasOperation(enum.StrEnum):
    """How an alias change was made (``AliasChange.operation``)."""

    SET = "set"  # operator override, no gate
    PROMOTE = "promote"  # gated
    ROLLBACK = "rollback"  # back to the previous holder
    DELETE = "delete"


class CanaryOutcome(enum.StrEnum):
    """How a canary ended (``ModelCanaryChanged.outcome``)."""

    PROMOTE = "promote"  # the alias moved to the challenger's version (gated)
    ROLLBACK = "rollback"  # the champion kept the alias


@dataclass(frozen=True)
class GateRule:
    """One condition a version's metrics must satisfy to be promoted."""

    metric: str
    comparator: Comparator
    threshold: float

    def __str__(self) -> str:
        # repr keeps every digit: a message must not round 0.79999 to 0.8.
        return f"{self.metric}{self.comparator.value}{self.threshold!r}"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    base_model: str
    gate: tuple[GateRule, ...]
    # Current aliases: alias -> version number.
    aliases: Mapping[str, int]
    latest_version: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class ModelDefaults:
    """What a model created on the fly (by a training.completed event) starts with."""

    description: str = ""
    base_model: str = ""
    gate: tuple[GateRule, ...] = ()


@dataclass(frozen=True)
class VersionSpec:
    """What CreateVersion (or a training.completed event) asks to register.

    ``base_model`` empty means the model's base model. ``trained_at`` is when the training job
    finished, when known (lineage shows it on the training job's node).
    """

    model: str
    artifact_uri: str
    base_model: str = ""
    adapter: bool = False
    adapter_kind: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    training_job_id: str = ""
    dataset_version_id: str = ""
    description: str = ""
    status: VersionStatus = VersionStatus.READY
    trained_at: dt.datetime | None = None
    # Carried into the models.version_registered event so one trace spans training and registry.
    trace_id: str = ""


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    artifact_uri: str
    base_model: str
    adapter: bool
    adapter_kind: str
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    status: VersionStatus
    training_job_id: str
    dataset_version_id: str
    description: str
    created_at: dt.datetime
    # Aliases currently pointing at this version, sorted.
    aliases: tuple[str, ...] = ()
    trained_at: dt.datetime | None = None


@dataclass(frozen=True)
class RegisteredVersion:
    """Result of registering a version: the version, and whether this call created it."""

    version: ModelVersion
    # False when the training job was already registered (a redelivered event or a retried call).
    created: bool


@dataclass(frozen=True)
class AliasChange:
    """An audit record of one alias move; versions are 0 where the alias did not (or no longer) exist."""

    id: int
    model: str
    alias: str
    from_version: int
    to_version: int
    actor: str
    reason: str
    operation: AliasOperation
    changed_at: dt.datetime


@dataclass(frozen=True)
class Canary:
    """A traffic split on ``alias`` between its holder (the champion arm) and ``challenger_alias``'s.

    The versions are those the aliases hold when the canary is read (0 where one holds none).
    """

    model: str
    alias: str
    challenger_alias: str
    share: float
    champion_version: int
    challenger_version: int
    actor: str
    reason: str
    updated_at: dt.datetime
    active: bool = True
    # Set once the canary has ended.
    outcome: CanaryOutcome | None = None


@dataclass(frozen=True)
class PromptTemplateSpec:
    """What CreatePromptTemplate asks to register; the version number is the store's to give."""

    name: str
    template: str
    system: str = ""
    # Every variable the template and system text use, except ``documents``.
    variables: tuple[str, ...] = ()
    description: str = ""
    created_by: str = ""


@dataclass(frozen=True)
class PromptTemplate:
    """One registered version of a prompt template (see llmops.core.prompt_templates)."""

    name: str
    version: int
    template: str
    system: str
    variables: tuple[str, ...]
    description: str
    created_by: str
    created_at: dt.datetime
    # Aliases currently pointing at this version, sorted.
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetVersionRecord:
    """A dataset version as labeling announced it (datasets.version_created)."""

    version_id: str
    dataset: str
    uri: str
    train_count: int
    eval_count: int
    snapshot_ids: tuple[str, ...]
    queues: tuple[str, ...]
    created_at: dt.datetime


@dataclass(frozen=True)
class IngestionBatchRecord:
    """An ingestion batch as ingestion announced it (ingestion.batch_completed)."""

    batch_id: str
    dataset: str
    snapshot_id: str
    snapshot_uri: str
    counts: Mapping[str, int]
    created_at: dt.datetime


class LineageNodeKind(enum.StrEnum):
    INGESTION_BATCH = "ingestion_batch"
    SNAPSHOT = "snapshot"
    DATASET_VERSION = "dataset_version"
    LABEL_SET = "label_set"
    TRAINING_JOB = "training_job"
    MODEL_VERSION = "model_version"
    DEPLOYMENT = "deployment"


@dataclass(frozen=True)
class LineageNode:
    kind: LineageNodeKind
    # "<kind>:<key>", so ids of different kinds never collide in the edges.
    id: str
    uri: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    created_at: dt.datetime | None = None


@dataclass(frozen=True)
class LineageEdge:
    """``from_id`` was used to produce ``to_id``."""

    from_id: str
    to_id: str
    relation: str


@dataclass(frozen=True)
class Lineage:
    # Upstream to downstream: ingestion batches first, deployments last.
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]
