"""Which arm of a canary answers a request: sticky per user, random for a request without one."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

_SCALE = float(1 << 64)


def user_point(model: str, alias: str, user: str) -> float:
    """A stable point in [0, 1) for ``user`` on this canary.

    Hashing the model and alias with the user makes canaries on different models independent; a
    user's point does not move when the share does, so raising the share only adds users to the
    challenger and never moves one back (as Flagger's and Argo's header/cookie stickiness do).
    """
    digest = hashlib.blake2b(f"{model}\0{alias}\0{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def goes_to_challenger(
    model: str, alias: str, user: str, share: float, draw: Callable[[], float] = random.random
) -> bool:
    """Whether this request goes to the challenger (``share`` of users, or of requests without one)."""
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    point = user_point(model, alias, user) if user else draw()
    return point < share
