"""Reading documents from files: JSONL, CSV, Parquet and folders of .txt/.md/.html files.

Used by the CLI (``llmops ingest``, which streams what it reads to the ingestion service) and by the
ingestion service's ``IngestFile``. A bad item (a line that is not JSON, a row without text, a file
that is not UTF-8) does not stop reading: it comes out as a :class:`ReadError` with its position, and
the caller records it in the batch.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llmops.core.errors import InvalidArgument

Format = Literal["auto", "jsonl", "csv", "parquet", "text_folder"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "csv", "parquet", "text_folder")

_MIME_BY_SUFFIX = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
}
_SUFFIX_FORMAT = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class UnreadableSource(InvalidArgument):
    """The source as a whole cannot be read (missing, unknown format, no header...)."""


@dataclass(frozen=True)
class SourceDocument:
    position: int
    text: str
    doc_id: str = ""
    source: str = ""
    mime_type: str = "text/plain"
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadError:
    position: int
    source: str
    reason: str


Item = SourceDocument | ReadError


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "text_folder"
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise UnreadableSource(
            f"cannot tell the format of {path.name}: use .jsonl, .csv, .parquet or a folder, "
            "or name the format"
        )
    return fmt


def read_documents(
    path: Path, fmt: str = "auto", text_field: str = "text", id_field: str = "id"
) -> Iterator[Item]:
    """Yield the documents (and per-item errors) of ``path`` in order.

    Args:
        fmt: one of FORMATS; ``auto`` looks at the suffix (a folder is ``text_folder``).
        text_field / id_field: the column or key holding the text / the document id (JSONL, CSV, Parquet).
    """
    if not path.exists():
        raise UnreadableSource(f"{path} does not exist")
    if fmt not in FORMATS:
        raise UnreadableSource(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "text_folder":
        if not path.is_dir():
            raise UnreadableSource(f"{path} is not a folder")
        yield from _read_folder(path)
    elif fmt == "jsonl":
        yield from _read_jsonl(path, text_field, id_field)
    elif fmt == "csv":
        yield from _read_csv(path, text_field, id_field)
    else:
        yield from _read_parquet(path, text_field, id_field)


def count_items(path: Path, fmt: str = "auto") -> int | None:
    """How many items ``path`` holds, cheaply, for a progress bar (None when unknown)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "text_folder":
        return sum(1 for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _MIME_BY_SUFFIX)
    if fmt == "jsonl":
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def _meta(record: dict, text_field: str, id_field: str) -> dict[str, str]:
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, default=str)
        for k, v in record.items()
        if k not in (text_field, id_field) and v is not None
    }


def _from_record(record: object, position: int, source: str, text_field: str, id_field: str) -> Item:
    if not isinstance(record, dict):
        return ReadError(position, source, f"expected an object, got {type(record).__name__}")
    text = record.get(text_field)
    if not isinstance(text, str) or not text.strip():
        return ReadError(position, source, f"no text in field {text_field!r}")
    doc_id = record.get(id_field)
    return SourceDocument(
        position=position,
        text=text,
        doc_id="" if doc_id is None else str(doc_id),
        source=source,
        metadata=_meta(record, text_field, id_field),
    )


def _read_jsonl(path: Path, text_field: str, id_field: str) -> Iterator[Item]:
    with path.open("rb") as f:
        position = 0
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            position += 1
            source = f"{path.name}:{line_no}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield ReadError(position, source, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            except json.JSONDecodeError as exc:
                yield ReadError(position, source, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            yield _from_record(record, position, source, text_field, id_field)


def _read_csv(path: Path, text_field: str, id_field: str) -> Iterator[Item]:
    raw = path.read_bytes()
    # Decode line by line so one badly encoded row is one error, not a failed file.
    lines: list[str] = []
    bad: dict[int, str] = {}
    for line_no, line in enumerate(raw.splitlines(keepends=True), 1):
        try:
            lines.append(line.decode("utf-8-sig" if line_no == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            bad[line_no] = f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
            # A placeholder row (an empty line would be skipped by the CSV reader and the error lost).
            lines.append("\x00\n")
    reader = csv.DictReader(io.StringIO("".join(lines)))
    if reader.fieldnames is None or text_field not in reader.fieldnames:
        raise UnreadableSource(
            f"{path.name}: no header with a {text_field!r} column (columns: {reader.fieldnames})"
        )
    position = 0
    for row in reader:
        line_no = reader.line_num
        position += 1
        source = f"{path.name}:{line_no}"
        if line_no in bad:
            yield ReadError(position, source, bad[line_no])
            continue
        if None in row:
            yield ReadError(position, source, "more fields than the header has")
            continue
        yield _from_record({k: v for k, v in row.items() if v != ""}, position, source, text_field, id_field)


def _read_parquet(path: Path, text_field: str, id_field: str) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise UnreadableSource(f"{path.name} is not a readable Parquet file ({exc})") from exc
    if text_field not in file.schema_arrow.names:
        raise UnreadableSource(f"{path.name}: no {text_field!r} column (columns: {file.schema_arrow.names})")
    position = 0
    for batch in file.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            position += 1
            yield _from_record(record, position, f"{path.name}#{position}", text_field, id_field)


def _read_folder(root: Path) -> Iterator[Item]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _MIME_BY_SUFFIX)
    for position, file in enumerate(files, 1):
        relative = str(file.relative_to(root))
        try:
            text = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            yield ReadError(position, relative, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        except OSError as exc:
            yield ReadError(position, relative, f"unreadable ({exc.strerror})")
            continue
        if not text.strip():
            yield ReadError(position, relative, "empty file")
            continue
        yield SourceDocument(
            position=position,
            text=text,
            doc_id=relative,
            source=relative,
            mime_type=_MIME_BY_SUFFIX[file.suffix.lower()],
        )
