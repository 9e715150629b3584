"""The one gRPC server bootstrap: grpc.aio with health, reflection, request ids, metrics, API keys.

- Health (grpc.health.v1) says NOT_SERVING until the service's dependencies are ready, then SERVING,
  and NOT_SERVING again while it drains on shutdown.
- Every call gets a request id (the caller's ``x-request-id`` or a new UUID) in a context variable and
  in the trailing metadata; calls are counted and timed per method and status code.
- Every call except health and reflection needs an API key (``x-api-key: KEY`` or
  ``authorization: Bearer KEY``); a call without a valid one gets UNAUTHENTICATED.
- Calls that arrive before the service is ready get UNAVAILABLE.
- Errors, in one place: a :class:`~llmops.core.errors.DomainError` becomes its status code with its
  message; anything else a handler raises is logged with its traceback and reaches the caller as
  INTERNAL with the request id (never the exception's text). Servicers hold no status mapping.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llmops.core.auth import ApiKeys, bearer_token
from llmops.core.errors import DomainError
from llmops.core.logging import request_id_var
from llmops.core.metrics import GRPC_LATENCY, GRPC_REQUESTS
from llmops.core.settings import AuthSettings

log = logging.getLogger(__name__)

_OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    return {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}


def _abort_handler(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class _ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def intercept_service(
        self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(_OPEN_SERVICES):
            return await continuation(details)
        md = _metadata(details)
        presented = md.get("x-api-key") or bearer_token(md.get("authorization", ""))
        if not presented:
            return _abort_handler(
                grpc.StatusCode.UNAUTHENTICATED, "missing API key: send it as `x-api-key` metadata"
            )
        if not self._keys.accepts(presented):
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        return await continuation(details)


class _ContextInterceptor(grpc.aio.ServerInterceptor):
    """Request id, readiness gate, logging and metrics around every call."""

    def __init__(self, service: str, is_ready: Callable[[], bool]) -> None:
        self._service = service
        self._is_ready = is_ready

    async def intercept_service(
        self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        if details.method.startswith(_OPEN_SERVICES):
            return await continuation(details)
        if not self._is_ready():
            return _abort_handler(grpc.StatusCode.UNAVAILABLE, f"{self._service} is starting; retry shortly")
        handler = await continuation(details)
        if handler is None:
            return None
        request_id = _metadata(details).get("x-request-id") or str(uuid.uuid4())
        method = details.method.rsplit("/", 1)[-1]
        return _wrap(handler, self._service, method, request_id)


def _code_of(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


def _wrap(
    handler: grpc.RpcMethodHandler, service: str, method: str, request_id: str
) -> grpc.RpcMethodHandler:
    def finish(context: grpc.aio.ServicerContext, started: float, error: BaseException | None) -> None:
        code = _code_of(context)
        if error is not None and code == "OK":
            code = "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"
        elapsed = time.perf_counter() - started
        GRPC_REQUESTS.labels(service, method, code).inc()
        GRPC_LATENCY.labels(service, method).observe(elapsed)
        log.info("%s %s in %.1f ms", method, code, elapsed * 1000)

    def enter(context: grpc.aio.ServicerContext) -> float:
        request_id_var.set(request_id)
        context.set_trailing_metadata((("x-request-id", request_id),))
        return time.perf_counter()

    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = enter(context)
            error: BaseException | None = None
            try:
                try:
                    return await inner(request, context)
                except Exception as exc:
                    if _is_abort(exc):
                        raise
                    await _abort_for(exc, context, method, request_id)
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(context, started, None if _is_abort(error) else error)

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(unary, handler.request_deserializer, handler.response_serializer)

    inner_stream = handler.unary_stream or handler.stream_stream

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = enter(context)
        error: BaseException | None = None
        try:
            try:
                result = inner_stream(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    # A coroutine handler that writes with context.write() (or aborts).
                    await result
            except Exception as exc:
                if _is_abort(exc):
                    raise
                await _abort_for(exc, context, method, request_id)
        except BaseException as exc:
            error = exc
            raise
        finally:
            finish(context, started, None if _is_abort(error) else error)

    factory = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(streaming, handler.request_deserializer, handler.response_serializer)


async def _abort_for(
    error: Exception, context: grpc.aio.ServicerContext, method: str, request_id: str
) -> None:
    """Abort the call with the status ``error`` stands for (always raises)."""
    if isinstance(error, DomainError):
        await context.abort(getattr(grpc.StatusCode, error.status, grpc.StatusCode.UNKNOWN), str(error))
    log.error("%s failed with an internal error", method, exc_info=error)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error in {method} (request id {request_id}); the service log has the details",
    )


def _is_abort(error: BaseException | None) -> bool:
    # context.abort() raises an exception whose status the context already holds.
    return error is not None and type(error).__name__ == "AbortError"


class GrpcServer:
    """A grpc.aio server with the platform's standard services and interceptors."""

    def __init__(self, service: str, host: str, port: int, auth: AuthSettings) -> None:
        self.service = service
        self.address = f"{host}:{port}"
        self._ready = False
        interceptors: list[grpc.aio.ServerInterceptor] = [_ContextInterceptor(service, lambda: self._ready)]
        if not auth.auth_disabled:
            interceptors.insert(0, _ApiKeyInterceptor(ApiKeys.from_settings(auth)))
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]

    def add(
        self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str
    ) -> None:
        """Register a servicer with its generated ``add_..._to_server`` and its full name (for reflection)."""
        add_to_server(servicer, self.server)
        self._service_names.append(full_name)

    async def start(self) -> None:
        reflection.enable_server_reflection([*self._service_names, reflection.SERVICE_NAME], self.server)
        try:
            self.server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.address} ({exc}); is the port taken?") from exc
        await self.server.start()
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info("gRPC listening on %s", self.address)

    async def set_serving(self) -> None:
        self._ready = True
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let calls in flight finish for up to ``grace`` seconds, then stop."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)

    async def _set_all(self, status: int) -> None:
        for name in ["", *self._service_names[1:]]:
            await self.health.set(name, status)
