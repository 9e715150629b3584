"""The one way to call another service: channels from settings, with the platform's call metadata.

Every channel (service to service, and the CLI's) comes from :func:`connect` (grpc.aio) or
:func:`connect_sync` (blocking). Their interceptors add, to every call:
- the API key (``x-api-key``) from ``LLMOPS_API_KEY``;
- ``x-request-id``: the id of the call being served (so one request can be followed through every
  service's log), or a new one where there is none;
- a deadline (``LLMOPS_CALL_TIMEOUT_SECONDS``) on unary calls that set none; streams run until the
  caller or the server ends them.
TLS is used when ``LLMOPS_TLS_CA_FILE`` (or ``LLMOPS_TLS=true`` for the system roots) is set.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import grpc

from llmops.core.logging import current_request_id
from llmops.core.settings import ClientSettings

_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def call_metadata(
    settings: ClientSettings, metadata: Sequence[tuple[str, str]] | None
) -> list[tuple[str, str]]:
    """``metadata`` with the API key and request id added (a caller's own values win)."""
    out = [(k, v) for k, v in (metadata or ())]
    names = {k for k, _ in out}
    if "x-api-key" not in names and "authorization" not in names and settings.api_key is not None:
        out.append(("x-api-key", settings.api_key.get_secret_value()))
    if "x-request-id" not in names:
        out.append(("x-request-id", current_request_id() or str(uuid.uuid4())))
    return out


def _credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    if settings.tls_ca_file is not None:
        return grpc.ssl_channel_credentials(root_certificates=settings.tls_ca_file.read_bytes())
    if settings.tls:
        return grpc.ssl_channel_credentials()
    return None


class _AioStamp:
    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings

    def _details(self, details: grpc.aio.ClientCallDetails, unary: bool) -> grpc.aio.ClientCallDetails:
        timeout = details.timeout
        if timeout is None and unary:
            timeout = self._settings.call_timeout_seconds
        return grpc.aio.ClientCallDetails(
            details.method,
            timeout,
            grpc.aio.Metadata(*call_metadata(self._settings, list(details.metadata or ()))),
            details.credentials,
            details.wait_for_ready,
        )


# grpc.aio files each interceptor under one call kind only, so there is one class per kind.
class _AioUnaryUnary(_AioStamp, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return await continuation(self._details(details, True), request)


class _AioUnaryStream(_AioStamp, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return await continuation(self._details(details, False), request)


class _AioStreamUnary(_AioStamp, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details, False), requests)


class _AioStreamStream(_AioStamp, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details, False), requests)


def connect(service: str, settings: ClientSettings) -> grpc.aio.Channel:
    """A grpc.aio channel to ``service`` (its ``LLMOPS_<SERVICE>_ADDRESS``); close it when done."""
    address = settings.address(service)
    interceptors = [k(settings) for k in (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)]
    credentials = _credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=_OPTIONS, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=_OPTIONS, interceptors=interceptors)


class _SyncDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _SyncInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings

    def _details(self, details: Any, unary: bool) -> Any:
        timeout = details.timeout
        if timeout is None and unary:
            timeout = self._settings.call_timeout_seconds
        return _SyncDetails(
            details.method,
            timeout,
            call_metadata(self._settings, list(details.metadata or ())),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details, True), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details, False), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, False), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, False), requests)


def connect_sync(service: str, settings: ClientSettings) -> grpc.Channel:
    """A blocking channel to ``service`` with the same metadata and deadlines (for the CLI)."""
    address = settings.address(service)
    credentials = _credentials(settings)
    if credentials is None:
        raw = grpc.insecure_channel(address, options=_OPTIONS)
    else:
        raw = grpc.secure_channel(address, credentials, options=_OPTIONS)
    return grpc.intercept_channel(raw, _SyncInterceptor(settings))
