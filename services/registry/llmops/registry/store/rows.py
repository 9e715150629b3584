"""Rows of the registry's tables turned into the domain's values, and the shared lookups in a transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, select

from llmops.core.convert import copy_fields
from llmops.core.sql import chunks
from llmops.registry.domain.errors import NotFound
from llmops.registry.domain.models import (
    AliasChange,
    AliasOperation,
    Comparator,
    DatasetVersionRecord,
    GateRule,
    IngestionBatchRecord,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
)
from llmops.registry.store.tables import aliases_t, models_t, versions_t

# --- lookups (inside a transaction) ---------------------------------------------------------------


def find_model_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(models_t).where(models_t.c.name == name)
    if lock:
        # PostgreSQL: serialises every change to this model; SQLite ignores it (BEGIN IMMEDIATE
        # already serialises writers).
        query = query.with_for_update()
    return conn.execute(query).first()


def model_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any]:
    row = find_model_row(conn, name, lock=lock)
    if row is None:
        raise NotFound(f"model {name!r} not found")
    return row


def version_row(conn: Connection, model: Row[Any], version: int) -> Row[Any]:
    row = conn.execute(
        select(versions_t).where(versions_t.c.model_id == model.id, versions_t.c.version == version)
    ).first()
    if row is None:
        latest = f"its latest is {model.latest_version}" if model.latest_version else "it has none"
        raise NotFound(f"model {model.name!r} has no version {version} ({latest})")
    return row


def aliases_of(conn: Connection, model_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """alias -> version of each model in ``model_ids``."""
    out: dict[int, dict[str, int]] = {}
    for chunk in chunks(list(model_ids)):
        for r in conn.execute(
            select(aliases_t).where(aliases_t.c.model_id.in_(chunk)).order_by(aliases_t.c.alias)
        ):
            out.setdefault(r.model_id, {})[r.alias] = int(r.version)
    return out


def alias_holder(conn: Connection, model_id: int, alias: str) -> int | None:
    row = conn.execute(
        select(aliases_t.c.version).where(aliases_t.c.model_id == model_id, aliases_t.c.alias == alias)
    ).first()
    return None if row is None else int(row.version)


def load_model(conn: Connection, row: Row[Any]) -> RegisteredModel:
    return model_of(row, aliases_of(conn, [row.id]).get(row.id, {}))


def load_version(conn: Connection, row: Row[Any], model_name: str) -> ModelVersion:
    holders = aliases_of(conn, [row.model_id]).get(row.model_id, {})
    return version_of(row, model_name, holders)


def load_version_by_number(conn: Connection, model: Row[Any], version: int) -> ModelVersion:
    return load_version(conn, version_row(conn, model, version), model.name)


# --- rows to values -------------------------------------------------------------------------------


def gate_json(rules: Sequence[GateRule]) -> list[dict[str, Any]]:
    return [{"metric": r.metric, "comparator": r.comparator.value, "threshold": r.threshold} for r in rules]


def gate_of(value: Any) -> tuple[GateRule, ...]:
    return tuple(
        GateRule(r["metric"], Comparator(r["comparator"]), float(r["threshold"])) for r in value or ()
    )


def model_of(row: Row[Any], aliases: dict[str, int]) -> RegisteredModel:
    return RegisteredModel(
        name=row.name,
        description=row.description,
        base_model=row.base_model,
        gate=gate_of(row.gate),
        aliases=dict(aliases),
        latest_version=int(row.latest_version),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def version_of(row: Row[Any], model_name: str, holders: dict[str, int]) -> ModelVersion:
    return ModelVersion(
        model=model_name,
        version=int(row.version),
        artifact_uri=row.artifact_uri,
        base_model=row.base_model,
        adapter=bool(row.adapter),
        adapter_kind=row.adapter_kind,
        metrics={k: float(v) for k, v in (row.metrics or {}).items()},
        params={k: str(v) for k, v in (row.params or {}).items()},
        status=VersionStatus(row.status),
        training_job_id=row.training_job_id or "",
        dataset_version_id=row.dataset_version_id,
        description=row.description,
        created_at=row.created_at,
        aliases=tuple(sorted(a for a, v in holders.items() if v == row.version)),
        trained_at=row.trained_at,
    )


def change_of(row: Row[Any], model_name: str) -> AliasChange:
    return AliasChange(
        id=int(row.id),
        model=model_name,
        alias=row.alias,
        from_version=int(row.from_version),
        to_version=int(row.to_version),
        actor=row.actor,
        reason=row.reason,
        operation=AliasOperation(row.operation),
        changed_at=row.changed_at,
    )


def dataset_version_of(row: Row[Any]) -> DatasetVersionRecord:
    return copy_fields(
        DatasetVersionRecord,
        row,
        snapshot_ids=tuple(row.snapshot_ids or ()),
        queues=tuple(row.queues or ()),
    )


def batch_of(row: Row[Any]) -> IngestionBatchRecord:
    return copy_fields(IngestionBatchRecord, row, counts={k: int(v) for k, v in (row.counts or {}).items()})
