"""The registry's store: an abstract :class:`RegistryStore` and one backend per URL scheme."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from llmops.registry.store.base import LineageRecords, RegistryStore
from llmops.registry.store.sql import SqlRegistryStore

# URL scheme (the part before "+driver") -> backend. A new backend (say, a REST registry) adds a line.
BACKENDS: dict[str, Callable[[str], RegistryStore]] = {
    "sqlite": SqlRegistryStore,
    "postgresql": SqlRegistryStore,
}


def open_store(url: str) -> RegistryStore:
    """Open the backend that serves ``url``'s scheme (``sqlite:///...``, ``postgresql+psycopg://...``).

    Raises:
        ValueError: the URL is malformed or no backend serves its scheme.
    """
    try:
        scheme = make_url(url).get_backend_name()
    except ArgumentError:
        raise ValueError(
            f"database URL {url!r} is not a URL; use sqlite:///path/registry.sqlite or "
            "postgresql+psycopg://user:password@host/db"
        ) from None
    backend = BACKENDS.get(scheme)
    if backend is None:
        raise ValueError(f"no registry store for {scheme!r} URLs; supported: {', '.join(sorted(BACKENDS))}")
    return backend(url)


__all__ = ["BACKENDS", "LineageRecords", "RegistryStore", "SqlRegistryStore", "open_store"]
