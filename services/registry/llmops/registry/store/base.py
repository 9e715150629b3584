"""The registry's abstract store: what the service needs from persistence, whatever the backend.

As in MLflow's model registry (``mlflow/store/model_registry/abstract_store.py``) there is one
backend per URL scheme, chosen by :func:`llmops.registry.store.open_store`; the SQL backend serves
``sqlite`` and ``postgresql``. Every method is synchronous and safe to call from several threads
(callers on an event loop run them with ``asyncio.to_thread``).

Contract every backend keeps:

* versions of a model number 1, 2, 3... with no gaps and no duplicates, also under concurrent
  registration (from several threads, processes or replicas);
* registering a version whose ``training_job_id`` is already registered returns that version and
  creates nothing (a redelivered training.completed registers once);
* an alias change, its history record and its models.alias_changed event are written in one
  transaction, as are a new version and its models.version_registered event (the outbox), so an
  accepted change is never lost and never announced without having happened;
* Promote checks the gate in the same transaction that moves the alias, so a concurrent SetGate
  cannot slip between the check and the move;
* a canary's start, change or end is written with its models.canary_changed event, and an end with
  the alias moves it makes (the gated promotion, the challenger alias's deletion) and their
  models.alias_changed events, in one transaction;
* prompt template versions of a name number 1, 2, 3... with no gaps and no duplicates.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from llmops.contracts.vocabulary import CHALLENGER_ALIAS, DEFAULT_ALIAS
from llmops.core.handled_events import HandledEvents
from llmops.core.outbox import Outbox
from llmops.core.sql import DEFAULT_PAGE_SIZE, Page
from llmops.registry.domain.models import (
    AliasChange,
    AliasOperation,
    Canary,
    CanaryOutcome,
    DatasetVersionRecord,
    GateRule,
    IngestionBatchRecord,
    ModelDefaults,
    ModelVersion,
    PromptTemplate,
    PromptTemplateSpec,
    RegisteredModel,
    RegisteredVersion,
    VersionSpec,
    VersionStatus,
)


@dataclass(frozen=True)
class LineageRecords:
    """Everything recorded about where one version came from and where it went."""

    version: ModelVersion
    dataset_version: DatasetVersionRecord | None
    batches: Sequence[IngestionBatchRecord]
    # Every alias change of the version's model, oldest first.
    alias_history: Sequence[AliasChange]


class RegistryStore(abc.ABC):
    """Models, versions, aliases with their history, canaries, prompt templates, lineage records and
    the event outbox.

    Methods that take ``now`` use it for timestamps; it defaults to the current time (UTC).
    Unknown models, versions or aliases raise ``NotFound``; malformed input raises
    ``InvalidArgument`` naming the field.
    """

    # The events the store's changes queued (relayed to Kafka by the service's runtime), and the
    # record of handled events (llmops.core.outbox, llmops.core.handled_events).
    outbox: Outbox | None
    handled: HandledEvents | None

    # --- models ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        base_model: str = "",
        gate: Sequence[GateRule] = (),
        now: dt.datetime | None = None,
    ) -> RegisteredModel:
        """Create a registered model.

        Raises:
            AlreadyExists: a model with that name exists.
        """

    @abc.abstractmethod
    def get_model(self, name: str) -> RegisteredModel:
        """The model ``name`` with its current aliases."""

    @abc.abstractmethod
    def list_models(self, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = "") -> Page[RegisteredModel]:
        """Models ordered by name."""

    @abc.abstractmethod
    def set_gate(
        self, name: str, gate: Sequence[GateRule], *, now: dt.datetime | None = None
    ) -> RegisteredModel:
        """Replace the promotion gate of ``name`` (empty removes it)."""

    # --- versions -------------------------------------------------------------------------------

    @abc.abstractmethod
    def register_version(
        self,
        spec: VersionSpec,
        *,
        defaults: ModelDefaults | None = None,
        now: dt.datetime | None = None,
    ) -> RegisteredVersion:
        """Register the next version of ``spec.model`` and queue its models.version_registered event.

        Args:
            spec: the version; an empty base_model takes the model's.
            defaults: create the model with these when it does not exist; None: it must exist.

        Raises:
            NotFound: the model does not exist and ``defaults`` is None.
            AlreadyExists: the training job is already registered as a version of another model.
            InvalidArgument: the spec is invalid, or neither it nor the model names a base model.
        """

    @abc.abstractmethod
    def get_version(self, model: str, version: int) -> ModelVersion:
        """One version of ``model``."""

    @abc.abstractmethod
    def get_version_by_alias(self, model: str, alias: str) -> ModelVersion:
        """The version ``alias`` of ``model`` points at now."""

    @abc.abstractmethod
    def list_versions(
        self, model: str, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[ModelVersion]:
        """Versions of ``model``, newest first."""

    @abc.abstractmethod
    def versions_with_status(self, status: VersionStatus, limit: int = 100) -> list[ModelVersion]:
        """Up to ``limit`` versions (of any model) with ``status``, oldest first."""

    @abc.abstractmethod
    def set_version_status(self, model: str, version: int, status: VersionStatus) -> ModelVersion:
        """Set the status of one version (after its artifact was checked)."""

    # --- aliases --------------------------------------------------------------------------------

    @abc.abstractmethod
    def move_alias(
        self,
        model: str,
        alias: str,
        version: int,
        *,
        operation: AliasOperation,
        actor: str = "",
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> AliasChange:
        """Point ``alias`` at ``version`` (SET: ungated; PROMOTE: only if the version passes the gate).

        Pointing an alias at the version it already points at changes and records nothing; the
        returned change then has ``id`` 0 and ``from_version == to_version``.

        Raises:
            VersionNotReady: the version is not READY.
            GateFailed: PROMOTE and the version fails the gate (the message lists every failed rule).
        """

    @abc.abstractmethod
    def delete_alias(
        self, model: str, alias: str, *, actor: str = "", reason: str = "", now: dt.datetime | None = None
    ) -> AliasChange:
        """Remove ``alias`` from ``model``.

        Deleting a canary's challenger alias ends that canary as a rollback (its end is announced with
        the deletion).

        Raises:
            FailedPrecondition: a canary runs on ``alias`` (end it first).
        """

    @abc.abstractmethod
    def rollback_alias(
        self, model: str, alias: str, *, actor: str = "", reason: str = "", now: dt.datetime | None = None
    ) -> AliasChange:
        """Move ``alias`` back to its earlier holder (see :mod:`llmops.registry.domain.aliases`).

        Raises:
            NotFound: the alias has no history.
            NothingToRollBack: there is no earlier holder.
            VersionNotReady: the earlier holder is no longer READY.
        """

    @abc.abstractmethod
    def alias_history(
        self, model: str, alias: str = "", page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[AliasChange]:
        """Changes of ``alias`` (every alias when empty), newest first.

        Raises:
            NotFound: the model does not exist, or ``alias`` was never set on it.
        """

    # --- canaries -------------------------------------------------------------------------------

    @abc.abstractmethod
    def set_canary(
        self,
        model: str,
        alias: str = DEFAULT_ALIAS,
        challenger_alias: str = CHALLENGER_ALIAS,
        *,
        share: float,
        actor: str = "",
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> Canary:
        """Start a canary on ``alias`` against ``challenger_alias``, or change its share.

        Setting the share a canary already has changes and announces nothing.

        Raises:
            InvalidArgument: ``share`` outside [0, 1], or the two aliases are the same.
            FailedPrecondition: an alias holds no READY version (the message names it), a canary on
                ``alias`` runs against another challenger, or an alias is in another canary.
        """

    @abc.abstractmethod
    def get_canary(self, model: str, alias: str = DEFAULT_ALIAS) -> Canary:
        """The canary on ``alias``, with the versions its aliases hold now (NotFound when none runs)."""

    @abc.abstractmethod
    def end_canary(
        self,
        model: str,
        alias: str = DEFAULT_ALIAS,
        *,
        outcome: CanaryOutcome,
        actor: str = "",
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> Canary:
        """End the canary on ``alias``: PROMOTE moves ``alias`` to the challenger's version through the
        gate, then both outcomes delete the challenger alias.

        Returns:
            The ended canary (active False, share 0, the outcome, the versions after the end).

        Raises:
            NotFound: no canary runs on ``alias``.
            GateFailed: PROMOTE and the challenger's version fails the gate; nothing changes.
        """

    # --- prompt templates -----------------------------------------------------------------------

    @abc.abstractmethod
    def create_prompt_template(
        self, spec: PromptTemplateSpec, *, now: dt.datetime | None = None
    ) -> PromptTemplate:
        """Register the next version of ``spec.name`` (1 for a new name).

        Raises:
            InvalidArgument: the template does not check (llmops.core.prompt_templates), or a field
                is invalid; the message names the problem.
        """

    @abc.abstractmethod
    def get_prompt_template(
        self, name: str, *, version: int | None = None, alias: str = ""
    ) -> PromptTemplate:
        """One version of ``name``: by number, by alias, or the latest when neither is given."""

    @abc.abstractmethod
    def list_prompt_templates(
        self, name: str = "", page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[PromptTemplate]:
        """The versions of ``name``, newest first; with no name, the latest version of every name."""

    @abc.abstractmethod
    def set_prompt_template_alias(
        self, name: str, alias: str, version: int, *, actor: str = "", now: dt.datetime | None = None
    ) -> PromptTemplate:
        """Point ``alias`` of template ``name`` at ``version`` (which must exist)."""

    # --- lineage --------------------------------------------------------------------------------

    @abc.abstractmethod
    def record_dataset_version(self, record: DatasetVersionRecord) -> bool:
        """Record a dataset version once; returns False when it was already recorded."""

    @abc.abstractmethod
    def record_ingestion_batch(self, record: IngestionBatchRecord) -> bool:
        """Record an ingestion batch once; returns False when it was already recorded."""

    @abc.abstractmethod
    def lineage_records(self, model: str, version: int) -> LineageRecords:
        """What :func:`llmops.registry.domain.lineage.assemble_lineage` needs for one version."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
