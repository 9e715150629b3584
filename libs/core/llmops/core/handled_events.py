"""Which events a consumer group has already processed, so redelivery does no harm."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class HandledEvents:
    """A small SQLite table of (group, event_id); one file per service.

    Kafka delivers at least once: after a crash between processing and committing the offset, the
    same message comes again, and this is what makes the second delivery a no-op.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS processed_events ("
            " consumer_group TEXT NOT NULL, event_id TEXT NOT NULL, processed_at REAL NOT NULL,"
            " PRIMARY KEY (consumer_group, event_id))"
        )

    def seen(self, group: str, event_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM processed_events WHERE consumer_group = ? AND event_id = ?", (group, event_id)
            ).fetchone()
        return row is not None

    def mark(self, group: str, event_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO processed_events VALUES (?, ?, ?)", (group, event_id, time.time())
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
