"""RegistryService over gRPC: models, gates, versions, aliases (set, promote, rollback), history, lineage."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.contracts.vocabulary import DEFAULT_ALIAS
from llmops.registry.domain.errors import InvalidArgument
from llmops.registry.domain.models import (
    AliasChange,
    AliasOperation,
    Comparator,
    GateRule,
    Lineage,
    LineageNodeKind,
    ModelVersion,
    RegisteredModel,
    VersionSpec,
    VersionStatus,
)
from llmops.registry.domain.values import (
    check_alias,
    check_model_name,
    check_version_number,
    check_version_spec,
)
from llmops.registry.registry import Registry

COMPARATORS = {
    pb.COMPARATOR_GTE: Comparator.GTE,
    pb.COMPARATOR_LTE: Comparator.LTE,
    pb.COMPARATOR_GT: Comparator.GT,
    pb.COMPARATOR_LT: Comparator.LT,
}
COMPARATORS_PB = {v: k for k, v in COMPARATORS.items()}
STATUSES_PB = {
    VersionStatus.PENDING: pb.VERSION_STATUS_PENDING,
    VersionStatus.READY: pb.VERSION_STATUS_READY,
    VersionStatus.FAILED: pb.VERSION_STATUS_FAILED,
    VersionStatus.ARCHIVED: pb.VERSION_STATUS_ARCHIVED,
}
KINDS_PB = {
    LineageNodeKind.INGESTION_BATCH: pb.LINEAGE_NODE_KIND_INGESTION_BATCH,
    LineageNodeKind.SNAPSHOT: pb.LINEAGE_NODE_KIND_SNAPSHOT,
    LineageNodeKind.DATASET_VERSION: pb.LINEAGE_NODE_KIND_DATASET_VERSION,
    LineageNodeKind.LABEL_SET: pb.LINEAGE_NODE_KIND_LABEL_SET,
    LineageNodeKind.TRAINING_JOB: pb.LINEAGE_NODE_KIND_TRAINING_JOB,
    LineageNodeKind.MODEL_VERSION: pb.LINEAGE_NODE_KIND_MODEL_VERSION,
    LineageNodeKind.DEPLOYMENT: pb.LINEAGE_NODE_KIND_DEPLOYMENT,
}


def _ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def gate_from_pb(rules: object) -> list[GateRule]:
    """Domain rules from proto rules.

    Raises:
        InvalidArgument: a rule's comparator is unspecified or unknown (names the rule).
    """
    out = []
    for i, rule in enumerate(rules):  # type: ignore[call-overload]
        if rule.comparator not in COMPARATORS:
            raise InvalidArgument(
                f"gate[{i}].comparator is unspecified for metric {rule.metric!r}: use GTE, LTE, GT or LT"
            )
        out.append(GateRule(rule.metric, COMPARATORS[rule.comparator], rule.threshold))
    return out


def gate_pb(rules: tuple[GateRule, ...]) -> list[pb.GateRule]:
    return [
        pb.GateRule(metric=r.metric, comparator=COMPARATORS_PB[r.comparator], threshold=r.threshold)
        for r in rules
    ]


def model_pb(m: RegisteredModel) -> pb.Model:
    return pb.Model(
        name=m.name,
        description=m.description,
        base_model=m.base_model,
        gate=gate_pb(m.gate),
        aliases=dict(m.aliases),
        latest_version=m.latest_version,
        created_at=_ts(m.created_at),
        updated_at=_ts(m.updated_at),
    )


def version_pb(v: ModelVersion) -> pb.ModelVersion:
    return pb.ModelVersion(
        model=v.model,
        version=v.version,
        artifact_uri=v.artifact_uri,
        base_model=v.base_model,
        adapter=v.adapter,
        adapter_kind=v.adapter_kind,
        metrics=dict(v.metrics),
        params=dict(v.params),
        status=STATUSES_PB[v.status],
        created_at=_ts(v.created_at),
        training_job_id=v.training_job_id,
        dataset_version_id=v.dataset_version_id,
        aliases=list(v.aliases),
        description=v.description,
    )


def change_pb(c: AliasChange) -> pb.AliasChange:
    return pb.AliasChange(
        model=c.model,
        alias=c.alias,
        from_version=c.from_version,
        to_version=c.to_version,
        actor=c.actor,
        reason=c.reason,
        changed_at=_ts(c.changed_at),
        operation=c.operation.value,
    )


def lineage_pb(lineage: Lineage) -> pb.Lineage:
    return pb.Lineage(
        nodes=[
            pb.LineageNode(
                kind=KINDS_PB[n.kind],
                id=n.id,
                uri=n.uri,
                attributes=dict(n.attributes),
                created_at=_ts(n.created_at),
            )
            for n in lineage.nodes
        ],
        edges=[pb.LineageEdge(from_id=e.from_id, to_id=e.to_id, relation=e.relation) for e in lineage.edges],
    )


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """Thin transport over :class:`Registry`: domain errors reach the caller through the interceptor."""

    def __init__(self, registry: Callable[[], Registry]) -> None:
        # The service opens its store in start(); the readiness gate keeps calls out until then.
        self._registry = registry

    async def CreateModel(
        self, request: pb.CreateModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.Model:
        gate = gate_from_pb(request.gate)
        created = await asyncio.to_thread(
            self._registry().store.create_model,
            request.name,
            description=request.description,
            base_model=request.base_model,
            gate=gate,
        )
        return model_pb(created)

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.Model:
        return model_pb(await asyncio.to_thread(self._registry().store.get_model, request.name))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        page = await asyncio.to_thread(
            self._registry().store.list_models, request.page_size, request.page_token
        )
        return pb.ListModelsResponse(
            models=[model_pb(m) for m in page.items], next_page_token=page.next_page_token
        )

    async def SetGate(self, request: pb.SetGateRequest, context: grpc.aio.ServicerContext) -> pb.Model:
        gate = gate_from_pb(request.gate)
        return model_pb(await self._registry().set_gate(request.model, gate, request.actor))

    async def CreateVersion(
        self, request: pb.CreateVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelVersion:
        spec = VersionSpec(
            model=request.model,
            artifact_uri=request.artifact_uri,
            base_model=request.base_model,
            adapter=request.adapter,
            adapter_kind=request.adapter_kind,
            metrics=dict(request.metrics),
            params=dict(request.params),
            training_job_id=request.training_job_id,
            dataset_version_id=request.dataset_version_id,
            description=request.description,
        )
        # A bad spec fails before the artifact is looked at.
        check_version_spec(spec)
        return version_pb((await self._registry().create_version(spec)).version)

    async def GetVersion(
        self, request: pb.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelVersion:
        selector = request.WhichOneof("selector")
        if selector is None:
            raise InvalidArgument(
                "neither version nor alias is set: address the version by number or by alias"
            )
        store = self._registry().store
        if selector == "version":
            found = await asyncio.to_thread(store.get_version, request.model, request.version)
        else:
            found = await asyncio.to_thread(store.get_version_by_alias, request.model, request.alias)
        return version_pb(found)

    async def ListVersions(
        self, request: pb.ListVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListVersionsResponse:
        page = await asyncio.to_thread(
            self._registry().store.list_versions, request.model, request.page_size, request.page_token
        )
        return pb.ListVersionsResponse(
            versions=[version_pb(v) for v in page.items], next_page_token=page.next_page_token
        )

    async def SetAlias(
        self, request: pb.SetAliasRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasChange:
        _check_alias_request(request.model, request.alias, request.version)
        change = await self._registry().move_alias(
            request.model, request.alias, request.version, AliasOperation.SET, request.actor, request.reason
        )
        return change_pb(change)

    async def DeleteAlias(
        self, request: pb.DeleteAliasRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasChange:
        _check_alias_request(request.model, request.alias)
        change = await self._registry().delete_alias(
            request.model, request.alias, request.actor, request.reason
        )
        return change_pb(change)

    async def Promote(self, request: pb.PromoteRequest, context: grpc.aio.ServicerContext) -> pb.AliasChange:
        alias = request.alias or DEFAULT_ALIAS
        _check_alias_request(request.model, alias, request.version)
        change = await self._registry().move_alias(
            request.model, alias, request.version, AliasOperation.PROMOTE, request.actor, request.reason
        )
        return change_pb(change)

    async def Rollback(
        self, request: pb.RollbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasChange:
        alias = request.alias or DEFAULT_ALIAS
        _check_alias_request(request.model, alias)
        return change_pb(await self._registry().rollback(request.model, alias, request.actor, request.reason))

    async def ListAliasHistory(
        self, request: pb.ListAliasHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAliasHistoryResponse:
        page = await asyncio.to_thread(
            self._registry().store.alias_history,
            request.model,
            request.alias,
            request.page_size,
            request.page_token,
        )
        return pb.ListAliasHistoryResponse(
            changes=[change_pb(c) for c in page.items], next_page_token=page.next_page_token
        )

    async def GetLineage(
        self, request: pb.GetLineageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Lineage:
        return lineage_pb(await self._registry().lineage(request.model, request.version))


def _check_alias_request(model: str, alias: str, version: int | None = None) -> None:
    """Validate the fields an alias RPC names, so a bad request fails before any lookup."""
    check_model_name(model)
    check_alias(alias)
    if version is not None:
        check_version_number(version)
