"""RegistryService over gRPC: models, gates, versions, aliases (set, promote, rollback), history,
canaries, prompt templates, lineage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import grpc

from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.contracts.vocabulary import CHALLENGER_ALIAS, DEFAULT_ALIAS
from llmops.core.convert import EnumMap, copy_fields, message
from llmops.registry.domain.errors import InvalidArgument
from llmops.registry.domain.gates import evaluate_gate
from llmops.registry.domain.models import (
    AliasOperation,
    CanaryOutcome,
    Comparator,
    GateRule,
    PromptTemplateSpec,
    VersionSpec,
)
from llmops.registry.domain.values import (
    check_alias,
    check_model_name,
    check_version_number,
    check_version_spec,
)
from llmops.registry.registry import Registry

COMPARATORS = EnumMap(pb.Comparator, Comparator)
CANARY_OUTCOMES = EnumMap(pb.CanaryOutcome, CanaryOutcome)


def gate_from_pb(rules: Iterable[pb.GateRule]) -> list[GateRule]:
    """Domain rules from proto rules.

    Raises:
        InvalidArgument: a rule's comparator is unspecified or unknown (names the rule).
    """
    out = []
    for i, rule in enumerate(rules):
        comparator = COMPARATORS.from_pb(rule.comparator, f"gate[{i}].comparator")
        if comparator is None:
            raise InvalidArgument(
                f"gate[{i}].comparator is unspecified for metric {rule.metric!r}: use GTE, LTE, GT or LT"
            )
        out.append(copy_fields(GateRule, rule, comparator=comparator))
    return out


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
        return message(pb.Model, created)

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.Model:
        return message(pb.Model, await asyncio.to_thread(self._registry().store.get_model, request.name))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        page = await asyncio.to_thread(
            self._registry().store.list_models, request.page_size, request.page_token
        )
        return message(pb.ListModelsResponse, page, models=page.items)

    async def SetGate(self, request: pb.SetGateRequest, context: grpc.aio.ServicerContext) -> pb.Model:
        gate = gate_from_pb(request.gate)
        return message(pb.Model, await self._registry().set_gate(request.model, gate, request.actor))

    async def CreateVersion(
        self, request: pb.CreateVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelVersion:
        spec = copy_fields(VersionSpec, request)
        # A bad spec fails before the artifact is looked at.
        check_version_spec(spec)
        return message(pb.ModelVersion, (await self._registry().create_version(spec)).version)

    async def CheckGate(
        self, request: pb.CheckGateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GateCheck:
        store = self._registry().store
        model = await asyncio.to_thread(store.get_model, request.model)
        version = await asyncio.to_thread(store.get_version, request.model, request.version)
        result = evaluate_gate(model.gate, version.metrics or {})
        return pb.GateCheck(
            model=model.name,
            version=version.version,
            passed=result.passed,
            failures=result.describe(),
            failed_metrics=[f.rule.metric for f in result.failures],
        )

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
        return message(pb.ModelVersion, found)

    async def ListVersions(
        self, request: pb.ListVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListVersionsResponse:
        page = await asyncio.to_thread(
            self._registry().store.list_versions, request.model, request.page_size, request.page_token
        )
        return message(pb.ListVersionsResponse, page, versions=page.items)

    async def SetAlias(
        self, request: pb.SetAliasRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasChange:
        _check_alias_request(request.model, request.alias, request.version)
        change = await self._registry().move_alias(
            request.model, request.alias, request.version, AliasOperation.SET, request.actor, request.reason
        )
        return message(pb.AliasChange, change)

    async def DeleteAlias(
        self, request: pb.DeleteAliasRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasChange:
        _check_alias_request(request.model, request.alias)
        change = await self._registry().delete_alias(
            request.model, request.alias, request.actor, request.reason
        )
        return message(pb.AliasChange, change)

    async def Promote(self, request: pb.PromoteRequest, context: grpc.aio.ServicerContext) -> pb.AliasChange:
        alias = request.alias or DEFAULT_ALIAS
        _check_alias_request(request.model, alias, request.version)
        change = await self._registry().move_alias(
            request.model, alias, request.version, AliasOperation.PROMOTE, request.actor, request.reason
        )
        return message(pb.AliasChange, change)

    async def Rollback(
        self, request: pb.RollbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasChange:
        alias = request.alias or DEFAULT_ALIAS
        _check_alias_request(request.model, alias)
        change = await self._registry().rollback(request.model, alias, request.actor, request.reason)
        return message(pb.AliasChange, change)

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
        return message(pb.ListAliasHistoryResponse, page, changes=page.items)

    async def SetCanary(self, request: pb.SetCanaryRequest, context: grpc.aio.ServicerContext) -> pb.Canary:
        canary = await self._registry().set_canary(
            request.model,
            request.alias or DEFAULT_ALIAS,
            request.challenger_alias or CHALLENGER_ALIAS,
            request.share,
            request.actor,
            request.reason,
        )
        return message(pb.Canary, canary)

    async def GetCanary(self, request: pb.GetCanaryRequest, context: grpc.aio.ServicerContext) -> pb.Canary:
        canary = await asyncio.to_thread(
            self._registry().store.get_canary, request.model, request.alias or DEFAULT_ALIAS
        )
        return message(pb.Canary, canary)

    async def EndCanary(self, request: pb.EndCanaryRequest, context: grpc.aio.ServicerContext) -> pb.Canary:
        outcome = CANARY_OUTCOMES.require(request.outcome, "outcome")
        ended = await self._registry().end_canary(
            request.model, request.alias or DEFAULT_ALIAS, outcome, request.actor, request.reason
        )
        return message(pb.Canary, ended)

    async def CreatePromptTemplate(
        self, request: pb.CreatePromptTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromptTemplate:
        spec = copy_fields(PromptTemplateSpec, request, created_by=request.actor)
        return message(pb.PromptTemplate, await self._registry().create_prompt_template(spec))

    async def GetPromptTemplate(
        self, request: pb.GetPromptTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromptTemplate:
        # Neither selector set: the latest version.
        selector = request.WhichOneof("selector")
        found = await asyncio.to_thread(
            self._registry().store.get_prompt_template,
            request.name,
            version=request.version if selector == "version" else None,
            alias=request.alias if selector == "alias" else "",
        )
        return message(pb.PromptTemplate, found)

    async def ListPromptTemplates(
        self, request: pb.ListPromptTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPromptTemplatesResponse:
        page = await asyncio.to_thread(
            self._registry().store.list_prompt_templates, request.name, request.page_size, request.page_token
        )
        return message(pb.ListPromptTemplatesResponse, page, templates=page.items)

    async def SetPromptTemplateAlias(
        self, request: pb.SetPromptTemplateAliasRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromptTemplate:
        moved = await self._registry().set_prompt_template_alias(
            request.name, request.alias, request.version, request.actor
        )
        return message(pb.PromptTemplate, moved)

    async def GetLineage(
        self, request: pb.GetLineageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Lineage:
        return message(pb.Lineage, await self._registry().lineage(request.model, request.version))


def _check_alias_request(model: str, alias: str, version: int | None = None) -> None:
    """Validate the fields an alias RPC names, so a bad request fails before any lookup."""
    check_model_name(model)
    check_alias(alias)
    if version is not None:
        check_version_number(version)
