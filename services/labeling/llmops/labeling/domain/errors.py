"""The labeling service's errors: the kernel's domain errors, and the few kinds only labeling has.

The gRPC server maps each to its status code (llmops.core.grpc_server); LeaseNotFound is NOT_FOUND,
LeaseExpired and AgreementUndefined are FAILED_PRECONDITION, InvalidLabel is INVALID_ARGUMENT.
"""

from __future__ import annotations

from llmops.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

__all__ = [
    "AgreementUndefined",
    "AlreadyExists",
    "InvalidArgument",
    "InvalidLabel",
    "LeaseExpired",
    "LeaseNotFound",
    "NotFound",
]


class InvalidLabel(InvalidArgument):
    """A label value does not fit the queue (wrong type, outside the label set or rating range...)."""


class LeaseNotFound(NotFound):
    """No usable lease with that id for that task and labeler (unknown, someone else's, or released)."""


class LeaseExpired(FailedPrecondition):
    """The lease existed but ran out; the task went back to the queue and may be leased again."""


class AgreementUndefined(FailedPrecondition):
    """An agreement statistic cannot be computed from the data given (e.g. no pairable labels)."""
