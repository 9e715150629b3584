"""Assembling a version's provenance graph from what the registry recorded, without I/O.

The chain, upstream to downstream::

    INGESTION_BATCH -snapshot_of-> SNAPSHOT -labeled_into-> DATASET_VERSION -trained_on-> TRAINING_JOB
        LABEL_SET -labeled_into-> DATASET_VERSION            TRAINING_JOB -produced-> MODEL_VERSION
                                                             MODEL_VERSION -deployed_as-> DEPLOYMENT

Whatever was not recorded (an event not yet consumed, a version registered by hand) is left out
rather than invented, except that a version's dataset version id is always shown: the version itself
names it. Node ids are ``<kind>:<key>`` so two kinds can never share an id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from llmops.registry.domain.aliases import alias_periods
from llmops.registry.domain.models import (
    AliasChange,
    DatasetVersionRecord,
    IngestionBatchRecord,
    Lineage,
    LineageEdge,
    LineageNode,
    LineageNodeKind,
    ModelVersion,
)


def node_id(kind: LineageNodeKind, key: str) -> str:
    return f"{kind.value}:{key}"


def model_version_id(model: str, version: int) -> str:
    return node_id(LineageNodeKind.MODEL_VERSION, f"{model}/{version}")


def deployment_id(model: str, alias: str, change_id: int | None = None) -> str:
    """The current deployment of ``model@alias``; with ``change_id``, a past period that change began."""
    key = f"{model}@{alias}" if change_id is None else f"{model}@{alias}#{change_id}"
    return node_id(LineageNodeKind.DEPLOYMENT, key)


def assemble_lineage(
    version: ModelVersion,
    *,
    dataset_version: DatasetVersionRecord | None,
    batches: Iterable[IngestionBatchRecord],
    alias_history: Sequence[AliasChange],
) -> Lineage:
    """The provenance graph of ``version``.

    Args:
        version: the model version the graph is about.
        dataset_version: the recorded dataset version the version was trained on, if known.
        batches: recorded ingestion batches; those whose snapshot the dataset version uses are shown.
        alias_history: every alias change of the version's model, oldest first.
    """
    nodes: list[LineageNode] = []
    edges: list[LineageEdge] = []

    # --- data: batches -> snapshots -> dataset version (+ label sets) --------------------------
    snapshot_ids: tuple[str, ...] = dataset_version.snapshot_ids if dataset_version else ()
    wanted = set(snapshot_ids)
    used_batches = sorted(
        (b for b in batches if b.snapshot_id and b.snapshot_id in wanted),
        key=lambda b: (b.created_at, b.batch_id),
    )
    for batch in used_batches:
        attributes = {"batch_id": batch.batch_id, "dataset": batch.dataset, "snapshot_id": batch.snapshot_id}
        attributes.update({f"count.{k}": str(v) for k, v in sorted(batch.counts.items())})
        nodes.append(
            LineageNode(
                LineageNodeKind.INGESTION_BATCH,
                node_id(LineageNodeKind.INGESTION_BATCH, batch.batch_id),
                "",
                attributes,
                batch.created_at,
            )
        )
    dv_id = node_id(LineageNodeKind.DATASET_VERSION, version.dataset_version_id)
    for snapshot in dict.fromkeys(snapshot_ids):
        makers = [b for b in used_batches if b.snapshot_id == snapshot]
        snap_id = node_id(LineageNodeKind.SNAPSHOT, snapshot)
        # A snapshot is content addressed: batches with the same content share it, and it exists
        # from the first of them on.
        nodes.append(
            LineageNode(
                LineageNodeKind.SNAPSHOT,
                snap_id,
                next((b.snapshot_uri for b in makers if b.snapshot_uri), ""),
                {
                    "snapshot_id": snapshot,
                    **({"dataset": makers[0].dataset} if makers else {}),
                    **({"batch_ids": ",".join(b.batch_id for b in makers)} if makers else {}),
                },
                makers[0].created_at if makers else None,
            )
        )
        for batch in makers:
            edges.append(
                LineageEdge(node_id(LineageNodeKind.INGESTION_BATCH, batch.batch_id), snap_id, "snapshot_of")
            )
        edges.append(LineageEdge(snap_id, dv_id, "labeled_into"))
    if dataset_version is not None:
        for queue in dict.fromkeys(dataset_version.queues):
            label_set_id = node_id(LineageNodeKind.LABEL_SET, f"{dataset_version.version_id}/{queue}")
            nodes.append(
                LineageNode(
                    LineageNodeKind.LABEL_SET,
                    label_set_id,
                    "",
                    {"queue": queue, "dataset_version_id": dataset_version.version_id},
                    dataset_version.created_at,
                )
            )
            edges.append(LineageEdge(label_set_id, dv_id, "labeled_into"))
    if version.dataset_version_id:
        attributes = {"dataset_version_id": version.dataset_version_id}
        if dataset_version is None:
            # Named by the version, but its datasets.version_created event was never recorded.
            attributes["recorded"] = "false"
        else:
            attributes.update(
                dataset=dataset_version.dataset,
                train_count=str(dataset_version.train_count),
                eval_count=str(dataset_version.eval_count),
                snapshot_ids=",".join(dataset_version.snapshot_ids),
                queues=",".join(dataset_version.queues),
            )
        nodes.append(
            LineageNode(
                LineageNodeKind.DATASET_VERSION,
                dv_id,
                dataset_version.uri if dataset_version else "",
                attributes,
                dataset_version.created_at if dataset_version else None,
            )
        )

    # --- training job -> model version ---------------------------------------------------------
    mv_id = model_version_id(version.model, version.version)
    if version.training_job_id:
        job_id = node_id(LineageNodeKind.TRAINING_JOB, version.training_job_id)
        job_attributes = {"job_id": version.training_job_id, "base_model": version.base_model}
        if "method" in version.params:
            job_attributes["method"] = version.params["method"]
        nodes.append(
            LineageNode(LineageNodeKind.TRAINING_JOB, job_id, "", job_attributes, version.trained_at)
        )
        if version.dataset_version_id:
            edges.append(LineageEdge(dv_id, job_id, "trained_on"))
        edges.append(LineageEdge(job_id, mv_id, "produced"))
    elif version.dataset_version_id:
        edges.append(LineageEdge(dv_id, mv_id, "trained_on"))
    mv_attributes = {
        "model": version.model,
        "version": str(version.version),
        "base_model": version.base_model,
        "adapter": "true" if version.adapter else "false",
        "status": version.status.value,
    }
    if version.adapter_kind:
        mv_attributes["adapter_kind"] = version.adapter_kind
    mv_attributes.update({f"metric.{k}": repr(v) for k, v in sorted(version.metrics.items())})
    nodes.append(
        LineageNode(
            LineageNodeKind.MODEL_VERSION, mv_id, version.artifact_uri, mv_attributes, version.created_at
        )
    )

    # --- deployments: every period an alias pointed here, oldest first (a timeline) -------------
    for period in alias_periods(alias_history, version.version):
        started = period.started_by
        attributes = {
            "alias": period.alias,
            "active": "true" if period.active else "false",
            "operation": started.operation.value,
            "actor": started.actor,
            "reason": started.reason,
        }
        if period.ended_by is None:
            dep_id = deployment_id(version.model, period.alias)
        else:
            dep_id = deployment_id(version.model, period.alias, started.id)
            attributes["ended_at"] = _iso(period.ended_by.changed_at)
            attributes["ended_by"] = period.ended_by.operation.value
        nodes.append(LineageNode(LineageNodeKind.DEPLOYMENT, dep_id, "", attributes, period.started_at))
        edges.append(LineageEdge(mv_id, dep_id, "deployed_as"))
    return Lineage(tuple(nodes), tuple(edges))


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()
