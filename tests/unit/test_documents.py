from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmops.core.artifacts import ArtifactStore
from llmops.core.documents import ReadError, SourceDocument, UnreadableSource, count_items, read_documents


def test_jsonl_reports_bad_lines_with_their_position_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'{"id": 1, "text": "first", "lang": "en"}\n\n{not json\n{"id": 3}\n"a string"\n'
        b'{"text": "caf\xe9"}\n{"id": "7", "text": "last"}\n'
    )
    items = list(read_documents(path))
    assert [type(i).__name__ for i in items] == [
        "SourceDocument",
        "ReadError",
        "ReadError",
        "ReadError",
        "ReadError",
        "SourceDocument",
    ]
    first, last = items[0], items[-1]
    assert isinstance(first, SourceDocument) and (first.doc_id, first.text, first.metadata) == (
        "1",
        "first",
        {"lang": "en"},
    )
    assert isinstance(last, SourceDocument) and last.position == 6 and last.source == "d.jsonl:7"
    reasons = [i.reason for i in items if isinstance(i, ReadError)]
    assert "not valid JSON" in reasons[0] and "no text in field 'text'" in reasons[1]
    assert "expected an object" in reasons[2] and "not valid UTF-8" in reasons[3]
    assert count_items(path) == 6


def test_csv_needs_the_text_column_and_flags_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b'id,body\n1,hello there\n2,\n3,a,b\n4,caf\xe9\n5,"quoted, text"\n')
    items = list(read_documents(path, text_field="body"))
    docs = [i for i in items if isinstance(i, SourceDocument)]
    assert [d.text for d in docs] == ["hello there", "quoted, text"]
    errors = {i.position: i.reason for i in items if isinstance(i, ReadError)}
    assert "no text" in errors[2] and "more fields" in errors[3] and "UTF-8" in errors[4]
    with pytest.raises(UnreadableSource, match="no header with a 'text' column"):
        list(read_documents(path))


def test_parquet_and_folders(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one", None]}), tmp_path / "d.parquet")
    items = list(read_documents(tmp_path / "d.parquet"))
    assert isinstance(items[0], SourceDocument) and isinstance(items[1], ReadError)
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("plain")
    (folder / "sub" / "b.html").write_text("<p>x</p>")
    (folder / "c.md").write_text("# title")
    (folder / "skip.bin").write_bytes(b"\x00")
    (folder / "empty.txt").write_text("  ")
    docs = list(read_documents(folder))
    assert [(d.source, getattr(d, "mime_type", None)) for d in docs] == [
        ("a.txt", "text/plain"),
        ("c.md", "text/markdown"),
        ("empty.txt", None),
        ("sub/b.html", "text/html"),
    ]
    assert count_items(folder) == 4


def test_unreadable_sources_say_why(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="does not exist"):
        list(read_documents(tmp_path / "nope.jsonl"))
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(UnreadableSource, match="cannot tell the format"):
        list(read_documents(tmp_path / "x.xml"))
    with pytest.raises(UnreadableSource, match="unknown format"):
        list(read_documents(tmp_path / "x.xml", fmt="xml"))


def test_artifact_store_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}/artifacts")
    uri = store.write_bytes("snapshots/ds/s1.parquet", b"payload")
    assert uri == f"file://{tmp_path}/artifacts/snapshots/ds/s1.parquet"
    assert (
        store.exists("snapshots/ds/s1.parquet") and store.read_bytes("snapshots/ds/s1.parquet") == b"payload"
    )
    assert not list((tmp_path / "artifacts" / "snapshots" / "ds").glob(".partial-*"))
    with ArtifactStore.open_uri(uri) as f:
        assert f.read() == b"payload"
