"""Serving: Generate / GenerateStream over gRPC and OpenAI-compatible HTTP on vLLM, with aliases,
canaries, prompt templates and retrieved context; every answer is published as inference.logged."""

from __future__ import annotations

from llmops.contracts.events import InferenceLogged, ModelAliasChanged, ModelCanaryChanged
from llmops.contracts.rpc.serving.v1 import serving_pb2_grpc
from llmops.core.auth import ApiKeys
from llmops.core.convert import copy_fields
from llmops.core.http_server import HttpServer
from llmops.core.model_assets import smollm2_path
from llmops.core.service import Deferred, Runtime
from llmops.serving.deployments import ModelRouter, RegistryLookup
from llmops.serving.engine import EngineOptions, TextEngine
from llmops.serving.generation import Generation
from llmops.serving.grpc_server import ServingServicer
from llmops.serving.inference_log import InferenceLogWriter
from llmops.serving.openai_api import create_app
from llmops.serving.prompting import ContextLookup, TemplateLookup
from llmops.serving.routing import AliasTable
from llmops.serving.settings import Settings


class ServingService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        # Only described here: vLLM starts when the runtime enters the engine in start().
        self.engine = TextEngine(
            s.model_path or smollm2_path(s.platform.models_dir),
            copy_fields(EngineOptions, s, served_name=s.served_model_name),
            cache_dir=s.platform.data_dir / "cache",
        )
        self.router: Deferred[ModelRouter] = Deferred("the model router")
        self.templates: Deferred[TemplateLookup] = Deferred("the template lookup")
        self.context: Deferred[ContextLookup] = Deferred("the retrieval client")
        self.log: Deferred[InferenceLogWriter] = Deferred("the inference log")
        self.generation: Deferred[Generation] = Deferred("the request path")

    def register(self, runtime: Runtime) -> None:
        s = self.settings
        spool = s.platform.data_dir / "serving" / f"inference-log.{s.replica_id}.jsonl"
        log = self.log.set(
            InferenceLogWriter(
                runtime.bus,
                spool,
                memory_limit=s.log_buffer_events,
                spool_limit_bytes=s.log_spool_max_mb * 1024 * 1024,
                redact=s.redactor(),
            )
        )
        generation = self.generation.set(
            Generation(s, self.engine, log, self.router, self.templates, self.context)
        )
        runtime.grpc.add(
            serving_pb2_grpc.add_ServingServiceServicer_to_server,
            ServingServicer(s, generation, self.router),
            "llmops.serving.v1.ServingService",
        )
        # Each replica follows every alias and canary change, so each has its own consumer groups.
        runtime.bus.consume(
            ModelAliasChanged, s.consumer_group(f"aliases.{s.replica_id}"), self._on_alias_changed
        )
        runtime.bus.consume(
            ModelCanaryChanged, s.consumer_group(f"canaries.{s.replica_id}"), self._on_canary_changed
        )
        runtime.bus.publishes(InferenceLogged)

    async def start(self, runtime: Runtime) -> None:
        s = self.settings
        folder = s.platform.data_dir / "serving"
        # Publishes spooled logs of a previous run first; closes (spooling what is left) before the bus.
        await runtime.enter(self.log())
        table = runtime.own(AliasTable(folder / "aliases.sqlite"))
        registry_channel = runtime.channel("registry")
        registry = RegistryLookup(registry_channel)
        self.templates.set(TemplateLookup(registry_channel, cache_seconds=s.template_cache_seconds))
        self.context.set(
            ContextLookup(runtime.channel("retrieval"), timeout_seconds=s.retrieval_timeout_seconds)
        )
        await runtime.enter(self.engine)
        router = ModelRouter(
            self.engine,
            table,
            s.served_model_name,
            folder / "adapters",
            registry,
            max_idle_adapters=s.max_idle_adapters,
        )
        await router.load_all()
        self.router.set(router)
        if s.http_port:
            app = create_app(self.generation(), self.router, ApiKeys.from_settings(s.auth))
            await runtime.enter(
                HttpServer(app, s.host, s.http_port, grace_seconds=s.grace_seconds, name="serving-http")
            )

    async def _on_alias_changed(self, event: ModelAliasChanged) -> None:
        await self.router().on_alias_changed(event)

    async def _on_canary_changed(self, event: ModelCanaryChanged) -> None:
        await self.router().on_canary_changed(event)

    async def drain(self) -> None:
        await self.log().drain()
