"""Canaries: a traffic split on a model's alias between its holder and a challenger alias's holder.

One row per (model, alias). Starting or changing a canary, and ending it with the alias moves the end
makes, are each one transaction with their models.canary_changed and models.alias_changed events
(the outbox), under the model's lock like every alias change.

An alias takes part in one canary at most (as the alias it runs on or as its challenger), so serving
never has to follow a chain of splits, and deleting an alias affects one canary at most:

* deleting a canary's challenger alias (DeleteAlias) ends that canary as a rollback: the challenger
  is gone, so the champion takes all traffic, exactly what EndCanary(ROLLBACK) does; the canary's
  end is announced (active false, outcome rollback) with the deletion;
* deleting the alias a canary runs on is refused (FAILED_PRECONDITION): no outcome describes a split
  whose champion vanished; the operator ends the canary first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, or_, select, update

from llmops.contracts.events import ModelCanaryChanged
from llmops.contracts.vocabulary import CHALLENGER_ALIAS, DEFAULT_ALIAS
from llmops.core.logging import current_request_id
from llmops.core.sql import utc_now
from llmops.registry.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from llmops.registry.domain.models import AliasChange, AliasOperation, Canary, CanaryOutcome
from llmops.registry.domain.values import check_alias, check_model_name, check_share
from llmops.registry.store.aliases import SqlAliases, check_audit, require_ready
from llmops.registry.store.rows import alias_holder, model_row, version_row
from llmops.registry.store.tables import canaries_t


class SqlCanaries(SqlAliases):
    """Canaries on model aliases, and alias deletion that knows about them (see the module docstring)."""

    def set_canary(
        self,
        model: str,
        alias: str = DEFAULT_ALIAS,
        challenger_alias: str = CHALLENGER_ALIAS,
        *,
        share: float,
        actor: str = "",
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> Canary:
        check_model_name(model)
        check_alias(alias)
        check_alias(challenger_alias, "challenger_alias")
        share = check_share(share)
        if alias == challenger_alias:
            raise InvalidArgument(
                f"alias and challenger_alias are both {alias!r}: a canary splits traffic between two "
                "different aliases"
            )
        check_audit(actor, reason)
        now = utc_now(now)
        with self._write() as conn:
            m = model_row(conn, model, lock=True)
            existing = _canary_row(conn, m.id, alias)
            if existing is not None and existing.challenger_alias != challenger_alias:
                raise FailedPrecondition(
                    f"a canary on {model}@{alias} already runs against {existing.challenger_alias!r}: name "
                    "that challenger_alias to change its share, or end the canary first (EndCanary)"
                )
            _check_not_in_another_canary(conn, m, alias, challenger_alias)
            champion = _ready_holder(conn, m, alias)
            challenger = _ready_holder(conn, m, challenger_alias)
            if existing is not None and existing.share == share:
                # Already so: a retried call must not announce the split again.
                return _canary_of(existing, m.name, champion, challenger)
            values = {"share": share, "actor": actor, "reason": reason, "updated_at": now}
            if existing is None:
                conn.execute(
                    insert(canaries_t).values(
                        model_id=m.id, alias=alias, challenger_alias=challenger_alias, **values
                    )
                )
            else:
                conn.execute(update(canaries_t).where(_key(m.id, alias)).values(**values))
            canary = Canary(m.name, alias, challenger_alias, share, champion, challenger, actor, reason, now)
            self._announce(conn, _changed(canary), now=now)
            return canary

    def get_canary(self, model: str, alias: str = DEFAULT_ALIAS) -> Canary:
        check_model_name(model)
        check_alias(alias)
        with self._read() as conn:
            m = model_row(conn, model)
            row = _canary_row(conn, m.id, alias)
            if row is None:
                raise NotFound(f"no canary runs on {model}@{alias}: start one with SetCanary")
            return _canary_of(
                row,
                m.name,
                alias_holder(conn, m.id, alias) or 0,
                alias_holder(conn, m.id, row.challenger_alias) or 0,
            )

    def end_canary(
        self,
        model: str,
        alias: str = DEFAULT_ALIAS,
        *,
        outcome: CanaryOutcome,
        actor: str = "",
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> Canary:
        check_model_name(model)
        check_alias(alias)
        if not isinstance(outcome, CanaryOutcome):
            raise InvalidArgument(f"outcome must be promote or rollback, got {outcome!r}")
        check_audit(actor, reason)
        now = utc_now(now)
        with self._write() as conn:
            m = model_row(conn, model, lock=True)
            row = _canary_row(conn, m.id, alias)
            if row is None:
                raise NotFound(f"no canary runs on {model}@{alias}: nothing to end")
            ended = self._end_canary(conn, m, row, outcome, actor, reason, now)
            if alias_holder(conn, m.id, row.challenger_alias) is not None:
                super()._delete_alias(conn, m, row.challenger_alias, actor, reason, now)
            return ended

    def _delete_alias(
        self, conn: Connection, m: Row[Any], alias: str, actor: str, reason: str, now: dt.datetime
    ) -> AliasChange:
        """Delete an alias; a canary's challenger ends its canary, a canary's own alias is refused."""
        runs_on = _canary_row(conn, m.id, alias)
        if runs_on is not None:
            raise FailedPrecondition(
                f"a canary runs on {m.name}@{alias} (challenger {runs_on.challenger_alias!r}): end it "
                "with EndCanary before deleting the alias"
            )
        challenged = conn.execute(
            select(canaries_t).where(canaries_t.c.model_id == m.id, canaries_t.c.challenger_alias == alias)
        ).first()
        if challenged is not None:
            self._end_canary(conn, m, challenged, CanaryOutcome.ROLLBACK, actor, reason, now)
        return super()._delete_alias(conn, m, alias, actor, reason, now)

    def _end_canary(
        self,
        conn: Connection,
        m: Row[Any],
        row: Row[Any],
        outcome: CanaryOutcome,
        actor: str,
        reason: str,
        now: dt.datetime,
    ) -> Canary:
        """Make the outcome's alias move, remove the canary and announce its end; the caller then
        deletes the challenger alias.

        The end is announced before the challenger alias's deletion, so serving stops sending traffic
        to the challenger before it hears that the challenger's version is gone.
        """
        challenger = alias_holder(conn, m.id, row.challenger_alias)
        if outcome == CanaryOutcome.PROMOTE:
            if challenger is None:
                raise FailedPrecondition(
                    f"challenger alias {row.challenger_alias!r} of {m.name} holds no version: nothing to "
                    "promote; end the canary with rollback"
                )
            # The existing promotion: gated, in this transaction (a failed gate changes nothing).
            self._move_alias(conn, m, row.alias, challenger, AliasOperation.PROMOTE, actor, reason, now)
        conn.execute(delete(canaries_t).where(_key(m.id, row.alias)))
        ended = Canary(
            model=m.name,
            alias=row.alias,
            challenger_alias=row.challenger_alias,
            share=0.0,
            champion_version=alias_holder(conn, m.id, row.alias) or 0,
            challenger_version=challenger or 0,
            actor=actor,
            reason=reason,
            updated_at=now,
            active=False,
            outcome=outcome,
        )
        self._announce(conn, _changed(ended), now=now)
        return ended


def _key(model_id: int, alias: str) -> Any:
    return (canaries_t.c.model_id == model_id) & (canaries_t.c.alias == alias)


def _canary_row(conn: Connection, model_id: int, alias: str) -> Row[Any] | None:
    return conn.execute(select(canaries_t).where(_key(model_id, alias))).first()


def _check_not_in_another_canary(conn: Connection, m: Row[Any], alias: str, challenger_alias: str) -> None:
    both = (alias, challenger_alias)
    other = conn.execute(
        select(canaries_t)
        .where(
            canaries_t.c.model_id == m.id,
            canaries_t.c.alias != alias,
            or_(canaries_t.c.alias.in_(both), canaries_t.c.challenger_alias.in_(both)),
        )
        .order_by(canaries_t.c.alias)
    ).first()
    if other is not None:
        taken = next(a for a in both if a in (other.alias, other.challenger_alias))
        raise FailedPrecondition(
            f"alias {taken!r} of {m.name} already takes part in the canary on {m.name}@{other.alias} "
            f"(challenger {other.challenger_alias!r}); an alias is in one canary at most: end that one first"
        )


def _ready_holder(conn: Connection, m: Row[Any], alias: str) -> int:
    """The READY version ``alias`` holds; FAILED_PRECONDITION naming the alias when it holds none."""
    holder = alias_holder(conn, m.id, alias)
    if holder is None:
        raise FailedPrecondition(
            f"model {m.name!r} has no alias {alias!r}: point it at a ready version (SetAlias or Promote) "
            "before the canary starts"
        )
    require_ready(m.name, version_row(conn, m, holder))
    return holder


def _canary_of(row: Row[Any], model: str, champion: int, challenger: int) -> Canary:
    return Canary(
        model=model,
        alias=row.alias,
        challenger_alias=row.challenger_alias,
        share=float(row.share),
        champion_version=champion,
        challenger_version=challenger,
        actor=row.actor,
        reason=row.reason,
        updated_at=row.updated_at,
    )


def _changed(canary: Canary) -> ModelCanaryChanged:
    return ModelCanaryChanged(
        model=canary.model,
        alias=canary.alias,
        challenger_alias=canary.challenger_alias,
        share=canary.share,
        champion_version=canary.champion_version or None,
        challenger_version=canary.challenger_version or None,
        active=canary.active,
        outcome="" if canary.outcome is None else canary.outcome.value,
        actor=canary.actor,
        reason=canary.reason,
        occurred_at=canary.updated_at,
        # The relay publishes later, outside this call: the trace is taken now.
        trace_id=current_request_id(),
    )
