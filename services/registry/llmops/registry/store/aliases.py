"""Aliases: set, gated promotion, deletion and rollback, each with its history line and event."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from llmops.contracts.events import ModelAliasChanged
from llmops.core.logging import current_request_id
from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, keyset_page, utc_now, values_of
from llmops.registry.domain.aliases import rollback_target
from llmops.registry.domain.errors import (
    GateFailed,
    InvalidArgument,
    NotFound,
    NothingToRollBack,
    VersionNotReady,
)
from llmops.registry.domain.gates import evaluate_gate
from llmops.registry.domain.models import AliasChange, AliasOperation, VersionStatus
from llmops.registry.domain.values import (
    MAX_ID_CHARS,
    check_alias,
    check_model_name,
    check_text,
    check_version_number,
)
from llmops.registry.store.rows import alias_holder, change_of, gate_of, model_row, version_row
from llmops.registry.store.tables import alias_changes_t, aliases_t, models_t


class SqlAliases(SqlStore):
    """Aliases of registered models; a change, its history line and its event are one transaction."""

    def move_alias(
        self,
        model: str,
        alias: str,
        version: int,
        *,
        operation: AliasOperation,
        actor: str = "",
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> AliasChange:
        if operation not in (AliasOperation.SET, AliasOperation.PROMOTE):
            raise InvalidArgument(f"move_alias makes set or promote changes, not {operation.value}")
        check_model_name(model)
        check_alias(alias)
        check_version_number(version)
        check_audit(actor, reason)
        now = utc_now(now)
        with self._write() as conn:
            m = model_row(conn, model, lock=True)
            return self._move_alias(conn, m, alias, version, operation, actor, reason, now)

    def delete_alias(
        self, model: str, alias: str, *, actor: str = "", reason: str = "", now: dt.datetime | None = None
    ) -> AliasChange:
        check_model_name(model)
        check_alias(alias)
        check_audit(actor, reason)
        now = utc_now(now)
        with self._write() as conn:
            m = model_row(conn, model, lock=True)
            return self._delete_alias(conn, m, alias, actor, reason, now)

    def _move_alias(
        self,
        conn: Connection,
        m: Row[Any],
        alias: str,
        version: int,
        operation: AliasOperation,
        actor: str,
        reason: str,
        now: dt.datetime,
    ) -> AliasChange:
        """move_alias in the caller's transaction, which holds the model's lock (``m``)."""
        target = version_row(conn, m, version)
        require_ready(m.name, target)
        if operation == AliasOperation.PROMOTE:
            # Checked under the model's lock, so a concurrent SetGate cannot slip in between.
            result = evaluate_gate(gate_of(m.gate), target.metrics or {})
            if not result.passed:
                raise GateFailed(
                    f"{m.name} version {version} does not pass the gate of {m.name} and stays off "
                    f"{alias!r}: {result.describe()}"
                )
        current = alias_holder(conn, m.id, alias)
        if current == version:
            # Already there: a retried call must not add a history line or an event.
            return AliasChange(0, m.name, alias, version, version, actor, reason, operation, now)
        return self._change_alias(conn, m, alias, current or 0, target, operation, actor, reason, now)

    def _delete_alias(
        self, conn: Connection, m: Row[Any], alias: str, actor: str, reason: str, now: dt.datetime
    ) -> AliasChange:
        """delete_alias in the caller's transaction, which holds the model's lock (``m``)."""
        current = alias_holder(conn, m.id, alias)
        if current is None:
            raise NotFound(f"model {m.name!r} has no alias {alias!r}")
        return self._change_alias(conn, m, alias, current, None, AliasOperation.DELETE, actor, reason, now)

    def rollback_alias(
        self, model: str, alias: str, *, actor: str = "", reason: str = "", now: dt.datetime | None = None
    ) -> AliasChange:
        check_model_name(model)
        check_alias(alias)
        check_audit(actor, reason)
        now = utc_now(now)
        with self._write() as conn:
            m = model_row(conn, model, lock=True)
            history = [
                change_of(r, model)
                for r in conn.execute(
                    select(alias_changes_t)
                    .where(alias_changes_t.c.model_id == m.id, alias_changes_t.c.alias == alias)
                    .order_by(alias_changes_t.c.id)
                )
            ]
            if not history:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            target_number = rollback_target(history)
            current = alias_holder(conn, m.id, alias)
            if target_number is None:
                where = f"version {current}" if current else "no version (deleted)"
                raise NothingToRollBack(
                    f"alias {alias!r} of {model} points at {where} and has no earlier holder to roll "
                    "back to; use SetAlias to point it at a version"
                )
            target = version_row(conn, m, target_number)
            require_ready(model, target)
            return self._change_alias(
                conn, m, alias, current or 0, target, AliasOperation.ROLLBACK, actor, reason, now
            )

    def alias_history(
        self, model: str, alias: str = "", page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[AliasChange]:
        check_model_name(model)
        if alias:
            check_alias(alias)
        query = select(alias_changes_t).join(models_t, models_t.c.id == alias_changes_t.c.model_id)
        query = query.where(models_t.c.name == model)
        if alias:
            query = query.where(alias_changes_t.c.alias == alias)
        with self._read() as conn:
            # The page (and its token) is read before the model: a bad token fails as such even
            # for a model that does not exist.
            page = keyset_page(conn, query, alias_changes_t.c.id, page_size, page_token, descending=True)
            model_row(conn, model)
            if alias and not page.items and not page_token:
                raise NotFound(f"model {model!r} has no alias {alias!r} (it was never set)")
        return page.map(lambda r: change_of(r, model))

    def _change_alias(
        self,
        conn: Connection,
        model: Row[Any],
        alias: str,
        from_version: int,
        target: Row[Any] | None,
        operation: AliasOperation,
        actor: str,
        reason: str,
        now: dt.datetime,
    ) -> AliasChange:
        """Move (``target`` set) or remove (None) an alias, record the change and queue its event."""
        to_version = 0 if target is None else int(target.version)
        where = (aliases_t.c.model_id == model.id) & (aliases_t.c.alias == alias)
        if target is None:
            conn.execute(delete(aliases_t).where(where))
        elif from_version:
            conn.execute(update(aliases_t).where(where).values(version=to_version, updated_at=now))
        else:
            conn.execute(
                insert(aliases_t).values(model_id=model.id, alias=alias, version=to_version, updated_at=now)
            )
        change = AliasChange(0, model.name, alias, from_version, to_version, actor, reason, operation, now)
        change_id = conn.execute(
            insert(alias_changes_t).values(
                values_of(alias_changes_t, change, model_id=model.id, operation=operation.value)
            )
        ).inserted_primary_key[0]
        conn.execute(update(models_t).where(models_t.c.id == model.id).values(updated_at=now))
        if target is None:
            # Serving needs the base model of what it unloads as much as of what it loads.
            base_model = version_row(conn, model, from_version).base_model
        else:
            base_model = target.base_model
        self._announce(
            conn,
            ModelAliasChanged(
                model=model.name,
                alias=alias,
                version=to_version or None,
                previous_version=from_version or None,
                artifact_uri="" if target is None else target.artifact_uri,
                base_model=base_model,
                actor=actor,
                reason=reason,
                occurred_at=now,
                # The relay publishes later, outside this call: the trace is taken now.
                trace_id=current_request_id(),
            ),
            now=now,
        )
        return replace(change, id=int(change_id))


def require_ready(model: str, version: Row[Any]) -> None:
    if version.status != VersionStatus.READY.value:
        raise VersionNotReady(
            f"{model} version {version.version} is {version.status}: only ready versions (artifact "
            "verified) can hold an alias"
        )


def check_audit(actor: str, reason: str) -> None:
    check_text(actor, "actor", MAX_ID_CHARS)
    check_text(reason, "reason")
