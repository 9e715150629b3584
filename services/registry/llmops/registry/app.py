"""Registry service: models, versions registered from training.completed, gated aliases with
rollback, canaries, prompt templates, lineage from ingestion and labeling events, and models.* events
through an outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from llmops.contracts.events import (
    DatasetVersionCreated,
    IngestionBatchCompleted,
    ModelAliasChanged,
    ModelCanaryChanged,
    ModelVersionRegistered,
    TrainingCompleted,
)
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.core.service import Deferred, Runtime
from llmops.registry.grpc_server import RegistryServicer
from llmops.registry.registry import Registry
from llmops.registry.settings import Settings
from llmops.registry.store import open_store

log = logging.getLogger(__name__)


class RegistryService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Parsed here so a bad default gate stops the process before anything listens.
        self.default_gate = settings.default_gate_rules()
        self.registry: Deferred[Registry] = Deferred("the registry store")
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, runtime: Runtime) -> None:
        runtime.bus.publishes(ModelVersionRegistered, ModelAliasChanged, ModelCanaryChanged)
        s = self.settings
        runtime.grpc.add(
            registry_pb2_grpc.add_RegistryServiceServicer_to_server,
            RegistryServicer(self.registry),
            "llmops.registry.v1.RegistryService",
        )
        runtime.bus.consume(TrainingCompleted, s.consumer_group("training"), self._on_training_completed)
        runtime.bus.consume(DatasetVersionCreated, s.consumer_group("datasets"), self._on_dataset_version)
        runtime.bus.consume(IngestionBatchCompleted, s.consumer_group("ingestion"), self._on_ingestion_batch)

    async def _on_training_completed(self, event: TrainingCompleted) -> None:
        await self.registry().on_training_completed(event)

    async def _on_dataset_version(self, event: DatasetVersionCreated) -> None:
        await self.registry().on_dataset_version(event)

    async def _on_ingestion_batch(self, event: IngestionBatchCompleted) -> None:
        await self.registry().on_ingestion_batch(event)

    async def start(self, runtime: Runtime) -> None:
        s = self.settings
        store = runtime.own(await asyncio.to_thread(open_store, s.resolved_database_url()))
        registry = self.registry.set(
            Registry(
                store,
                auto_create_models=s.auto_create_models,
                default_gate=self.default_gate,
                verify_artifacts=s.verify_artifacts,
                artifact_check_timeout=s.artifact_check_timeout_seconds,
            )
        )
        # Its outbox is relayed once the bus has connected (events left by a previous run go first).
        runtime.deliver_with(store)
        self._tasks = []
        if s.verify_artifacts:
            self._tasks.append(
                asyncio.create_task(
                    registry.run_artifact_checks(s.artifact_recheck_seconds), name="registry-artifacts"
                )
            )

    async def drain(self) -> None:
        """Stop the artifact checks (the runtime's relay publishes what the last calls queued)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
