"""The registry with the real broker, as processes: lineage and training events in, versions registered
once, a gated promotion refused then granted, rollback, models.* events out, and the lineage chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.events import (
    DatasetVersionCreated,
    Event,
    IngestionBatchCompleted,
    TrainingCompleted,
)
from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.testing.platform import auth, eventually, publish_raw, read_topic, running_platform

pytestmark = pytest.mark.integration

MODEL = "support-bot"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def platform(root: Path) -> Iterator[LocalPlatform]:
    with running_platform(root, ["registry"]) as platform:
        yield platform


@pytest.fixture(scope="module")
def registry(platform: LocalPlatform) -> Iterator[registry_pb2_grpc.RegistryServiceStub]:
    with grpc.insecure_channel(platform.address("registry")) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


def _adapter(root: Path, job_id: str) -> str:
    """A LoRA adapter folder as training leaves it; the registry checks that it exists."""
    folder = root / "artifacts" / "training" / job_id / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return folder.as_uri()


async def _publish(platform: LocalPlatform, event: Event, key: bytes | None = None) -> None:
    await publish_raw(
        platform.bootstrap_servers,
        event.topic,
        [event.model_dump_json().encode()],
        key=key or event.kafka_key(),
    )


def _training(
    job_id: str, adapter_uri: str, accuracy: float, loss: float, model: str = MODEL
) -> TrainingCompleted:
    return TrainingCompleted(
        job_id=job_id,
        model_name=model,
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        dataset_version_id="dv-1",
        adapter_uri=adapter_uri,
        method="sft_lora",
        params={"learning_rate": "0.0002", "lora_r": "8"},
        metrics={"eval_accuracy": accuracy, "eval_loss": loss},
        trace_id=f"trace-{job_id}",
    )


def _error(call, request, md) -> grpc.RpcError:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as err:
        call(request, metadata=md)
    return err.value


async def test_registry_round_trip(
    platform: LocalPlatform, registry: registry_pb2_grpc.RegistryServiceStub, root: Path
) -> None:
    md = auth(platform)
    await _publish(
        platform,
        IngestionBatchCompleted(
            batch_id="batch-1",
            dataset="articles",
            snapshot_id="snap-1",
            snapshot_uri=f"file://{root}/artifacts/snapshots/snap-1.parquet",
            counts={"received": 5, "kept": 4, "duplicates": 1},
        ),
    )
    await _publish(
        platform,
        DatasetVersionCreated(
            version_id="dv-1",
            dataset="support-sft",
            uri=f"file://{root}/artifacts/datasets/dv-1.parquet",
            train_count=3,
            eval_count=1,
            snapshot_ids=["snap-1"],
            queues=["topics"],
        ),
    )
    first_job = _training("job-1", _adapter(root, "job-1"), accuracy=0.62, loss=1.9)
    await _publish(platform, first_job)

    # training.completed -> version 1 of a model created on the fly.
    v1 = await eventually(
        lambda: registry.GetVersion(pb.GetVersionRequest(model=MODEL, version=1), metadata=md), timeout=60
    )
    assert (v1.status, v1.adapter, v1.adapter_kind) == (pb.VERSION_STATUS_READY, True, "lora")
    assert v1.artifact_uri == first_job.adapter_uri and v1.training_job_id == "job-1"
    assert dict(v1.metrics) == {"eval_accuracy": 0.62, "eval_loss": 1.9}
    assert v1.params["learning_rate"] == "0.0002" and v1.params["method"] == "sft_lora"
    (registered,) = [
        json.loads(r.value)
        for r in await read_topic(platform.bootstrap_servers, topics.MODELS_VERSION_REGISTERED, 1)
    ]
    assert (registered["model"], registered["version"], registered["artifact_uri"]) == (
        MODEL,
        1,
        v1.artifact_uri,
    )
    assert registered["trace_id"] == "trace-job-1"

    # The model exists already; its gate is set, and version 1 does not pass it.
    err = _error(registry.CreateModel, pb.CreateModelRequest(name=MODEL), md)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    gate = [
        pb.GateRule(metric="eval_accuracy", comparator=pb.COMPARATOR_GTE, threshold=0.8),
        pb.GateRule(metric="eval_loss", comparator=pb.COMPARATOR_LTE, threshold=1.5),
    ]
    model = registry.SetGate(pb.SetGateRequest(model=MODEL, gate=gate, actor="ml-lead"), metadata=md)
    assert len(model.gate) == 2 and model.latest_version == 1
    err = _error(registry.Promote, pb.PromoteRequest(model=MODEL, version=1, actor="ci"), md)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        "eval_accuracy = 0.62, needs >= 0.8" in err.details()
        and "eval_loss = 1.9, needs <= 1.5" in err.details()
    )
    assert registry.GetModel(pb.GetModelRequest(name=MODEL), metadata=md).aliases == {}

    # An operator serves version 1 anyway (an override, recorded as "set").
    override = registry.SetAlias(
        pb.SetAliasRequest(model=MODEL, alias="champion", version=1, actor="oncall", reason="first release"),
        metadata=md,
    )
    assert (override.operation, override.from_version, override.to_version) == ("set", 0, 1)

    # A better fine-tune: version 2, which passes the gate.
    second_job = _training("job-2", _adapter(root, "job-2"), accuracy=0.86, loss=1.2)
    await _publish(platform, second_job)
    v2 = await eventually(
        lambda: registry.GetVersion(pb.GetVersionRequest(model=MODEL, version=2), metadata=md), timeout=60
    )
    assert v2.training_job_id == "job-2"
    promoted = registry.Promote(
        pb.PromoteRequest(model=MODEL, version=2, actor="ci", reason="passes the gate"), metadata=md
    )
    assert (promoted.alias, promoted.from_version, promoted.to_version, promoted.operation) == (
        "champion",
        1,
        2,
        "promote",
    )
    assert registry.GetModel(pb.GetModelRequest(name=MODEL), metadata=md).aliases == {"champion": 2}

    # Rollback: back to version 1; a second rollback has nowhere to go.
    back = registry.Rollback(pb.RollbackRequest(model=MODEL, actor="oncall", reason="latency"), metadata=md)
    assert (back.from_version, back.to_version, back.operation) == (2, 1, "rollback")
    champion = registry.GetVersion(pb.GetVersionRequest(model=MODEL, alias="champion"), metadata=md)
    assert champion.version == 1
    err = _error(registry.Rollback, pb.RollbackRequest(model=MODEL), md)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "no earlier holder" in err.details()
    history = registry.ListAliasHistory(
        pb.ListAliasHistoryRequest(model=MODEL, alias="champion"), metadata=md
    )
    assert [(c.operation, c.actor) for c in history.changes] == [
        ("rollback", "oncall"),
        ("promote", "ci"),
        ("set", "oncall"),
    ]

    changes = [
        json.loads(r.value)
        for r in await read_topic(platform.bootstrap_servers, topics.MODELS_ALIAS_CHANGED, 3)
    ]
    assert [(c["version"], c["previous_version"]) for c in changes] == [(1, None), (2, 1), (1, 2)]
    assert [c["artifact_uri"] for c in changes] == [v1.artifact_uri, v2.artifact_uri, v1.artifact_uri]
    assert all(c["model"] == MODEL and c["alias"] == "champion" for c in changes)
    assert changes[1]["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (changes[1]["actor"], changes[1]["reason"]) == ("ci", "passes the gate")

    # Lineage of version 2: from the ingestion batch to its (past) deployment as champion.
    def full_lineage() -> pb.Lineage | None:
        lineage = registry.GetLineage(pb.GetLineageRequest(model=MODEL, version=2), metadata=md)
        return lineage if lineage.nodes[0].kind == pb.LINEAGE_NODE_KIND_INGESTION_BATCH else None

    lineage = await eventually(full_lineage, timeout=60)
    assert [n.kind for n in lineage.nodes] == [
        pb.LINEAGE_NODE_KIND_INGESTION_BATCH,
        pb.LINEAGE_NODE_KIND_SNAPSHOT,
        pb.LINEAGE_NODE_KIND_LABEL_SET,
        pb.LINEAGE_NODE_KIND_DATASET_VERSION,
        pb.LINEAGE_NODE_KIND_TRAINING_JOB,
        pb.LINEAGE_NODE_KIND_MODEL_VERSION,
        pb.LINEAGE_NODE_KIND_DEPLOYMENT,
    ]
    nodes = {n.kind: n for n in lineage.nodes}
    edges = {(e.from_id, e.to_id, e.relation) for e in lineage.edges}
    chain = [nodes[k].id for k in sorted(nodes) if k != pb.LINEAGE_NODE_KIND_LABEL_SET]
    relations = ["snapshot_of", "labeled_into", "trained_on", "produced", "deployed_as"]
    assert {(a, b, r) for a, b, r in zip(chain[:-1], chain[1:], relations, strict=True)} <= edges
    assert nodes[pb.LINEAGE_NODE_KIND_INGESTION_BATCH].attributes["count.kept"] == "4"
    assert nodes[pb.LINEAGE_NODE_KIND_DATASET_VERSION].uri.endswith("dv-1.parquet")
    assert nodes[pb.LINEAGE_NODE_KIND_MODEL_VERSION].uri == v2.artifact_uri
    deployment = nodes[pb.LINEAGE_NODE_KIND_DEPLOYMENT]
    assert deployment.attributes["alias"] == "champion" and deployment.attributes["active"] == "false"
    assert deployment.attributes["ended_by"] == "rollback"

    # Redelivery: the same event again, and the same job under a new event id, register nothing.
    await _publish(platform, first_job)
    await _publish(platform, _training("job-1", first_job.adapter_uri, accuracy=0.62, loss=1.9))
    # A marker on the same partition (same key) after them: once it is registered, they were handled.
    marker = _training("job-marker", _adapter(root, "job-marker"), accuracy=0.5, loss=2.0, model="marker")
    await _publish(platform, marker, key=first_job.kafka_key())
    await eventually(
        lambda: registry.GetVersion(pb.GetVersionRequest(model="marker", version=1), metadata=md), timeout=60
    )
    assert registry.GetModel(pb.GetModelRequest(name=MODEL), metadata=md).latest_version == 2
    versions = registry.ListVersions(pb.ListVersionsRequest(model=MODEL), metadata=md)
    assert [(v.version, v.training_job_id) for v in versions.versions] == [(2, "job-2"), (1, "job-1")]
    announced = [
        json.loads(r.value)
        for r in await read_topic(platform.bootstrap_servers, topics.MODELS_VERSION_REGISTERED, 3)
    ]
    assert sorted((e["model"], e["version"]) for e in announced) == [("marker", 1), (MODEL, 1), (MODEL, 2)]


def test_bad_requests_name_the_problem(
    platform: LocalPlatform, registry: registry_pb2_grpc.RegistryServiceStub
) -> None:
    md = auth(platform)
    cases = [
        (registry.GetModel, pb.GetModelRequest(name="no-such-model"), grpc.StatusCode.NOT_FOUND, "not found"),
        (
            registry.Promote,
            pb.PromoteRequest(model="no-such-model", version=1),
            grpc.StatusCode.NOT_FOUND,
            "'no-such-model' not found",
        ),
        (
            registry.CreateModel,
            pb.CreateModelRequest(name="bad name"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name 'bad name' is not a valid model name",
        ),
        (
            registry.SetAlias,
            pb.SetAliasRequest(model="x", alias="champion"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "version must be 1 or more",
        ),
        (
            registry.GetVersion,
            pb.GetVersionRequest(model="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "neither version nor alias",
        ),
    ]
    for call, request, code, fragment in cases:
        err = _error(call, request, md)
        assert err.code() == code and fragment in err.details(), err.details()
