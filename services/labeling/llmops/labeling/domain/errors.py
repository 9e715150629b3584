"""The labeling service's errors; the gRPC layer maps each class to one status code.

Suggested mapping: NotFound -> NOT_FOUND, AlreadyExists -> ALREADY_EXISTS, InvalidArgument and
InvalidLabel -> INVALID_ARGUMENT, LeaseNotFound -> NOT_FOUND, LeaseExpired -> FAILED_PRECONDITION,
AgreementUndefined -> FAILED_PRECONDITION.
"""

from __future__ import annotations


class LabelingError(Exception):
    """Base class of every error the labeling domain and store raise on purpose."""


class NotFound(LabelingError):
    """A queue, task or dataset version does not exist."""


class AlreadyExists(LabelingError):
    """Creating something whose unique name is taken."""


class InvalidArgument(LabelingError, ValueError):
    """A request is malformed: a queue definition, a task input, a page token, a split parameter."""


class InvalidLabel(InvalidArgument):
    """A label value does not fit the queue (wrong type, outside the label set or rating range...)."""


class LeaseNotFound(LabelingError):
    """No usable lease with that id for that task and labeler (unknown, someone else's, or released)."""


class LeaseExpired(LabelingError):
    """The lease existed but ran out; the task went back to the queue and may be leased again."""


class AgreementUndefined(LabelingError):
    """An agreement statistic cannot be computed from the data given (e.g. no pairable labels)."""
