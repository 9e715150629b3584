"""The artifact store: immutable files (snapshots, dataset versions, adapters) under one root URL.

A local folder by default (``file://<data_dir>/artifacts``); any fsspec URL in production
(``s3://bucket/prefix`` with s3fs installed, ``gs://``...). Writes are atomic: a reader never sees a
half-written artifact (locally: temp file + rename; object stores write whole objects).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import fsspec

from llmops.core.errors import InvalidArgument


class ArtifactStore:
    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        self.fs, self._root = fsspec.core.url_to_fs(self.root_url)
        self._local = self.fs.protocol in ("file", "local") or "file" in (self.fs.protocol or ())
        if self._local:
            Path(self._root).mkdir(parents=True, exist_ok=True)

    def contains(self, uri: str) -> bool:
        """Whether ``uri`` names something under this store's root (no ``..`` escapes)."""
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ValueError, ImportError):
            return False
        if type(fs) is not type(self.fs):
            return False
        root = self._root.rstrip("/")
        if self._local:
            resolved = os.path.realpath(path)
            return resolved == os.path.realpath(root) or resolved.startswith(os.path.realpath(root) + os.sep)
        normal = os.path.normpath("/" + path.lstrip("/")).lstrip("/")
        base = root.lstrip("/")
        return normal == base or normal.startswith(base + "/")

    def require(self, uri: str, what: str) -> str:
        """``uri`` if it lies under the root, else InvalidArgument naming ``what`` (nothing is read)."""
        if not self.contains(uri):
            raise InvalidArgument(
                f"{what} {uri!r} is outside the platform's artifact store ({self.root_url}); only "
                "artifacts under it are read"
            )
        return uri

    def uri(self, key: str) -> str:
        return f"{self.root_url}/{key}"

    def path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key`` (atomically) and return its URI."""
        target = self.path(key)
        if self._local:
            folder = Path(target).parent
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".partial-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            with self.fs.open(target, "wb") as f:
                f.write(data)
        return self.uri(key)

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open(self.path(key), "rb") as f:
            return f.read()

    @staticmethod
    def open_uri(uri: str, mode: str = "rb"):  # noqa: ANN205 - an fsspec file object
        return fsspec.open(uri, mode).open()
