"""Alias history rules without I/O: where a rollback goes, and when a version held an alias.

Rollback is an undo. Replaying an alias's history oldest first, every set, promote or delete that
moves the alias away from a version pushes that version on a stack of earlier holders, and every
rollback pops it. Rollback moves the alias to the top of that stack:

    promote v1, promote v2, rollback      -> v1  (stack after: empty)
    a second rollback                     -> nothing to roll back to (FAILED_PRECONDITION)
    promote v1, v2, v3, rollback, rollback -> v2, then v1
    promote v1, delete, rollback          -> v1  (a deleted alias is restored)

So two rollbacks in a row walk further back instead of undoing each other, and a rollback never
returns to a version that was itself left by a rollback (the bad version an operator escaped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from llmops.registry.domain.models import AliasChange, AliasOperation


def earlier_holders(history: Iterable[AliasChange]) -> tuple[list[int], int]:
    """Replay one alias's history: the stack of earlier holders (last = top) and the current holder.

    Args:
        history: the changes of one alias, oldest first.

    Returns:
        The stack and the version the alias points at now (0 when it does not exist).
    """
    stack: list[int] = []
    current = 0
    for change in history:
        if change.operation == AliasOperation.ROLLBACK:
            # Pop down to the version it returned to (entries equal to the then-current holder were
            # skipped by rollback_target, so they go too).
            while stack and stack.pop() != change.to_version:
                pass
        elif change.from_version and change.from_version != change.to_version:
            stack.append(change.from_version)
        current = change.to_version
    return stack, current


def rollback_target(history: Iterable[AliasChange]) -> int | None:
    """The version a rollback of this alias moves to, or None when there is no earlier holder.

    The top of the stack of earlier holders, passing over entries equal to the current holder (after
    promote v1, delete, set v1 the stack holds v1, and going "back" to v1 would change nothing).

    Args:
        history: the changes of one alias, oldest first.
    """
    stack, current = earlier_holders(history)
    return next((v for v in reversed(stack) if v != current), None)


@dataclass(frozen=True)
class AliasPeriod:
    """A stretch of time during which ``alias`` pointed at ``version``."""

    alias: str
    version: int
    started_by: AliasChange
    # The change that moved the alias away; None while it still points at the version.
    ended_by: AliasChange | None

    @property
    def active(self) -> bool:
        return self.ended_by is None

    @property
    def started_at(self) -> dt.datetime:
        return self.started_by.changed_at


def alias_periods(history: Sequence[AliasChange], version: int) -> list[AliasPeriod]:
    """Every period in which an alias of the model pointed at ``version``, oldest first.

    Args:
        history: the changes of every alias of one model, oldest first.
    """
    by_alias: dict[str, list[AliasChange]] = {}
    for change in history:
        by_alias.setdefault(change.alias, []).append(change)
    periods: list[AliasPeriod] = []
    for alias, changes in by_alias.items():
        for i, change in enumerate(changes):
            if change.to_version != version or change.operation == AliasOperation.DELETE:
                continue
            if i > 0 and changes[i - 1].to_version == version:
                # Already holding it (a no-op change): the period started earlier.
                continue
            ended_by = next((c for c in changes[i + 1 :] if c.to_version != version), None)
            periods.append(AliasPeriod(alias, version, change, ended_by))
    periods.sort(key=lambda p: (p.started_by.changed_at, p.started_by.id))
    return periods
