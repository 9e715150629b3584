"""Prompt templates: numbered versions per name (checked by llmops.core.prompt_templates) and aliases.

Versions are numbered as model versions are: from a counter on the template's row
(``latest_version``), read and raised under that row's lock, so concurrent registrations of one name
get 1, 2, 3... without gaps or duplicates. The first registration of a name inserts that row; two
racing to do so meet the unique name, and the loser runs again and numbers after the winner.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, chunks, keyset_page, utc_now
from llmops.registry.domain.errors import InvalidArgument, NotFound
from llmops.registry.domain.models import PromptTemplate, PromptTemplateSpec
from llmops.registry.domain.values import (
    MAX_ID_CHARS,
    check_alias,
    check_template_name,
    check_template_spec,
    check_text,
    check_version_number,
)
from llmops.registry.store.tables import template_aliases_t, template_versions_t, templates_t


class SqlPromptTemplates(SqlStore):
    """Prompt template versions and their aliases."""

    def create_prompt_template(
        self, spec: PromptTemplateSpec, *, now: dt.datetime | None = None
    ) -> PromptTemplate:
        spec = check_template_spec(spec)
        now = utc_now(now)
        return self._retry_races(lambda: self._create_template(spec, now))

    def _create_template(self, spec: PromptTemplateSpec, now: dt.datetime) -> PromptTemplate:
        with self._write() as conn:
            t = _find_template_row(conn, spec.name, lock=True)
            if t is None:
                conn.execute(
                    insert(templates_t).values(
                        name=spec.name, latest_version=0, created_at=now, updated_at=now
                    )
                )
                t = _template_row(conn, spec.name, lock=True)
            number = int(t.latest_version) + 1
            conn.execute(
                update(templates_t)
                .where(templates_t.c.id == t.id)
                .values(latest_version=number, updated_at=now)
            )
            conn.execute(
                insert(template_versions_t).values(
                    template_id=t.id,
                    version=number,
                    template=spec.template,
                    system=spec.system,
                    variables=list(spec.variables),
                    description=spec.description,
                    created_by=spec.created_by,
                    created_at=now,
                )
            )
            return _load(conn, _version_row(conn, _template_row(conn, spec.name), number))

    def get_prompt_template(
        self, name: str, *, version: int | None = None, alias: str = ""
    ) -> PromptTemplate:
        check_template_name(name)
        if version is not None and alias:
            raise InvalidArgument("give version or alias, not both")
        if version is not None:
            check_version_number(version)
        if alias:
            check_alias(alias)
        with self._read() as conn:
            t = _template_row(conn, name)
            if alias:
                holder = _alias_holder(conn, t.id, alias)
                if holder is None:
                    raise NotFound(f"prompt template {name!r} has no alias {alias!r}")
                version = holder
            return _load(conn, _version_row(conn, t, version or int(t.latest_version)))

    def list_prompt_templates(
        self, name: str = "", page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[PromptTemplate]:
        query = select(template_versions_t, templates_t.c.name)
        if name:
            check_template_name(name)
            query = query.join(templates_t, templates_t.c.id == template_versions_t.c.template_id)
            query = query.where(templates_t.c.name == name)
            key = template_versions_t.c.version
        else:
            # The latest version of every name, by name.
            query = query.join(
                templates_t,
                (templates_t.c.id == template_versions_t.c.template_id)
                & (template_versions_t.c.version == templates_t.c.latest_version),
            )
            key = templates_t.c.name
        with self._read() as conn:
            # The page (and its token) is read before the name: a bad token fails as such even for
            # a template that does not exist.
            page = keyset_page(conn, query, key, page_size, page_token, descending=bool(name))
            if name:
                _template_row(conn, name)
            aliases = _aliases_of(conn, sorted({r.template_id for r in page.items}))
        return page.map(lambda r: _template_of(r, aliases.get(r.template_id, {})))

    def set_prompt_template_alias(
        self, name: str, alias: str, version: int, *, actor: str = "", now: dt.datetime | None = None
    ) -> PromptTemplate:
        check_template_name(name)
        check_alias(alias)
        check_version_number(version)
        check_text(actor, "actor", MAX_ID_CHARS)
        now = utc_now(now)
        with self._write() as conn:
            t = _template_row(conn, name, lock=True)
            target = _version_row(conn, t, version)
            where = (template_aliases_t.c.template_id == t.id) & (template_aliases_t.c.alias == alias)
            values = {"version": version, "actor": actor, "updated_at": now}
            if _alias_holder(conn, t.id, alias) is None:
                conn.execute(insert(template_aliases_t).values(template_id=t.id, alias=alias, **values))
            else:
                conn.execute(update(template_aliases_t).where(where).values(**values))
            conn.execute(update(templates_t).where(templates_t.c.id == t.id).values(updated_at=now))
            return _load(conn, target)


def _find_template_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(templates_t).where(templates_t.c.name == name)
    if lock:
        # PostgreSQL: serialises every change to this template; SQLite's BEGIN IMMEDIATE already does.
        query = query.with_for_update()
    return conn.execute(query).first()


def _template_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any]:
    row = _find_template_row(conn, name, lock=lock)
    if row is None:
        raise NotFound(f"prompt template {name!r} not found: register it with CreatePromptTemplate")
    return row


def _version_row(conn: Connection, t: Row[Any], version: int) -> Row[Any]:
    row = conn.execute(
        select(template_versions_t, templates_t.c.name)
        .join(templates_t, templates_t.c.id == template_versions_t.c.template_id)
        .where(template_versions_t.c.template_id == t.id, template_versions_t.c.version == version)
    ).first()
    if row is None:
        raise NotFound(
            f"prompt template {t.name!r} has no version {version} (its latest is {t.latest_version})"
        )
    return row


def _alias_holder(conn: Connection, template_id: int, alias: str) -> int | None:
    row = conn.execute(
        select(template_aliases_t.c.version).where(
            template_aliases_t.c.template_id == template_id, template_aliases_t.c.alias == alias
        )
    ).first()
    return None if row is None else int(row.version)


def _aliases_of(conn: Connection, template_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """alias -> version of each template in ``template_ids``."""
    out: dict[int, dict[str, int]] = {}
    for chunk in chunks(list(template_ids)):
        for r in conn.execute(
            select(template_aliases_t)
            .where(template_aliases_t.c.template_id.in_(chunk))
            .order_by(template_aliases_t.c.alias)
        ):
            out.setdefault(r.template_id, {})[r.alias] = int(r.version)
    return out


def _load(conn: Connection, row: Row[Any]) -> PromptTemplate:
    return _template_of(row, _aliases_of(conn, [row.template_id]).get(row.template_id, {}))


def _template_of(row: Row[Any], holders: dict[str, int]) -> PromptTemplate:
    """A version row (with its template's ``name``) as the domain's value."""
    return PromptTemplate(
        name=row.name,
        version=int(row.version),
        template=row.template,
        system=row.system,
        variables=tuple(row.variables or ()),
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        aliases=tuple(sorted(a for a, v in holders.items() if v == row.version)),
    )
