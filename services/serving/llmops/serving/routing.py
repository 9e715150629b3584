"""Which model answers a request: the base model, or a registered LoRA adapter named by alias or version.

Request names:
- ``""`` or the served base model's name: the base model;
- ``<model>@<alias>``: the version the alias points at (``support-bot@challenger``);
- ``<model>/<version>``: that version (``support-bot/3``);
- ``<model>``: short for ``<model>@champion``.

Aliases come from ``models.alias_changed`` and canaries from ``models.canary_changed``; both are kept
in a small SQLite table, so a restarted server answers as before without waiting for the registry. A
version asked for by number that no alias ever named is looked up in the registry.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from llmops.contracts.vocabulary import DEFAULT_ALIAS
from llmops.core.errors import NotFound


class UnknownModel(NotFound):
    """The request names a model, alias or version this server cannot serve."""


@dataclass(frozen=True)
class Deployment:
    """One registered model version, served as a LoRA adapter on the base model."""

    model: str
    version: int
    artifact_uri: str
    base_model: str

    @property
    def adapter_name(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(frozen=True)
class Route:
    """What a request name resolved to: ``deployment`` None means the base model.

    ``arm`` is the alias that answered (under a canary: the champion's alias or the challenger's);
    empty for the base model and for a version asked for by number.
    """

    requested: str
    deployment: Deployment | None
    arm: str = ""


@dataclass(frozen=True)
class Canary:
    """A split of ``alias``'s traffic: ``share`` of it goes to ``challenger_alias``'s holder."""

    model: str
    alias: str
    challenger_alias: str
    share: float


def parse(requested: str) -> tuple[str, str | None, int | None]:
    """Split a request name into (model, alias, version); exactly one of alias/version is set."""
    if "@" in requested:
        model, _, alias = requested.partition("@")
        if not model or not alias:
            raise UnknownModel(f"model {requested!r} is not <model>@<alias>")
        return model, alias, None
    if "/" in requested:
        model, _, version = requested.rpartition("/")
        if not model or not version.isdigit():
            raise UnknownModel(f"model {requested!r} is not <model>/<version number>")
        return model, None, int(version)
    return requested, DEFAULT_ALIAS, None


class AliasTable:
    """Alias -> deployment, persisted in SQLite; written by the alias consumer, read per request."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS aliases (model TEXT NOT NULL, alias TEXT NOT NULL,"
            " version INTEGER NOT NULL, artifact_uri TEXT NOT NULL, base_model TEXT NOT NULL,"
            " PRIMARY KEY (model, alias))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS versions (model TEXT NOT NULL, version INTEGER NOT NULL,"
            " artifact_uri TEXT NOT NULL, base_model TEXT NOT NULL, PRIMARY KEY (model, version))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS canaries (model TEXT NOT NULL, alias TEXT NOT NULL,"
            " challenger_alias TEXT NOT NULL, share REAL NOT NULL, PRIMARY KEY (model, alias))"
        )

    def set(self, model: str, alias: str, deployment: Deployment | None) -> None:
        with self._lock:
            if deployment is None:
                self._db.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (model, alias))
                return
            row = (model, alias, deployment.version, deployment.artifact_uri, deployment.base_model)
            self._db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?, ?, ?)", row)
            self._remember(deployment)

    def remember(self, deployment: Deployment) -> None:
        with self._lock:
            self._remember(deployment)

    def _remember(self, d: Deployment) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
            (d.model, d.version, d.artifact_uri, d.base_model),
        )

    def by_alias(self, model: str, alias: str) -> Deployment | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version, artifact_uri, base_model FROM aliases WHERE model = ? AND alias = ?",
                (model, alias),
            ).fetchone()
        return None if row is None else Deployment(model, row[0], row[1], row[2])

    def by_version(self, model: str, version: int) -> Deployment | None:
        with self._lock:
            row = self._db.execute(
                "SELECT artifact_uri, base_model FROM versions WHERE model = ? AND version = ?",
                (model, version),
            ).fetchone()
        return None if row is None else Deployment(model, version, row[0], row[1])

    def set_canary(self, model: str, alias: str, canary: Canary | None) -> None:
        """Start or change the canary on ``model@alias``; None ends it."""
        with self._lock:
            if canary is None:
                self._db.execute("DELETE FROM canaries WHERE model = ? AND alias = ?", (model, alias))
                return
            self._db.execute(
                "INSERT OR REPLACE INTO canaries VALUES (?, ?, ?, ?)",
                (model, alias, canary.challenger_alias, canary.share),
            )

    def canary(self, model: str, alias: str) -> Canary | None:
        with self._lock:
            row = self._db.execute(
                "SELECT challenger_alias, share FROM canaries WHERE model = ? AND alias = ?", (model, alias)
            ).fetchone()
        return None if row is None else Canary(model, alias, row[0], row[1])

    def deployment_of(self, adapter_name: str) -> Deployment | None:
        """The deployment of ``<model>/<version>`` (None when never seen here)."""
        model, _, version = adapter_name.rpartition("/")
        return self.by_version(model, int(version)) if model and version.isdigit() else None

    def all_aliases(self) -> list[tuple[str, str, Deployment]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT model, alias, version, artifact_uri, base_model FROM aliases ORDER BY model, alias"
            ).fetchall()
        return [(m, a, Deployment(m, v, u, b)) for m, a, v, u, b in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
