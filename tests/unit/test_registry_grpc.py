"""RegistryService in process (gRPC on loopback, SQLite in tmp_path, events collected from the outbox):
status codes and messages, artifact checks, training events, and publishing queued events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from llmops.cli.local import free_port
from llmops.contracts.events import (
    DatasetVersionCreated,
    Event,
    IngestionBatchCompleted,
    ModelAliasChanged,
    ModelVersionRegistered,
    TrainingCompleted,
)
from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.core.grpc_server import GrpcServer
from llmops.core.settings import AuthSettings
from llmops.registry.domain.models import VersionSpec, VersionStatus
from llmops.registry.grpc_server import RegistryServicer
from llmops.registry.registry import Registry, adapter_kind_of
from llmops.registry.store import SqlRegistryStore


class Published:
    """A publish function that keeps what it was given, and can be made to fail (broker down)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.down = False

    async def __call__(self, event: Event) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.events.append(event)


@pytest.fixture
def artifact(tmp_path: Path) -> str:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder.as_uri()


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[tuple[Registry, Published]]:
    store = SqlRegistryStore(f"sqlite:///{tmp_path}/registry.sqlite")
    published = Published()
    yield Registry(store), published
    store.close()


@pytest.fixture
async def stub(registry: tuple[Registry, Published]) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    server = GrpcServer("registry", "127.0.0.1", free_port(), AuthSettings(auth_disabled=True))
    server.add(
        registry_pb2_grpc.add_RegistryServiceServicer_to_server,
        RegistryServicer(lambda: registry[0]),
        "llmops.registry.v1.RegistryService",
    )
    await server.start()
    await server.set_serving()
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)
    await server.stop(0)


async def _code(call) -> tuple[grpc.StatusCode, str]:  # noqa: ANN001
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details()


GTE = pb.COMPARATOR_GTE


