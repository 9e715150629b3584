"""The registry's errors; the gRPC layer maps each class to one status code.

NotFound -> NOT_FOUND, AlreadyExists -> ALREADY_EXISTS, InvalidArgument -> INVALID_ARGUMENT,
FailedPrecondition (and its subclasses) -> FAILED_PRECONDITION.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error the registry domain and store raise on purpose."""


class NotFound(RegistryError):
    """A model, version or alias does not exist."""


class AlreadyExists(RegistryError):
    """Creating something whose unique key is taken (a model name, a training job's version)."""


class InvalidArgument(RegistryError, ValueError):
    """A request is malformed; the message names the field."""


class FailedPrecondition(RegistryError):
    """The request is well formed but the registry's state does not allow it now."""


class GateFailed(FailedPrecondition):
    """A version does not pass its model's promotion gate."""


class VersionNotReady(FailedPrecondition):
    """A version whose artifact is not verified (pending, failed or archived) cannot hold an alias."""


class NothingToRollBack(FailedPrecondition):
    """An alias has no earlier holder to go back to."""
