"""ServingService over gRPC: a thin transport over :mod:`llmops.serving.generation`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import grpc

from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.convert import message
from llmops.core.errors import DeadlineExceeded
from llmops.serving.catalog import served_models
from llmops.serving.deployments import ModelRouter
from llmops.serving.generation import Generation, GenerationRequest, Started, Step
from llmops.serving.prompting import RetrievalOptions
from llmops.serving.settings import Settings


def request_of(request: serving_pb2.GenerateRequest, context: grpc.aio.ServicerContext) -> GenerationRequest:
    """The transport-free request a GenerateRequest asks for (its deadline included)."""
    remaining = context.time_remaining()
    retrieval = None
    if request.HasField("retrieval"):
        r = request.retrieval
        retrieval = RetrievalOptions(
            collection=r.collection,
            top_k=r.top_k,
            filter=dict(r.filter),
            score_threshold=r.score_threshold,
            mode=r.mode,
            query=r.query,
            allow_without_context=r.allow_without_context,
        )
    return GenerationRequest(
        model=request.model,
        prompt=request.prompt,
        messages=tuple((m.role, m.content) for m in request.messages),
        max_tokens=request.max_tokens,
        temperature=request.temperature if request.HasField("temperature") else None,
        top_p=request.top_p if request.HasField("top_p") else None,
        stop=tuple(request.stop),
        seed=request.seed if request.HasField("seed") else None,
        raw_prompt=request.raw_prompt,
        request_id=request.request_id,
        metadata=dict(request.metadata),
        template=request.template,
        variables=dict(request.variables),
        retrieval=retrieval,
        user=request.user,
        deadline=None if remaining is None else time.monotonic() + remaining,
    )


def _citations(started: Started) -> list[serving_pb2.Citation]:
    return [message(serving_pb2.Citation, c) for c in started.citations]


def _usage_timing(last: Step) -> tuple[serving_pb2.Usage, serving_pb2.Timing]:
    return (
        serving_pb2.Usage(prompt_tokens=last.prompt_tokens, completion_tokens=last.completion_tokens),
        serving_pb2.Timing(total_ms=last.total_ms, time_to_first_token_ms=last.time_to_first_token_ms),
    )


class ServingServicer(serving_pb2_grpc.ServingServiceServicer):
    """Generation over gRPC; failures are domain errors, given their status codes by the interceptor."""

    def __init__(self, settings: Settings, generation: Generation, router: Callable[[], ModelRouter]) -> None:
        self._settings = settings
        self._generation = generation
        self._router = router

    async def Generate(
        self, request: serving_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> serving_pb2.GenerateResponse:
        wanted = request_of(request, context)
        remaining = context.time_remaining()
        try:
            # The engine request is aborted when the deadline passes, not left running for nobody.
            async with asyncio.timeout(remaining):
                started, text, last = await self._generation.complete(wanted)
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"the request's deadline ({remaining:.3g} s) passed during generation"
            ) from exc
        usage, timing = _usage_timing(last)
        return serving_pb2.GenerateResponse(
            request_id=started.request_id,
            model=started.model,
            model_version=started.model_version,
            text=text,
            finish_reason=last.finish_reason,
            usage=usage,
            timing=timing,
            citations=_citations(started),
            arm=started.arm,
            template_version=started.template_version,
            retrieval_skipped=started.retrieval_skipped,
        )

    async def GenerateStream(
        self, request: serving_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[serving_pb2.GenerateStreamResponse]:
        # A cancelled call or a passed deadline cancels this handler; closing the steps then aborts the
        # engine request and frees its slot at once.
        async with contextlib.aclosing(
            self._generation.run(request_of(request, context), streamed=True)
        ) as steps:
            started: Started | None = None
            first = True
            async for item in steps:
                if isinstance(item, Started):
                    started = item
                    continue
                assert started is not None
                reply = serving_pb2.GenerateStreamResponse(
                    request_id=started.request_id,
                    model=started.model,
                    model_version=started.model_version,
                    delta=item.delta,
                    arm=started.arm,
                )
                if first:
                    reply.citations.extend(_citations(started))
                    reply.template_version = started.template_version
                    reply.retrieval_skipped = started.retrieval_skipped
                    first = False
                if item.finished:
                    usage, timing = _usage_timing(item)
                    reply.finish_reason = item.finish_reason
                    reply.usage.CopyFrom(usage)
                    reply.timing.CopyFrom(timing)
                yield reply

    async def ListModels(
        self, request: serving_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> serving_pb2.ListModelsResponse:
        s, engine = self._settings, self._router().engine
        return serving_pb2.ListModelsResponse(
            models=[
                message(
                    serving_pb2.ModelInfo,
                    m,
                    max_model_len=engine.max_model_len,
                    max_tokens_limit=s.max_tokens_limit,
                )
                for m in served_models(self._router())
            ]
        )
