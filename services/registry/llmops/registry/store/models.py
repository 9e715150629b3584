"""Registered models and their promotion gates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, keyset_page, utc_now
from llmops.registry.domain.errors import AlreadyExists
from llmops.registry.domain.gates import check_gate
from llmops.registry.domain.models import GateRule, RegisteredModel
from llmops.registry.domain.values import check_model_name, check_text
from llmops.registry.store.rows import aliases_of, gate_json, load_model, model_of, model_row
from llmops.registry.store.tables import models_t


def insert_model(
    conn: Connection,
    name: str,
    description: str,
    base_model: str,
    gate: Sequence[GateRule],
    now: dt.datetime,
) -> None:
    conn.execute(
        insert(models_t).values(
            name=name,
            description=description,
            base_model=base_model,
            gate=gate_json(gate),
            latest_version=0,
            created_at=now,
            updated_at=now,
        )
    )


class SqlModels(SqlStore):
    """Registered models: create, read, list, and replace their gate."""

    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        base_model: str = "",
        gate: Sequence[GateRule] = (),
        now: dt.datetime | None = None,
    ) -> RegisteredModel:
        check_model_name(name, "name")
        check_text(description, "description")
        check_text(base_model, "base_model", 2048)
        rules = check_gate(gate)
        now = utc_now(now)
        taken = f"model {name!r} already exists; use SetGate to change its gate"
        try:
            with self._write() as conn:
                if conn.execute(select(models_t.c.id).where(models_t.c.name == name)).first():
                    raise AlreadyExists(taken)
                insert_model(conn, name, description, base_model, rules, now)
                return load_model(conn, model_row(conn, name))
        except IntegrityError:
            # Lost a race with a concurrent create of the same name (PostgreSQL).
            raise AlreadyExists(taken) from None

    def get_model(self, name: str) -> RegisteredModel:
        check_model_name(name, "name")
        with self._read() as conn:
            return load_model(conn, model_row(conn, name))

    def list_models(self, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = "") -> Page[RegisteredModel]:
        with self._read() as conn:
            page = keyset_page(conn, select(models_t), models_t.c.name, page_size, page_token)
            aliases = aliases_of(conn, [r.id for r in page.items])
        return page.map(lambda r: model_of(r, aliases.get(r.id, {})))

    def set_gate(
        self, name: str, gate: Sequence[GateRule], *, now: dt.datetime | None = None
    ) -> RegisteredModel:
        check_model_name(name)
        rules = check_gate(gate)
        now = utc_now(now)
        with self._write() as conn:
            row = model_row(conn, name, lock=True)
            conn.execute(
                update(models_t).where(models_t.c.id == row.id).values(gate=gate_json(rules), updated_at=now)
            )
            return load_model(conn, model_row(conn, name))
