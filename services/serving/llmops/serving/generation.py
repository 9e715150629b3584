"""The one request path of serving, whatever the transport (gRPC or the OpenAI-compatible HTTP API).

A request is admitted (a bounded number in flight, the rest refused at once), routed (alias, canary
arm, version; its adapter loaded and held), given its template and retrieved context, checked against
the context length, generated on the engine and logged as inference.logged. Transports only convert
their messages to a :class:`GenerationRequest` and the yielded :class:`Started` / :class:`Step` back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from llmops.contracts.events import Citation
from llmops.core.admission import InFlightLimit
from llmops.core.errors import DeadlineExceeded, DomainError, Unimplemented
from llmops.core.logging import current_request_id
from llmops.core.prompt_templates import ContextDocument
from llmops.serving.deployments import ModelRouter
from llmops.serving.domain.requests import (
    InvalidRequest,
    check_fits_context,
    validate_conversation,
    validate_sampling,
)
from llmops.serving.engine import GenerationParams, RenderedPrompt, TextEngine
from llmops.serving.inference_log import InferenceLogWriter
from llmops.serving.prompting import (
    ContextLookup,
    PromptTemplate,
    RetrievalOptions,
    RetrievalUnavailable,
    TemplateLookup,
    compose,
    retrieval_query,
)
from llmops.serving.routing import Route
from llmops.serving.settings import Settings

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest

# Failures that are the server's doing (the engine, a deadline it missed, a dependency that was away)
# are logged as inference.logged with `error`; the caller's own (INVALID_ARGUMENT, NOT_FOUND,
# FAILED_PRECONDITION, an admission refusal's RESOURCE_EXHAUSTED, a caller that went away) are not.
SERVER_SIDE_STATUSES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "INTERNAL", "UNKNOWN", "DATA_LOSS"}
)
# A transport cancels the request when its deadline passes; the clock may read a hair before it.
_DEADLINE_LEEWAY_S = 0.05


def server_side_error(exc: BaseException, deadline: float | None) -> str:
    """The status code's name if ``exc`` ended a request by the server's doing, else ''."""
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # Cancelled by the transport: a passed deadline is a timeout, a caller that left is no error.
        late = deadline is not None and time.monotonic() >= deadline - _DEADLINE_LEEWAY_S
        return "DEADLINE_EXCEEDED" if late else ""
    if isinstance(exc, DomainError):
        return exc.status if exc.status in SERVER_SIDE_STATUSES else ""
    # Anything else escaping is a bug: the caller got INTERNAL.
    return "INTERNAL" if isinstance(exc, Exception) else ""


@dataclass(frozen=True)
class GenerationRequest:
    """What a caller asks for, in the transport's terms converted to plain values (see serving.proto)."""

    model: str = ""
    prompt: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    raw_prompt: bool = False
    request_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    template: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    retrieval: RetrievalOptions | None = None
    user: str = ""
    # time.monotonic() by which the caller stops waiting; None: no deadline.
    deadline: float | None = None


@dataclass(frozen=True)
class SourceChunk:
    """A chunk the answer was given, as its citation (``index`` is its number in the prompt)."""

    index: int
    chunk_id: str
    document_id: str
    score: float
    collection: str
    source: str


@dataclass(frozen=True)
class Started:
    """The first thing a generation yields: who answers, with what context."""

    request_id: str
    model: str
    model_version: str
    arm: str
    citations: tuple[SourceChunk, ...]
    template_version: str
    retrieval_skipped: bool
    created: float


@dataclass(frozen=True)
class Step:
    """New text since the previous step; the last one has ``finished`` and the usage and timing."""

    delta: str
    finished: bool = False
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_ms: float = 0.0
    time_to_first_token_ms: float = 0.0


@dataclass
class _Prepared:
    started: Started
    route: Route
    lora: LoRARequest | None
    prompt: RenderedPrompt
    log_prompt: str
    params: GenerationParams
    began: float
    template: PromptTemplate | None
    collection: str


