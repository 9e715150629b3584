"""Lineage assembly: batch -> snapshot -> dataset version (+ label sets) -> job -> version -> deployments."""

from __future__ import annotations

import datetime as dt

from llmops.registry.domain.lineage import assemble_lineage
from llmops.registry.domain.models import (
    AliasChange,
    AliasOperation,
    DatasetVersionRecord,
    IngestionBatchRecord,
    LineageNodeKind,
    ModelVersion,
    VersionStatus,
)

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
K = LineageNodeKind


def _at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _version(version: int = 2, **fields: object) -> ModelVersion:
    values: dict = dict(
        model="bot",
        version=version,
        artifact_uri="file:///artifacts/job-2/adapter",
        base_model="smollm2",
        adapter=True,
        adapter_kind="lora",
        metrics={"eval_accuracy": 0.9},
        params={"method": "sft_lora", "lr": "0.0002"},
        status=VersionStatus.READY,
        training_job_id="job-2",
        dataset_version_id="dv-1",
        description="",
        created_at=_at(30),
        aliases=("champion",),
        trained_at=_at(29),
    )
    values.update(fields)
    return ModelVersion(**values)


DATASET = DatasetVersionRecord(
    version_id="dv-1",
    dataset="support-sft",
    uri="file:///artifacts/datasets/dv-1.parquet",
    train_count=90,
    eval_count=10,
    snapshot_ids=("snap-a", "snap-b"),
    queues=("topics", "feedback-review"),
    created_at=_at(20),
)
BATCHES = [
    IngestionBatchRecord("batch-2", "articles", "snap-b", "file:///snap-b", {"kept": 40}, _at(10)),
    IngestionBatchRecord(
        "batch-1", "articles", "snap-a", "file:///snap-a", {"kept": 60, "dropped": 3}, _at(5)
    ),
    # Same content as batch-1: same snapshot.
    IngestionBatchRecord("batch-1b", "articles", "snap-a", "file:///snap-a", {"kept": 0}, _at(7)),
    IngestionBatchRecord("batch-other", "articles", "snap-z", "file:///snap-z", {"kept": 1}, _at(1)),
]


def _change(i: int, alias: str, frm: int, to: int, op: AliasOperation, minute: int) -> AliasChange:
    return AliasChange(i, "bot", alias, frm, to, f"actor{i}", f"reason{i}", op, _at(minute))


HISTORY = [
    _change(1, "champion", 0, 1, AliasOperation.PROMOTE, 31),
    _change(2, "champion", 1, 2, AliasOperation.PROMOTE, 32),
    _change(3, "champion", 2, 1, AliasOperation.ROLLBACK, 33),
    _change(4, "champion", 1, 2, AliasOperation.SET, 34),
    _change(5, "challenger", 0, 1, AliasOperation.SET, 35),
]


def test_the_full_chain_upstream_to_downstream() -> None:
    lineage = assemble_lineage(_version(), dataset_version=DATASET, batches=BATCHES, alias_history=HISTORY)
    assert [n.id for n in lineage.nodes] == [
        "ingestion_batch:batch-1",
        "ingestion_batch:batch-1b",
        "ingestion_batch:batch-2",
        "snapshot:snap-a",
        "snapshot:snap-b",
        "label_set:dv-1/topics",
        "label_set:dv-1/feedback-review",
        "dataset_version:dv-1",
        "training_job:job-2",
        "model_version:bot/2",
        "deployment:bot@champion#2",
        "deployment:bot@champion",
    ]
    assert {(e.from_id, e.to_id, e.relation) for e in lineage.edges} == {
        ("ingestion_batch:batch-1", "snapshot:snap-a", "snapshot_of"),
        ("ingestion_batch:batch-1b", "snapshot:snap-a", "snapshot_of"),
        ("ingestion_batch:batch-2", "snapshot:snap-b", "snapshot_of"),
        ("snapshot:snap-a", "dataset_version:dv-1", "labeled_into"),
        ("snapshot:snap-b", "dataset_version:dv-1", "labeled_into"),
        ("label_set:dv-1/topics", "dataset_version:dv-1", "labeled_into"),
        ("label_set:dv-1/feedback-review", "dataset_version:dv-1", "labeled_into"),
        ("dataset_version:dv-1", "training_job:job-2", "trained_on"),
        ("training_job:job-2", "model_version:bot/2", "produced"),
        ("model_version:bot/2", "deployment:bot@champion#2", "deployed_as"),
        ("model_version:bot/2", "deployment:bot@champion", "deployed_as"),
    }
    # Every edge joins two nodes of the graph.
    ids = {n.id for n in lineage.nodes}
    assert all(e.from_id in ids and e.to_id in ids for e in lineage.edges)


