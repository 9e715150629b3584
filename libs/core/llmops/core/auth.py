"""API keys: the one check, for gRPC metadata and HTTP bearer tokens alike."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from llmops.core.settings import AuthSettings


class ApiKeys:
    """The keys a service accepts (``LLMOPS_API_KEYS``); with auth disabled, every caller is accepted."""

    def __init__(self, keys: Iterable[str], *, disabled: bool = False) -> None:
        self._keys = [k.encode() for k in keys]
        self.disabled = disabled

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> ApiKeys:
        return cls((k.get_secret_value() for k in auth.api_keys), disabled=auth.auth_disabled)

    def accepts(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys, compared in constant time (timing reveals no prefix)."""
        if self.disabled:
            return True
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(presented.encode(), key)
        return ok


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` value ('' when there is none)."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
