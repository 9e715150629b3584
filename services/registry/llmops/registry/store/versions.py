"""Model versions: numbered registration (once per training job), lookups, paging and status."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select, update

from llmops.contracts.events import ModelVersionRegistered
from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, keyset_page, utc_now
from llmops.registry.domain.errors import AlreadyExists, InvalidArgument, NotFound
from llmops.registry.domain.gates import check_gate
from llmops.registry.domain.models import (
    ModelDefaults,
    ModelVersion,
    RegisteredVersion,
    VersionSpec,
    VersionStatus,
)
from llmops.registry.domain.values import (
    check_alias,
    check_model_name,
    check_version_number,
    check_version_spec,
)
from llmops.registry.store.models import insert_model
from llmops.registry.store.rows import (
    alias_holder,
    aliases_of,
    find_model_row,
    load_version,
    load_version_by_number,
    model_row,
    version_of,
    version_row,
)
from llmops.registry.store.tables import models_t, versions_t


class SqlVersions(SqlStore):
    """Versions of registered models; a registration and its event are one transaction."""

    def register_version(
        self,
        spec: VersionSpec,
        *,
        defaults: ModelDefaults | None = None,
        now: dt.datetime | None = None,
    ) -> RegisteredVersion:
        spec = check_version_spec(spec)
        if defaults is not None:
            check_gate(defaults.gate)
        now = utc_now(now)
        # Another transaction may insert the same model, job or version first (PostgreSQL, or two
        # SQLite stores that opened one file); running again sees its row.
        return self._retry_races(lambda: self._register(spec, defaults, now))

    def _register(
        self, spec: VersionSpec, defaults: ModelDefaults | None, now: dt.datetime
    ) -> RegisteredVersion:
        with self._write() as conn:
            if spec.training_job_id:
                existing = conn.execute(
                    select(versions_t, models_t.c.name.label("model_name"))
                    .join(models_t, models_t.c.id == versions_t.c.model_id)
                    .where(versions_t.c.training_job_id == spec.training_job_id)
                ).first()
                if existing is not None:
                    if existing.model_name != spec.model:
                        raise AlreadyExists(
                            f"training job {spec.training_job_id!r} is already registered as "
                            f"{existing.model_name} version {existing.version}; one job makes one version"
                        )
                    return RegisteredVersion(load_version(conn, existing, existing.model_name), False)
            model = find_model_row(conn, spec.model, lock=True)
            if model is None:
                if defaults is None:
                    raise NotFound(f"model {spec.model!r} not found: create it with CreateModel first")
                insert_model(conn, spec.model, defaults.description, defaults.base_model, defaults.gate, now)
                model = model_row(conn, spec.model, lock=True)
            base_model = spec.base_model or model.base_model
            if not base_model:
                raise InvalidArgument(
                    f"base_model is empty and model {spec.model!r} has no base model: say which model "
                    "the weights or adapter belong to"
                )
            number = model.latest_version + 1
            conn.execute(
                update(models_t)
                .where(models_t.c.id == model.id)
                .values(latest_version=number, updated_at=now)
            )
            conn.execute(
                insert(versions_t).values(
                    model_id=model.id,
                    version=number,
                    artifact_uri=spec.artifact_uri,
                    base_model=base_model,
                    adapter=spec.adapter,
                    adapter_kind=spec.adapter_kind,
                    metrics=dict(spec.metrics),
                    params=dict(spec.params),
                    status=spec.status.value,
                    training_job_id=spec.training_job_id or None,
                    dataset_version_id=spec.dataset_version_id,
                    description=spec.description,
                    created_at=now,
                    trained_at=spec.trained_at,
                )
            )
            self._announce(
                conn,
                ModelVersionRegistered(
                    model=spec.model,
                    version=number,
                    artifact_uri=spec.artifact_uri,
                    base_model=base_model,
                    metrics=dict(spec.metrics),
                    occurred_at=now,
                    trace_id=spec.trace_id,
                ),
                now=now,
            )
            return RegisteredVersion(load_version_by_number(conn, model, number), True)

    def get_version(self, model: str, version: int) -> ModelVersion:
        check_model_name(model)
        check_version_number(version)
        with self._read() as conn:
            return load_version_by_number(conn, model_row(conn, model), version)

    def get_version_by_alias(self, model: str, alias: str) -> ModelVersion:
        check_model_name(model)
        check_alias(alias)
        with self._read() as conn:
            row = model_row(conn, model)
            holder = alias_holder(conn, row.id, alias)
            if holder is None:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            return load_version_by_number(conn, row, holder)

    def list_versions(
        self, model: str, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[ModelVersion]:
        check_model_name(model)
        query = select(versions_t).join(models_t, models_t.c.id == versions_t.c.model_id)
        query = query.where(models_t.c.name == model)
        with self._read() as conn:
            # The page (and its token) is read before the model: a bad token fails as such even
            # for a model that does not exist.
            page = keyset_page(conn, query, versions_t.c.version, page_size, page_token, descending=True)
            m = model_row(conn, model)
            holders = aliases_of(conn, [m.id]).get(m.id, {})
        return page.map(lambda r: version_of(r, m.name, holders))

    def versions_with_status(self, status: VersionStatus, limit: int = 100) -> list[ModelVersion]:
        with self._read() as conn:
            rows = list(
                conn.execute(
                    select(versions_t, models_t.c.name.label("model_name"))
                    .join(models_t, models_t.c.id == versions_t.c.model_id)
                    .where(versions_t.c.status == status.value)
                    .order_by(versions_t.c.id)
                    .limit(max(limit, 1))
                )
            )
            return [load_version(conn, r, r.model_name) for r in rows]

    def set_version_status(self, model: str, version: int, status: VersionStatus) -> ModelVersion:
        with self._write() as conn:
            m = model_row(conn, model, lock=True)
            row = version_row(conn, m, version)
            conn.execute(update(versions_t).where(versions_t.c.id == row.id).values(status=status.value))
            return load_version_by_number(conn, m, version)