def test_node_details() -> None:
    lineage = assemble_lineage(_version(), dataset_version=DATASET, batches=BATCHES, alias_history=HISTORY)
    nodes = {n.id: n for n in lineage.nodes}
    batch = nodes["ingestion_batch:batch-1"]
    assert batch.kind == K.INGESTION_BATCH and batch.created_at == _at(5)
    assert batch.attributes["count.kept"] == "60" and batch.attributes["count.dropped"] == "3"
    snap = nodes["snapshot:snap-a"]
    assert (snap.uri, snap.created_at, snap.attributes["batch_ids"]) == (
        "file:///snap-a",
        _at(5),
        "batch-1,batch-1b",
    )
    dv = nodes["dataset_version:dv-1"]
    assert dv.uri == DATASET.uri and dv.attributes["train_count"] == "90"
    assert dv.attributes["queues"] == "topics,feedback-review"
    job = nodes["training_job:job-2"]
    assert job.attributes["method"] == "sft_lora" and job.created_at == _at(29)
    mv = nodes["model_version:bot/2"]
    assert mv.uri == "file:///artifacts/job-2/adapter"
    assert mv.attributes["metric.eval_accuracy"] == "0.9" and mv.attributes["adapter_kind"] == "lora"
    current = nodes["deployment:bot@champion"]
    assert current.attributes["active"] == "true" and current.attributes["operation"] == "set"
    assert current.created_at == _at(34)
    past = nodes["deployment:bot@champion#2"]
    assert past.attributes["active"] == "false" and past.attributes["operation"] == "promote"
    assert past.attributes["ended_by"] == "rollback" and past.attributes["ended_at"].startswith(
        "2025-06-01T12:33"
    )
    assert past.attributes["actor"] == "actor2" and past.attributes["reason"] == "reason2"


def test_a_version_that_was_never_deployed_ends_at_the_version() -> None:
    lineage = assemble_lineage(
        _version(3, aliases=()), dataset_version=DATASET, batches=BATCHES, alias_history=HISTORY
    )
    assert lineage.nodes[-1].kind == K.MODEL_VERSION
    assert not [n for n in lineage.nodes if n.kind == K.DEPLOYMENT]


def test_version_one_shows_past_and_current_deployments_of_two_aliases() -> None:
    lineage = assemble_lineage(
        _version(1, aliases=("challenger",)), dataset_version=None, batches=(), alias_history=HISTORY
    )
    deployments = [n for n in lineage.nodes if n.kind == K.DEPLOYMENT]
    assert [(n.id, n.attributes["active"]) for n in deployments] == [
        ("deployment:bot@champion#1", "false"),
        ("deployment:bot@champion#3", "false"),
        ("deployment:bot@challenger", "true"),
    ]


def test_unrecorded_upstream_is_left_out_not_invented() -> None:
    lineage = assemble_lineage(_version(), dataset_version=None, batches=BATCHES, alias_history=())
    kinds = [n.kind for n in lineage.nodes]
    assert kinds == [K.DATASET_VERSION, K.TRAINING_JOB, K.MODEL_VERSION]
    assert lineage.nodes[0].attributes == {"dataset_version_id": "dv-1", "recorded": "false"}


def test_a_hand_registered_version_links_its_dataset_directly() -> None:
    lineage = assemble_lineage(
        _version(training_job_id="", aliases=()), dataset_version=DATASET, batches=(), alias_history=()
    )
    assert K.TRAINING_JOB not in [n.kind for n in lineage.nodes]
    assert ("dataset_version:dv-1", "model_version:bot/2", "trained_on") in {
        (e.from_id, e.to_id, e.relation) for e in lineage.edges
    }
    # Snapshots are known from the dataset version even when their batches were not recorded.
    assert [n.id for n in lineage.nodes if n.kind == K.SNAPSHOT] == ["snapshot:snap-a", "snapshot:snap-b"]


def test_a_version_with_no_provenance_is_a_single_node() -> None:
    lineage = assemble_lineage(
        _version(training_job_id="", dataset_version_id="", aliases=()),
        dataset_version=None,
        batches=(),
        alias_history=(),
    )
    assert [n.id for n in lineage.nodes] == ["model_version:bot/2"] and lineage.edges == ()
