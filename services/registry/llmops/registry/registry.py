"""What the registry does on top of its store: registering versions from training events, checking
artifacts, moving aliases, running canaries, keeping prompt templates and recording lineage.

Events leave through the kernel's outbox (llmops.core.outbox): the store writes each event in the
transaction of the change it announces, and the service's relay sends them in order and forgets them
once Kafka has acknowledged them. A change is therefore never lost when the broker is down (it is sent
when the broker is back) and never announced when the change did not happen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

import fsspec

from llmops.contracts.events import (
    DatasetVersionCreated,
    IngestionBatchCompleted,
    TrainingCompleted,
)
from llmops.core.convert import copy_fields
from llmops.registry.domain.lineage import assemble_lineage
from llmops.registry.domain.models import (
    AliasChange,
    AliasOperation,
    Canary,
    CanaryOutcome,
    DatasetVersionRecord,
    GateRule,
    IngestionBatchRecord,
    Lineage,
    ModelDefaults,
    ModelVersion,
    PromptTemplate,
    PromptTemplateSpec,
    RegisteredModel,
    RegisteredVersion,
    VersionSpec,
    VersionStatus,
)
from llmops.registry.store.base import RegistryStore

log = logging.getLogger(__name__)


def adapter_kind_of(method: str) -> str:
    """The adapter kind a training method produces (``sft_lora`` and ``dpo_lora`` give ``lora``)."""
    method = method.strip().lower()
    if method == "lora" or method.endswith("_lora"):
        return "lora"
    if method == "qlora" or method.endswith("_qlora"):
        return "qlora"
    # An unknown method still produced an adapter (training.completed carries adapter_uri); keep its
    # name so the kind is not silently wrong.
    return method


def check_artifact(uri: str) -> VersionStatus:
    """READY when the artifact at ``uri`` exists, FAILED when it does not, PENDING when it cannot be told.

    Blocking (file system or object store I/O); run it in a thread.
    """
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        return VersionStatus.READY if fs.exists(path) else VersionStatus.FAILED
    except Exception as exc:  # noqa: BLE001 - any store error means "cannot tell yet", not "missing"
        log.warning("cannot check artifact %s (%s); the version stays pending and is checked again", uri, exc)
        return VersionStatus.PENDING


class Registry:
    """The registry's behaviour; the gRPC servicer and the Kafka handlers call into it."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        auto_create_models: bool = True,
        default_gate: Sequence[GateRule] = (),
        verify_artifacts: bool = True,
        artifact_check_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.auto_create_models = auto_create_models
        self.default_gate = tuple(default_gate)
        self.verify_artifacts = verify_artifacts
        self.artifact_check_timeout = artifact_check_timeout

    # --- models ---------------------------------------------------------------------------------

    async def set_gate(self, model: str, gate: Sequence[GateRule], actor: str) -> RegisteredModel:
        """Replace the gate of ``model``; who changed it is logged (the model keeps ``updated_at``)."""
        updated = await asyncio.to_thread(self.store.set_gate, model, gate)
        log.info("gate of %s set to [%s] by %r", model, ", ".join(map(str, updated.gate)), actor)
        return updated

    # --- versions -------------------------------------------------------------------------------

    async def create_version(
        self, spec: VersionSpec, defaults: ModelDefaults | None = None
    ) -> RegisteredVersion:
        """Check the artifact, then register the version; a known training job returns its version."""
        status = await self._artifact_status(spec.artifact_uri)
        registered = await asyncio.to_thread(
            self.store.register_version, _with_status(spec, status), defaults=defaults
        )
        if registered.created:
            log.info(
                "registered %s version %d (%s) from %s",
                registered.version.model,
                registered.version.version,
                registered.version.status.value,
                registered.version.artifact_uri,
            )
        return registered

    async def _artifact_status(self, uri: str) -> VersionStatus:
        if not self.verify_artifacts:
            return VersionStatus.READY
        try:
            return await asyncio.wait_for(asyncio.to_thread(check_artifact, uri), self.artifact_check_timeout)
        except TimeoutError:
            log.warning(
                "checking artifact %s took over %.0fs; the version stays pending",
                uri,
                self.artifact_check_timeout,
            )
            return VersionStatus.PENDING

    async def recheck_pending(self) -> int:
        """Check the artifacts of PENDING versions again; returns how many were settled."""
        settled = 0
        for version in await asyncio.to_thread(self.store.versions_with_status, VersionStatus.PENDING):
            status = await self._artifact_status(version.artifact_uri)
            if status != VersionStatus.PENDING:
                await asyncio.to_thread(self.store.set_version_status, version.model, version.version, status)
                log.info("%s version %d is now %s", version.model, version.version, status.value)
                settled += 1
        return settled

    # --- aliases --------------------------------------------------------------------------------

    async def move_alias(
        self, model: str, alias: str, version: int, operation: AliasOperation, actor: str, reason: str
    ) -> AliasChange:
        """SetAlias (operation SET, ungated) or Promote (operation PROMOTE, gated)."""
        change = await asyncio.to_thread(
            self.store.move_alias,
            model,
            alias,
            version,
            operation=operation,
            actor=actor,
            reason=reason,
        )
        self._announce(change)
        return change

    async def delete_alias(self, model: str, alias: str, actor: str, reason: str) -> AliasChange:
        change = await asyncio.to_thread(self.store.delete_alias, model, alias, actor=actor, reason=reason)
        self._announce(change)
        return change

    async def rollback(self, model: str, alias: str, actor: str, reason: str) -> AliasChange:
        change = await asyncio.to_thread(self.store.rollback_alias, model, alias, actor=actor, reason=reason)
        self._announce(change)
        return change

    def _announce(self, change: AliasChange) -> None:
        if change.id:
            log.info(
                "%s@%s: %d -> %d (%s by %r: %s)",
                change.model,
                change.alias,
                change.from_version,
                change.to_version,
                change.operation.value,
                change.actor,
                change.reason,
            )

    # --- canaries -------------------------------------------------------------------------------

    async def set_canary(
        self, model: str, alias: str, challenger_alias: str, share: float, actor: str, reason: str
    ) -> Canary:
        """Start a canary on ``model@alias`` against ``challenger_alias``, or change its share."""
        canary = await asyncio.to_thread(
            self.store.set_canary, model, alias, challenger_alias, share=share, actor=actor, reason=reason
        )
        log.info(
            "canary on %s@%s (version %d): %s of traffic to %s (version %d) (by %r: %s)",
            canary.model,
            canary.alias,
            canary.champion_version,
            f"{canary.share:.2%}",
            canary.challenger_alias,
            canary.challenger_version,
            actor,
            reason,
        )
        return canary

    async def end_canary(
        self, model: str, alias: str, outcome: CanaryOutcome, actor: str, reason: str
    ) -> Canary:
        """End the canary on ``model@alias`` with ``outcome`` (promote is gated)."""
        ended = await asyncio.to_thread(
            self.store.end_canary, model, alias, outcome=outcome, actor=actor, reason=reason
        )
        log.info(
            "canary on %s@%s ended: %s; %s now holds version %d (by %r: %s)",
            ended.model,
            ended.alias,
            outcome.value,
            ended.alias,
            ended.champion_version,
            actor,
            reason,
        )
        return ended

    # --- prompt templates -----------------------------------------------------------------------

    async def create_prompt_template(self, spec: PromptTemplateSpec) -> PromptTemplate:
        created = await asyncio.to_thread(self.store.create_prompt_template, spec)
        log.info(
            "prompt template %s version %d registered by %r", created.name, created.version, spec.created_by
        )
        return created

    async def set_prompt_template_alias(
        self, name: str, alias: str, version: int, actor: str
    ) -> PromptTemplate:
        # Who moved it is kept on the alias's row and logged; there is no history of template aliases.
        moved = await asyncio.to_thread(
            self.store.set_prompt_template_alias, name, alias, version, actor=actor
        )
        log.info("prompt template %s@%s -> version %d (by %r)", name, alias, version, actor)
        return moved

    # --- lineage --------------------------------------------------------------------------------

    async def lineage(self, model: str, version: int) -> Lineage:
        records = await asyncio.to_thread(self.store.lineage_records, model, version)
        return assemble_lineage(
            records.version,
            dataset_version=records.dataset_version,
            batches=records.batches,
            alias_history=records.alias_history,
        )

    # --- events in ------------------------------------------------------------------------------

    async def on_training_completed(self, event: TrainingCompleted) -> ModelVersion:
        """Register the job's adapter as the next version of its model (once per job)."""
        spec = VersionSpec(
            model=event.model_name,
            artifact_uri=event.adapter_uri,
            base_model=event.base_model,
            adapter=True,
            adapter_kind=adapter_kind_of(event.method),
            metrics=dict(event.metrics),
            # The method is a training parameter like the others; lineage shows it on the job.
            params={"method": event.method, **event.params},
            training_job_id=event.job_id,
            dataset_version_id=event.dataset_version_id,
            description=f"trained by job {event.job_id} ({event.method})",
            trained_at=event.occurred_at,
            trace_id=event.trace_id,
        )
        defaults = None
        if self.auto_create_models:
            defaults = ModelDefaults(
                description=f"created by the registry for training job {event.job_id}",
                base_model=event.base_model,
                gate=self.default_gate,
            )
        registered = await self.create_version(spec, defaults)
        if not registered.created:
            log.info(
                "training job %s is already %s version %d; nothing registered",
                event.job_id,
                registered.version.model,
                registered.version.version,
            )
        return registered.version

    async def on_dataset_version(self, event: DatasetVersionCreated) -> None:
        await asyncio.to_thread(
            self.store.record_dataset_version,
            copy_fields(
                DatasetVersionRecord,
                event,
                snapshot_ids=tuple(event.snapshot_ids),
                queues=tuple(event.queues),
                created_at=event.occurred_at,
            ),
        )

    async def on_ingestion_batch(self, event: IngestionBatchCompleted) -> None:
        await asyncio.to_thread(
            self.store.record_ingestion_batch,
            copy_fields(IngestionBatchRecord, event, created_at=event.occurred_at),
        )

    async def run_artifact_checks(self, interval_seconds: float) -> None:
        """Settle PENDING versions every ``interval_seconds``."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.recheck_pending()
            except Exception:  # noqa: BLE001 - keep checking on the next round
                log.exception("checking pending artifacts failed; retrying in %.0fs", interval_seconds)


def _with_status(spec: VersionSpec, status: VersionStatus) -> VersionSpec:
    return replace(spec, status=status)
