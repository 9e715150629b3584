"""The registry's errors: the platform's domain errors (llmops.core.errors) and the registry's own.

The gRPC server's error interceptor maps each to its status code; the registry's own are all
FAILED_PRECONDITION.
"""

from __future__ import annotations

from llmops.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound


class GateFailed(FailedPrecondition):
    """A version does not pass its model's promotion gate."""


class VersionNotReady(FailedPrecondition):
    """A version whose artifact is not verified (pending, failed or archived) cannot hold an alias."""


class NothingToRollBack(FailedPrecondition):
    """An alias has no earlier holder to go back to."""


__all__ = [
    "AlreadyExists",
    "FailedPrecondition",
    "GateFailed",
    "InvalidArgument",
    "NotFound",
    "NothingToRollBack",
    "VersionNotReady",
]
