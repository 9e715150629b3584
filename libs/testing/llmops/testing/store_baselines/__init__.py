"""Frozen schemas of the SQL stores as the release before migrations made them (revision 0001).

A test makes a store of that release with :func:`make_baseline_store`, fills it, and opens it with the
service's store: the migrations must upgrade it to what ``store/tables.py`` says, keeping its rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SERVICES = ("ingestion", "labeling", "registry", "training")


def make_baseline_store(path: Path, service: str) -> str:
    """A SQLite file at ``path`` with ``service``'s baseline schema and no version table; its URL."""
    if service not in SERVICES:
        raise ValueError(f"no baseline schema for {service!r}; known: {', '.join(SERVICES)}")
    ddl = (Path(__file__).parent / f"{service}.sql").read_text()
    with sqlite3.connect(path) as conn:
        conn.executescript(ddl)
    conn.close()
    return f"sqlite:///{path}"
