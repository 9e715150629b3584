"""The platform's domain errors: raised by domain code and stores, mapped to gRPC status codes once.

A service raises these (or its own subclasses) on purpose, with a message meant for the caller; the
gRPC server's error interceptor (llmops.core.grpc_server) turns each into its status code. Anything
else that escapes a handler is a bug: the caller gets INTERNAL with the request id, never the text.
Domain code needs no grpc import: each class names its status code by name.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every error raised on purpose for a caller to read."""

    status: str = "UNKNOWN"


class InvalidArgument(DomainError, ValueError):
    """The request is malformed; the message names the field and what is wrong with it."""

    status = "INVALID_ARGUMENT"


class NotFound(DomainError):
    """What the request names does not exist."""

    status = "NOT_FOUND"


class AlreadyExists(DomainError):
    """Creating something whose unique key is taken."""

    status = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The request is well formed, but the current state does not allow it."""

    status = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A concurrent change won; the caller may retry."""

    status = "ABORTED"


class Unavailable(DomainError):
    """A dependency (store, broker, another service) cannot be reached now; retrying may help."""

    status = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    """A limit was reached (capacity, quota); retry later (after ``retry_after_seconds``, when known)."""

    status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    status = "PERMISSION_DENIED"


class Unimplemented(DomainError):
    """The operation is part of the contract but not built yet."""

    status = "UNIMPLEMENTED"


class DeadlineExceeded(DomainError):
    """The work did not finish within the time the caller allowed."""

    status = "DEADLINE_EXCEEDED"