class Generation:
    """Serving's request path (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        engine: TextEngine,
        log: InferenceLogWriter,
        router: Callable[[], ModelRouter],
        templates: Callable[[], TemplateLookup] | None,
        context: Callable[[], ContextLookup] | None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._log = log
        self._router = router
        self._templates = templates
        self._context = context
        self.limit = InFlightLimit(
            "serving",
            "requests",
            settings.max_requests_in_flight,
            retry_after_seconds=settings.retry_after_seconds,
        )

    async def run(self, request: GenerationRequest, *, streamed: bool) -> AsyncIterator[Started | Step]:
        """Yield :class:`Started`, then :class:`Step` s until one is finished.

        Closing the iterator early (the caller went away, its deadline passed) aborts the request in
        the engine and frees its slot at once.
        """
        with self.limit.slot():
            began = time.perf_counter()
            prepared: _Prepared | None = None
            first_token_ms: float | None = None
            parts: list[str] = []
            logged = False
            try:
                prepared = await self._prepare(request, began)
                async with self._router().using(prepared.route):
                    yield prepared.started
                    engine_id = f"{prepared.started.request_id}-{uuid.uuid4().hex[:8]}"
                    stream = self._engine.generate(prepared.prompt, prepared.params, engine_id, prepared.lora)
                    async with contextlib.aclosing(stream):
                        async for chunk in stream:
                            if first_token_ms is None and (chunk.delta or chunk.completion_tokens):
                                first_token_ms = (time.perf_counter() - began) * 1000
                            parts.append(chunk.delta)
                            if not chunk.finished:
                                yield Step(chunk.delta)
                                continue
                            total_ms = (time.perf_counter() - began) * 1000
                            last = Step(
                                chunk.delta,
                                finished=True,
                                finish_reason=chunk.finish_reason,
                                prompt_tokens=chunk.prompt_tokens,
                                completion_tokens=chunk.completion_tokens,
                                total_ms=total_ms,
                                time_to_first_token_ms=first_token_ms
                                if first_token_ms is not None
                                else total_ms,
                            )
                            self._record(prepared, request, "".join(parts), last, streamed)
                            logged = True
                            yield last
                            return
                # A bug in the engine wrapper, not the caller's doing: INTERNAL with the request id.
                raise RuntimeError("the engine ended the request without finishing it")
            except BaseException as exc:
                # Failures are logged when the request ends, never on the way (the hot path stays as
                # it was); the caller's own errors (bad arguments, unknown models) are not.
                error = "" if logged else server_side_error(exc, request.deadline)
                if error:
                    self._record_failure(request, prepared, parts, first_token_ms, began, streamed, error)
                raise

    async def complete(self, request: GenerationRequest) -> tuple[Started, str, Step]:
        """The whole answer at once: (who answered, text, last step with usage and timing)."""
        started: Started | None = None
        parts: list[str] = []
        async with contextlib.aclosing(self.run(request, streamed=False)) as steps:
            async for item in steps:
                if isinstance(item, Started):
                    started = item
                    continue
                parts.append(item.delta)
                if item.finished:
                    assert started is not None
                    return started, "".join(parts), item
        raise RuntimeError("the engine ended the request without finishing it")

    async def _prepare(self, request: GenerationRequest, began: float) -> _Prepared:
        s = self._settings
        if request.deadline is not None and request.deadline <= time.monotonic():
            raise DeadlineExceeded("the request's deadline had passed before serving could start it")
        if request.raw_prompt and (request.messages or request.template or request.retrieval):
            raise InvalidRequest(
                "raw_prompt applies to a bare `prompt` only (no messages, template or retrieval)",
                field="raw_prompt",
            )
        params = validate_sampling(
            request.max_tokens,
            request.temperature,
            request.top_p,
            list(request.stop),
            default_max_tokens=s.default_max_tokens,
            max_tokens_limit=s.max_tokens_limit,
        )
        if request.seed is not None:
            params = replace(params, seed=request.seed)
        request_id = request.request_id or current_request_id() or str(uuid.uuid4())
        route, lora = await self._router().resolve(request.model, request.user)

        template = await self._template(request.template) if request.template else None
        documents, skipped, collection = await self._retrieve(request, request_id)
        conversation = compose(request.prompt, request.messages, template, request.variables, documents)
        if isinstance(conversation, str):
            validate_conversation(conversation, [])
            turns = [("user", conversation)]
        else:
            validate_conversation("", conversation)
            turns = conversation
        if request.raw_prompt:
            prompt_text = request.prompt
        else:
            prompt_text = self._engine.format_chat([{"role": r, "content": c} for r, c in turns])
        # Tokenised once here: the context check counts what the engine then runs.
        rendered = await self._engine.render(prompt_text)
        check_fits_context(rendered.tokens, params.max_tokens, self._engine.max_model_len)

        deployment = route.deployment
        citations = tuple(
            SourceChunk(d.index, d.chunk_id, d.document_id, d.score, collection, d.source)
            for d in documents or ()
        )
        started = Started(
            request_id=request_id,
            model=route.requested,
            model_version=deployment.adapter_name if deployment else s.served_model_name,
            arm=route.arm,
            citations=citations,
            template_version=template.ref if template else "",
            retrieval_skipped=skipped,
            created=time.time(),
        )
        log_prompt = (
            request.prompt
            if isinstance(conversation, str)
            else "\n".join(f"{role}: {content}" for role, content in conversation)
        )
        return _Prepared(started, route, lora, rendered, log_prompt, params, began, template, collection)

    async def _template(self, ref: str) -> PromptTemplate:
        if self._templates is None:
            raise Unimplemented("prompt templates need the registry; this server has no registry address")
        return await self._templates().get(ref)

    async def _retrieve(
        self, request: GenerationRequest, request_id: str
    ) -> tuple[list[ContextDocument] | None, bool, str]:
        options = request.retrieval
        if options is None:
            return None, False, ""
        if not options.collection:
            raise InvalidRequest(
                "retrieval.collection is empty: name the collection to search", field="retrieval"
            )
        if self._context is None:
            raise Unimplemented("retrieval is not configured on this server")
        query = retrieval_query(options, request.prompt, request.messages, request.variables)
        remaining = None if request.deadline is None else max(request.deadline - time.monotonic(), 0.001)
        try:
            return (
                await self._context().retrieve(options, query, request_id, remaining),
                False,
                options.collection,
            )
        except RetrievalUnavailable:
            if options.allow_without_context:
                return None, True, options.collection
            raise

    def _record_failure(
        self,
        request: GenerationRequest,
        prepared: _Prepared | None,
        parts: list[str],
        first_token_ms: float | None,
        began: float,
        streamed: bool,
        error: str,
    ) -> None:
        total_ms = (time.perf_counter() - began) * 1000
        if prepared is not None:
            self._record(
                prepared,
                request,
                "".join(parts),
                Step(
                    "",
                    finished=True,
                    finish_reason="error",
                    prompt_tokens=prepared.prompt.tokens,
                    total_ms=total_ms,
                    time_to_first_token_ms=first_token_ms if first_token_ms is not None else total_ms,
                ),
                streamed,
                error=error,
            )
            return
        # Failed before a version was chosen (the registry or retrieval away, a passed deadline).
        self._log.record(
            request_id=request.request_id or current_request_id() or str(uuid.uuid4()),
            model=request.model or self._settings.served_model_name,
            prompt=request.prompt or "\n".join(f"{role}: {content}" for role, content in request.messages),
            completion="",
            prompt_tokens=0,
            completion_tokens=0,
            latency_ms=total_ms,
            time_to_first_token_ms=total_ms,
            finish_reason="error",
            streamed=streamed,
            params=None,
            metadata=dict(request.metadata),
            user=request.user,
            template=request.template,
            error=error,
        )

    def _record(
        self,
        prepared: _Prepared,
        request: GenerationRequest,
        text: str,
        last: Step,
        streamed: bool,
        error: str = "",
    ) -> None:
        started = prepared.started
        self._log.record(
            request_id=started.request_id,
            model=started.model,
            model_version=started.model_version,
            prompt=prepared.log_prompt,
            completion=text,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            latency_ms=last.total_ms,
            time_to_first_token_ms=last.time_to_first_token_ms,
            finish_reason=last.finish_reason,
            streamed=streamed,
            params=prepared.params,
            metadata=dict(request.metadata),
            user=request.user,
            arm=started.arm,
            template=prepared.template.name if prepared.template else "",
            template_version=prepared.template.version if prepared.template else None,
            retrieval_collection=prepared.collection,
            citations=[
                Citation(index=c.index, chunk_id=c.chunk_id, document_id=c.document_id, score=c.score)
                for c in started.citations
            ],
            error=error,
        )