async def test_models_and_gates(stub: registry_pb2_grpc.RegistryServiceStub) -> None:
    model = await stub.CreateModel(
        pb.CreateModelRequest(
            name="bot",
            base_model="smollm2",
            gate=[pb.GateRule(metric="eval_accuracy", comparator=GTE, threshold=0.8)],
        )
    )
    assert model.name == "bot" and model.gate[0].threshold == 0.8 and model.created_at.seconds > 0
    assert await _code(stub.CreateModel(pb.CreateModelRequest(name="bot"))) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "model 'bot' already exists; use SetGate to change its gate",
    )
    code, message = await _code(
        stub.CreateModel(pb.CreateModelRequest(name="x", gate=[pb.GateRule(metric="acc", threshold=1)]))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "gate[0].comparator is unspecified" in message
    code, message = await _code(stub.CreateModel(pb.CreateModelRequest(name="")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("name is empty")
    assert (await _code(stub.GetModel(pb.GetModelRequest(name="nope"))))[0] == grpc.StatusCode.NOT_FOUND
    cleared = await stub.SetGate(pb.SetGateRequest(model="bot", gate=[], actor="ml-lead"))
    assert list(cleared.gate) == []
    listed = await stub.ListModels(pb.ListModelsRequest())
    assert [m.name for m in listed.models] == ["bot"]


async def test_versions_promote_rollback_and_history(
    stub: registry_pb2_grpc.RegistryServiceStub, registry: tuple[Registry, Published], artifact: str
) -> None:
    gate = [pb.GateRule(metric="eval_accuracy", comparator=GTE, threshold=0.8)]
    await stub.CreateModel(pb.CreateModelRequest(name="bot", base_model="smollm2", gate=gate))
    v1 = await stub.CreateVersion(
        pb.CreateVersionRequest(model="bot", artifact_uri=artifact, metrics={"eval_accuracy": 0.6})
    )
    assert (v1.version, v1.status, v1.base_model) == (1, pb.VERSION_STATUS_READY, "smollm2")
    # CheckGate says what Promote would, and moves nothing.
    check = await stub.CheckGate(pb.CheckGateRequest(model="bot", version=1))
    assert (check.passed, list(check.failed_metrics)) == (False, ["eval_accuracy"])
    assert "eval_accuracy = 0.6, needs >= 0.8" in check.failures
    code, message = await _code(stub.Promote(pb.PromoteRequest(model="bot", version=1, actor="ci")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert check.failures in message
    await stub.SetAlias(pb.SetAliasRequest(model="bot", alias="champion", version=1, actor="oncall"))
    await stub.CreateVersion(
        pb.CreateVersionRequest(model="bot", artifact_uri=artifact, metrics={"eval_accuracy": 0.9})
    )
    passing = await stub.CheckGate(pb.CheckGateRequest(model="bot", version=2))
    assert (passing.passed, passing.failures, list(passing.failed_metrics)) == (True, "", [])
    assert (await stub.GetModel(pb.GetModelRequest(name="bot"))).aliases["champion"] == 1
    promoted = await stub.Promote(pb.PromoteRequest(model="bot", version=2, actor="ci", reason="better"))
    assert (promoted.alias, promoted.from_version, promoted.to_version, promoted.operation) == (
        "champion",
        1,
        2,
        "promote",
    )
    champion = await stub.GetVersion(pb.GetVersionRequest(model="bot", alias="champion"))
    assert champion.version == 2 and list(champion.aliases) == ["champion"]
    back = await stub.Rollback(pb.RollbackRequest(model="bot", actor="oncall", reason="regression"))
    assert (back.from_version, back.to_version, back.operation) == (2, 1, "rollback")
    code, message = await _code(stub.Rollback(pb.RollbackRequest(model="bot")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no earlier holder" in message
    history = await stub.ListAliasHistory(pb.ListAliasHistoryRequest(model="bot", alias="champion"))
    assert [c.operation for c in history.changes] == ["rollback", "promote", "set"]
    versions = await stub.ListVersions(pb.ListVersionsRequest(model="bot", page_size=1))
    assert [v.version for v in versions.versions] == [2] and versions.next_page_token

    registry_, published = registry
    assert await registry_.store.outbox.publish_pending(published) == 5
    kinds = [(type(e).__name__, getattr(e, "version", None)) for e in published.events]
    assert kinds == [
        ("ModelVersionRegistered", 1),
        ("ModelAliasChanged", 1),
        ("ModelVersionRegistered", 2),
        ("ModelAliasChanged", 2),
        ("ModelAliasChanged", 1),
    ]
    moved = published.events[3]
    assert isinstance(moved, ModelAliasChanged)
    assert (moved.previous_version, moved.artifact_uri, moved.actor, moved.reason) == (
        1,
        artifact,
        "ci",
        "better",
    )


async def test_invalid_and_unknown_requests(
    stub: registry_pb2_grpc.RegistryServiceStub, artifact: str
) -> None:
    await stub.CreateModel(pb.CreateModelRequest(name="bot", base_model="smollm2"))
    cases = [
        (
            stub.GetVersion(pb.GetVersionRequest(model="bot")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "neither version",
        ),
        (
            stub.GetVersion(pb.GetVersionRequest(model="bot", version=3)),
            grpc.StatusCode.NOT_FOUND,
            "no version 3",
        ),
        (
            stub.GetVersion(pb.GetVersionRequest(model="bot", alias="champion")),
            grpc.StatusCode.NOT_FOUND,
            "no alias 'champion'",
        ),
        (stub.Promote(pb.PromoteRequest(model="bot")), grpc.StatusCode.INVALID_ARGUMENT, "version must be 1"),
        (stub.Promote(pb.PromoteRequest(version=1)), grpc.StatusCode.INVALID_ARGUMENT, "model is empty"),
        (
            stub.SetAlias(pb.SetAliasRequest(model="bot", version=1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "alias is empty",
        ),
        (
            stub.CreateVersion(pb.CreateVersionRequest(model="bot")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "artifact_uri is empty",
        ),
        (
            stub.CreateVersion(pb.CreateVersionRequest(model="ghost", artifact_uri=artifact, base_model="b")),
            grpc.StatusCode.NOT_FOUND,
            "'ghost' not found",
        ),
        (stub.Rollback(pb.RollbackRequest(model="bot")), grpc.StatusCode.NOT_FOUND, "no alias 'champion'"),
        (
            stub.DeleteAlias(pb.DeleteAliasRequest(model="bot", alias="champion")),
            grpc.StatusCode.NOT_FOUND,
            "no alias",
        ),
        (
            stub.GetLineage(pb.GetLineageRequest(model="bot", version=1)),
            grpc.StatusCode.NOT_FOUND,
            "no version 1",
        ),
        (
            stub.ListVersions(pb.ListVersionsRequest(model="bot", page_token="x")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
    ]
    for call, code, fragment in cases:
        got_code, message = await _code(call)
        assert (got_code, fragment in message) == (code, True), message


async def test_a_missing_artifact_fails_the_version(
    stub: registry_pb2_grpc.RegistryServiceStub, tmp_path: Path
) -> None:
    await stub.CreateModel(pb.CreateModelRequest(name="bot", base_model="smollm2"))
    missing = (tmp_path / "never-written").as_uri()
    version = await stub.CreateVersion(pb.CreateVersionRequest(model="bot", artifact_uri=missing))
    assert version.status == pb.VERSION_STATUS_FAILED
    code, message = await _code(stub.SetAlias(pb.SetAliasRequest(model="bot", alias="champion", version=1)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "bot version 1 is failed" in message


async def test_an_artifact_that_cannot_be_checked_stays_pending_until_it_can(
    registry: tuple[Registry, Published], artifact: str, tmp_path: Path
) -> None:
    registry_, _ = registry
    event = TrainingCompleted(
        job_id="job-1",
        model_name="bot",
        base_model="smollm2",
        dataset_version_id="dv-1",
        adapter_uri="nosuchprotocol://bucket/adapter",
        method="sft_lora",
    )
    assert (await registry_.on_training_completed(event)).status == VersionStatus.PENDING
    assert await registry_.recheck_pending() == 0
    assert registry_.store.get_version("bot", 1).status == VersionStatus.PENDING
    # Versions whose first check could not be made (store briefly unreachable) settle on a later round.
    store = registry_.store
    store.register_version(VersionSpec("bot", artifact, status=VersionStatus.PENDING))
    store.register_version(VersionSpec("bot", (tmp_path / "gone").as_uri(), status=VersionStatus.PENDING))
    assert await registry_.recheck_pending() == 2
    assert [store.get_version("bot", n).status for n in (1, 2, 3)] == [
        VersionStatus.PENDING,
        VersionStatus.READY,
        VersionStatus.FAILED,
    ]


async def test_training_events_register_once_and_feed_lineage(
    registry: tuple[Registry, Published], artifact: str
) -> None:
    registry_, published = registry
    registry_.default_gate = ()
    await registry_.on_ingestion_batch(
        IngestionBatchCompleted(
            batch_id="b1", dataset="articles", snapshot_id="s1", snapshot_uri="file:///s1", counts={"kept": 4}
        )
    )
    await registry_.on_dataset_version(
        DatasetVersionCreated(
            version_id="dv-1",
            dataset="sft",
            uri="file:///dv",
            train_count=3,
            eval_count=1,
            snapshot_ids=["s1"],
        )
    )
    event = TrainingCompleted(
        job_id="job-1",
        model_name="bot",
        base_model="smollm2",
        dataset_version_id="dv-1",
        adapter_uri=artifact,
        method="sft_lora",
        params={"lr": "0.0002"},
        metrics={"eval_accuracy": 0.7},
    )
    first = await registry_.on_training_completed(event)
    again = await registry_.on_training_completed(event.model_copy(update={"event_id": event.event_id}))
    assert first == again and first.version == 1
    assert (first.adapter, first.adapter_kind, first.params) == (
        True,
        "lora",
        {"method": "sft_lora", "lr": "0.0002"},
    )
    assert registry_.store.get_model("bot").base_model == "smollm2"
    lineage = await registry_.lineage("bot", 1)
    assert [n.id for n in lineage.nodes] == [
        "ingestion_batch:b1",
        "snapshot:s1",
        "dataset_version:dv-1",
        "training_job:job-1",
        "model_version:bot/1",
    ]
    assert await registry_.store.outbox.publish_pending(published) == 1
    (registered,) = published.events
    assert isinstance(registered, ModelVersionRegistered) and registered.metrics == {"eval_accuracy": 0.7}


async def test_models_are_not_created_when_auto_create_is_off(
    registry: tuple[Registry, Published], artifact: str
) -> None:
    registry_, _ = registry
    registry_.auto_create_models = False
    event = TrainingCompleted(
        job_id="j",
        model_name="bot",
        base_model="b",
        dataset_version_id="d",
        adapter_uri=artifact,
        method="sft_lora",
    )
    with pytest.raises(Exception, match="create it with CreateModel first"):
        await registry_.on_training_completed(event)


async def test_queued_events_survive_a_broker_outage(
    registry: tuple[Registry, Published], artifact: str
) -> None:
    registry_, published = registry
    registry_.store.create_model("bot", base_model="smollm2")
    published.down = True
    for _ in range(2):
        await registry_.create_version(VersionSpec("bot", artifact))
    with pytest.raises(ConnectionError):
        await registry_.store.outbox.publish_pending(published)
    assert len(registry_.store.outbox.pending()) == 2
    published.down = False
    assert await registry_.store.outbox.publish_pending(published) == 2
    assert [e.version for e in published.events] == [1, 2]  # type: ignore[attr-defined]
    assert registry_.store.outbox.pending() == []


def test_adapter_kind_of_training_methods() -> None:
    assert [adapter_kind_of(m) for m in ("sft_lora", "dpo_lora", "LoRA", "sft_qlora", "ia3")] == [
        "lora",
        "lora",
        "lora",
        "qlora",
        "ia3",
    ]
