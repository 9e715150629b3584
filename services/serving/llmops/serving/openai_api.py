"""OpenAI-compatible HTTP on the same request path as gRPC: /v1/chat/completions, /v1/completions, /v1/models.

A backend that already speaks OpenAI's protocol points its client's ``base_url`` here and keeps its
code. Everything gRPC offers comes along: model names are the same (aliases, canaries, versions),
API keys are bearer tokens, each answer is logged, and the platform's extras travel as extra body
fields (``template``, ``variables``, ``retrieval``, ``metadata``; ``user`` is OpenAI's own) and come
back as extra response fields (``citations``, ``arm``, ``model_version``, ``template_version``,
``retrieval_skipped``, ``request_id``). Errors use OpenAI's shape and status codes; overload is 429
with Retry-After, at once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.core.auth import ApiKeys, bearer_token
from llmops.core.errors import DomainError, ResourceExhausted
from llmops.core.logging import request_id_var
from llmops.serving.catalog import served_models
from llmops.serving.deployments import ModelRouter
from llmops.serving.generation import Generation, GenerationRequest, Started, Step
from llmops.serving.prompting import RetrievalOptions

# gRPC status names (DomainError.status) -> (HTTP status, OpenAI error type).
_HTTP_OF: dict[str, tuple[int, str]] = {
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "FAILED_PRECONDITION": (400, "invalid_request_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "ALREADY_EXISTS": (409, "conflict_error"),
    "ABORTED": (409, "conflict_error"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "UNIMPLEMENTED": (501, "not_implemented_error"),
    "UNAVAILABLE": (503, "service_unavailable_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
}


class _Body(BaseModel):
    # OpenAI fields this server does not use are accepted and ignored, as OpenAI's own server does
    # with new fields; the ones that would change the answer and are not supported are refused below.
    model_config = ConfigDict(extra="ignore")

    model: str = ""
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    n: int = 1
    metadata: dict[str, str] | None = None


class RetrievalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str
    top_k: int = Field(0, ge=0)
    filter: dict[str, str] = Field(default_factory=dict)
    score_threshold: float = 0.0
    mode: Literal["", "hybrid", "dense", "sparse"] = ""
    query: str = ""
    allow_without_context: bool = False


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[ContentPart] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatCompletionRequest(_Body):
    messages: list[ChatMessage] = Field(default_factory=list)
    max_completion_tokens: int | None = Field(None, ge=1)
    template: str = ""
    variables: dict[str, str] = Field(default_factory=dict)
    retrieval: RetrievalBody | None = None


class CompletionRequest(_Body):
    prompt: str | list[str]


class OpenAIError(Exception):
    def __init__(self, status: int, kind: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _domain_response(exc: DomainError) -> JSONResponse:
    status, kind = _HTTP_OF.get(exc.status, (500, "api_error"))
    headers = {}
    if isinstance(exc, ResourceExhausted) and exc.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_seconds)))
    param = getattr(exc, "field", None) or None
    return JSONResponse(error_body(str(exc), kind, param, exc.status.lower()), status, headers=headers)


def _common(body: _Body, request_id: str) -> dict[str, Any]:
    if body.n != 1:
        raise OpenAIError(400, "invalid_request_error", f"n must be 1, got {body.n}", "n")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return {
        "model": body.model,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stop": tuple(stop),
        "seed": body.seed,
        "request_id": request_id,
        "metadata": dict(body.metadata or {}),
        "user": body.user or "",
    }


def chat_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    retrieval = RetrievalOptions(**body.retrieval.model_dump()) if body.retrieval else None
    return GenerationRequest(
        messages=tuple((m.role, m.text()) for m in body.messages),
        max_tokens=body.max_completion_tokens or body.max_tokens or 0,
        template=body.template,
        variables=dict(body.variables),
        retrieval=retrieval,
        **_common(body, request_id),
    )


def completion_request(body: CompletionRequest, request_id: str) -> GenerationRequest:
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise OpenAIError(
                400, "invalid_request_error", f"prompt must be one string, got {len(prompt)}", "prompt"
            )
        prompt = prompt[0]
    # OpenAI's completions take text as is: no chat template.
    return GenerationRequest(
        prompt=prompt, max_tokens=body.max_tokens or 0, raw_prompt=True, **_common(body, request_id)
    )


def _extras(started: Started) -> dict[str, Any]:
    return {
        "request_id": started.request_id,
        "model_version": started.model_version,
        "arm": started.arm,
        "citations": [asdict(c) for c in started.citations],
        "template_version": started.template_version,
        "retrieval_skipped": started.retrieval_skipped,
    }


def _usage(last: Step) -> dict[str, int]:
    return {
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
        "total_tokens": last.prompt_tokens + last.completion_tokens,
    }


def _sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class _Gate:
    """The request id (``x-request-id`` in, or a new one; echoed on every answer) and the API key
    check, as plain ASGI: Starlette's ``BaseHTTPMiddleware`` would pass every streamed chunk through
    a memory stream of its own, a cost per token."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self._app = app
        self._keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        echoed = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        token = request_id_var.set(request_id)
        try:
            refused = self._refusal(headers) if scope["path"].startswith("/v1/") else None
            await (refused or self._app)(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    def _refusal(self, headers: Headers) -> JSONResponse | None:
        presented = bearer_token(headers.get("authorization", ""))
        if not presented and not self._keys.disabled:
            return JSONResponse(
                error_body("missing API key: send it as `Authorization: Bearer KEY`", "authentication_error"),
                401,
            )
        if not self._keys.accepts(presented):
            invalid = error_body("invalid API key", "authentication_error", code="invalid_api_key")
            return JSONResponse(invalid, 401)
        return None


def create_app(generation: Generation, router: Callable[[], ModelRouter], keys: ApiKeys) -> FastAPI:
    """The FastAPI app; serving runs it with uvicorn on ``LLMOPS_SERVING_HTTP_PORT``."""
    app = FastAPI(title="llmops serving (OpenAI-compatible)", docs_url=None, redoc_url=None)

    app.add_middleware(_Gate, keys=keys)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return _domain_response(exc)

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), exc.kind, exc.param), exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid')}"
            if where
            else str(first.get("msg", "invalid request body"))
        )
        return JSONResponse(error_body(message, "invalid_request_error", where or None), 400)

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": m.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "llmops",
                    "root": m.base_model,
                    "parent": m.base_model if m.is_adapter else None,
                    "model": m.model,
                    "version": m.version,
                    "aliases": m.aliases,
                    "loaded": m.loaded,
                }
                for m in served_models(router())
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        return await _answer(chat_request(body, request_id_var.get()), body, "chat.completion", "chatcmpl")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        return await _answer(completion_request(body, request_id_var.get()), body, "text_completion", "cmpl")

    async def _answer(wanted: GenerationRequest, body: _Body, kind: str, prefix: str) -> Any:
        chat = kind == "chat.completion"
        steps = generation.run(wanted, streamed=body.stream)
        # The first item comes after admission, routing, templates and retrieval: their errors are
        # still plain HTTP errors, before any byte of a stream is sent.
        try:
            started = await anext(steps)
        except BaseException:
            await steps.aclose()
            raise
        assert isinstance(started, Started)
        head = {
            "id": f"{prefix}-{started.request_id}",
            "object": kind,
            "created": int(started.created),
            "model": started.model,
        }
        if not body.stream:
            async with contextlib.aclosing(steps):
                parts: list[str] = []
                async for step in steps:
                    assert isinstance(step, Step)
                    parts.append(step.delta)
                    if step.finished:
                        text = "".join(parts)
                        choice: dict[str, Any] = {
                            "index": 0,
                            "finish_reason": step.finish_reason,
                            "logprobs": None,
                        }
                        if chat:
                            choice["message"] = {"role": "assistant", "content": text}
                        else:
                            choice["text"] = text
                        return {**head, "choices": [choice], "usage": _usage(step), **_extras(started)}
            raise RuntimeError("the engine ended the request without finishing it")
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(
            _stream(
                steps, started, head | {"object": f"{kind}.chunk"} if chat else head, chat, include_usage
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def _stream(
        steps: AsyncIterator[Started | Step], started: Started, head: dict, chat: bool, include_usage: bool
    ) -> AsyncIterator[bytes]:
        # Closing the steps (the client disconnected: Starlette cancels this generator) aborts the
        # engine request and frees its slot at once.
        async with contextlib.aclosing(steps):
            try:
                if chat:
                    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    yield _sse({**head, "choices": [first], **_extras(started)})
                async for step in steps:
                    assert isinstance(step, Step)
                    choice: dict[str, Any] = {"index": 0, "finish_reason": step.finish_reason or None}
                    if chat:
                        choice["delta"] = {"content": step.delta} if step.delta else {}
                    else:
                        choice["text"] = step.delta
                        choice["logprobs"] = None
                    extras = {} if chat else _extras(started)
                    yield _sse({**head, "choices": [choice], "usage": None, **extras})
                    if step.finished and include_usage:
                        yield _sse({**head, "choices": [], "usage": _usage(step)})
            except DomainError as exc:
                status, kind = _HTTP_OF.get(exc.status, (500, "api_error"))
                yield _sse(error_body(str(exc), kind, code=str(status)))
            yield _sse("[DONE]")

    return app
