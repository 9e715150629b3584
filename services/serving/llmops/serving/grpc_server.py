"""ServingService over gRPC: validation, generation on the engine, and the inference log."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import grpc

from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.logging import current_request_id
from llmops.serving.deployments import ModelRouter
from llmops.serving.domain.requests import InvalidRequest, check_fits_context, validate_generation
from llmops.serving.engine import GenerationChunk, GenerationParams, TextEngine
from llmops.serving.inference_log import InferenceLogWriter
from llmops.serving.settings import Settings

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest


@dataclass
class _Prepared:
    request_id: str
    model: str
    model_version: str
    lora: LoRARequest | None
    prompt_text: str
    prompt_tokens: int
    params: GenerationParams
    started: float


class ServingServicer(serving_pb2_grpc.ServingServiceServicer):
    """Generation over gRPC; failures are domain errors, given their status codes by the interceptor."""

    def __init__(
        self,
        settings: Settings,
        engine: TextEngine,
        log: InferenceLogWriter,
        router: Callable[[], ModelRouter],
    ) -> None:
        # ``router`` is opened in the service's start(); the readiness gate keeps calls out until then.
        self._settings = settings
        self._engine = engine
        self._log = log
        self._router = router

    async def _prepare(self, request: serving_pb2.GenerateRequest) -> _Prepared:
        started = time.perf_counter()
        route, lora = await self._router().resolve(request.model)
        deployment = route.deployment
        model_version = deployment.adapter_name if deployment else self._settings.served_model_name
        if request.raw_prompt and request.messages:
            raise InvalidRequest("raw_prompt applies to `prompt` only; send messages without raw_prompt")
        conversation, params = validate_generation(
            request.prompt,
            [(m.role, m.content) for m in request.messages],
            request.max_tokens,
            request.temperature if request.HasField("temperature") else None,
            request.top_p if request.HasField("top_p") else None,
            list(request.stop),
            default_max_tokens=self._settings.default_max_tokens,
            max_tokens_limit=self._settings.max_tokens_limit,
        )
        if request.HasField("seed"):
            params = replace(params, seed=request.seed)
        if request.raw_prompt:
            prompt_text = request.prompt
        elif isinstance(conversation, str):
            prompt_text = self._engine.format_chat([{"role": "user", "content": conversation}])
        else:
            prompt_text = self._engine.format_chat(conversation)
        prompt_tokens = self._engine.count_tokens(prompt_text)
        check_fits_context(prompt_tokens, params.max_tokens, self._engine.max_model_len)
        request_id = request.request_id or current_request_id() or str(uuid.uuid4())
        return _Prepared(
            request_id, route.requested, model_version, lora, prompt_text, prompt_tokens, params, started
        )

    async def _chunks(self, prepared: _Prepared) -> AsyncIterator[tuple[GenerationChunk, float | None]]:
        """Engine chunks, each with the time to first token (ms) once known."""
        first_token_ms: float | None = None
        # vLLM request ids must be unique among requests in flight; the caller's id may be reused.
        engine_id = f"{prepared.request_id}-{uuid.uuid4().hex[:8]}"
        async for chunk in self._engine.generate(
            prepared.prompt_text, prepared.params, engine_id, prepared.lora
        ):
            if first_token_ms is None and (chunk.delta or chunk.completion_tokens):
                first_token_ms = (time.perf_counter() - prepared.started) * 1000
            yield chunk, first_token_ms

    def _finish(
        self,
        prepared: _Prepared,
        request: serving_pb2.GenerateRequest,
        text: str,
        last: GenerationChunk,
        first_token_ms: float | None,
        streamed: bool,
    ) -> tuple[serving_pb2.Usage, serving_pb2.Timing]:
        total_ms = (time.perf_counter() - prepared.started) * 1000
        ttft = first_token_ms if first_token_ms is not None else total_ms
        usage = serving_pb2.Usage(prompt_tokens=last.prompt_tokens, completion_tokens=last.completion_tokens)
        timing = serving_pb2.Timing(total_ms=total_ms, time_to_first_token_ms=ttft)
        self._log.record(
            request_id=prepared.request_id,
            model=prepared.model,
            model_version=prepared.model_version,
            prompt=request.prompt or "\n".join(f"{m.role}: {m.content}" for m in request.messages),
            completion=text,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            latency_ms=total_ms,
            time_to_first_token_ms=ttft,
            finish_reason=last.finish_reason,
            streamed=streamed,
            params=prepared.params,
            metadata=dict(request.metadata),
        )
        return usage, timing

    async def Generate(
        self, request: serving_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> serving_pb2.GenerateResponse:
        prepared = await self._prepare(request)
        parts: list[str] = []
        last: GenerationChunk | None = None
        first_token_ms: float | None = None
        async for chunk, ttft in self._chunks(prepared):
            parts.append(chunk.delta)
            last, first_token_ms = chunk, ttft
        if last is None or not last.finished:
            # A bug in the engine wrapper, not the caller's doing: INTERNAL with the request id.
            raise RuntimeError("the engine ended the request without finishing it")
        text = "".join(parts)
        usage, timing = self._finish(prepared, request, text, last, first_token_ms, streamed=False)
        return serving_pb2.GenerateResponse(
            request_id=prepared.request_id,
            model=prepared.model,
            model_version=prepared.model_version,
            text=text,
            finish_reason=last.finish_reason,
            usage=usage,
            timing=timing,
        )

    async def GenerateStream(
        self, request: serving_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[serving_pb2.GenerateStreamResponse]:
        prepared = await self._prepare(request)
        parts: list[str] = []
        async for chunk, first_token_ms in self._chunks(prepared):
            parts.append(chunk.delta)
            reply = serving_pb2.GenerateStreamResponse(
                request_id=prepared.request_id,
                model=prepared.model,
                model_version=prepared.model_version,
                delta=chunk.delta,
            )
            if chunk.finished:
                usage, timing = self._finish(
                    prepared, request, "".join(parts), chunk, first_token_ms, streamed=True
                )
                reply.finish_reason = chunk.finish_reason
                reply.usage.CopyFrom(usage)
                reply.timing.CopyFrom(timing)
            yield reply

    async def ListModels(
        self, request: serving_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> serving_pb2.ListModelsResponse:
        s = self._settings
        models = [
            serving_pb2.ModelInfo(
                name=s.served_model_name,
                version=s.served_model_name,
                base_model=s.served_model_name,
                is_adapter=False,
                is_default=True,
                max_model_len=self._engine.max_model_len,
                max_tokens_limit=s.max_tokens_limit,
            )
        ]
        by_version: dict[str, serving_pb2.ModelInfo] = {}
        for model, alias, d in self._router().table.all_aliases():
            info = by_version.get(d.adapter_name)
            if info is None:
                info = by_version[d.adapter_name] = serving_pb2.ModelInfo(
                    name=d.adapter_name,
                    version=str(d.version),
                    base_model=d.base_model,
                    is_adapter=True,
                    max_model_len=self._engine.max_model_len,
                    max_tokens_limit=s.max_tokens_limit,
                )
            info.aliases.append(f"{model}@{alias}")
        models.extend(by_version.values())
        return serving_pb2.ListModelsResponse(models=models)
