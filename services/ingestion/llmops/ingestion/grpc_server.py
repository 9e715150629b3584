"""IngestionService over gRPC: Ingest (client stream), IngestFile (server-side file), GetBatch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc

from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from llmops.core.convert import message
from llmops.core.documents import ReadError, SourceDocument, read_documents
from llmops.core.errors import InvalidArgument, NotFound, PermissionDenied
from llmops.ingestion.batches import Ingestor
from llmops.ingestion.store.batches import BatchRecord

_MIME = {
    ingestion_pb2.MIME_TYPE_UNSPECIFIED: "text/plain",
    ingestion_pb2.MIME_TYPE_TEXT_PLAIN: "text/plain",
    ingestion_pb2.MIME_TYPE_TEXT_HTML: "text/html",
    ingestion_pb2.MIME_TYPE_TEXT_MARKDOWN: "text/markdown",
}
_FORMAT = {
    ingestion_pb2.FILE_FORMAT_UNSPECIFIED: "auto",
    ingestion_pb2.FILE_FORMAT_AUTO: "auto",
    ingestion_pb2.FILE_FORMAT_JSONL: "jsonl",
    ingestion_pb2.FILE_FORMAT_CSV: "csv",
    ingestion_pb2.FILE_FORMAT_PARQUET: "parquet",
    ingestion_pb2.FILE_FORMAT_TEXT_FOLDER: "text_folder",
}
_STATE = {
    "RECEIVING": ingestion_pb2.BATCH_STATE_RECEIVING,
    "PROCESSING": ingestion_pb2.BATCH_STATE_PROCESSING,
    "SUCCEEDED": ingestion_pb2.BATCH_STATE_SUCCEEDED,
    "FAILED": ingestion_pb2.BATCH_STATE_FAILED,
}
MAX_DATASET_CHARS = 200


def dataset_problem(name: str) -> str | None:
    if not name:
        return "dataset is empty: name the dataset the documents belong to"
    if len(name) > MAX_DATASET_CHARS or not all(c.isalnum() or c in "-_." for c in name):
        return f"dataset {name!r} must be 1-{MAX_DATASET_CHARS} letters, digits, '-', '_' or '.'"
    return None


def _response(record: BatchRecord) -> ingestion_pb2.IngestResponse:
    counts = record.counts
    received = int(counts.get("received", 0))
    kept = int(counts.get("kept", 0))
    return message(
        ingestion_pb2.IngestResponse,
        record,
        state=_STATE[record.state],
        received=received,
        kept=kept,
        dropped=max(received - kept, 0),
        errors=int(counts.get("errors", 0)),  # the count; record.errors lists them
    )


def batch_info(record: BatchRecord) -> ingestion_pb2.BatchInfo:
    c = record.counts
    return message(
        ingestion_pb2.BatchInfo,
        record,
        state=_STATE[record.state],
        counts=ingestion_pb2.BatchCounts(
            **{k: int(v) for k, v in c.items() if k != "pii_redacted_by_type"},
            pii_redacted_by_type={k: int(v) for k, v in c.get("pii_redacted_by_type", {}).items()},
        ),
        errors=[ingestion_pb2.ItemError(**e) for e in record.errors],
    )


async def _iterate_in_thread(items: Iterator) -> AsyncIterator:
    """Read a (blocking) file iterator without blocking the event loop."""
    sentinel = object()
    while True:
        chunk = await asyncio.to_thread(lambda: [next(items, sentinel) for _ in range(256)])
        for item in chunk:
            if item is sentinel:
                return
            yield item


def _local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser().resolve()


class IngestionServicer(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(self, ingestor: Callable[[], Ingestor], allowed_roots: list[Path]) -> None:
        # The ingestor opens its stores in the service's start(), after the servicer is registered;
        # the readiness gate keeps calls out until then.
        self._ingestor = ingestor
        self._roots = allowed_roots

    async def Ingest(
        self, request_iterator: AsyncIterator[ingestion_pb2.IngestRequest], context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.IngestResponse:
        stream = request_iterator.__aiter__()
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            raise InvalidArgument("empty stream: send an IngestHeader first") from None
        if first.WhichOneof("payload") != "header":
            raise InvalidArgument("the first message must be an IngestHeader")
        header = first.header
        if problem := dataset_problem(header.dataset):
            raise InvalidArgument(problem)

        async def items() -> AsyncIterator[SourceDocument | ReadError]:
            position = 0
            async for request in stream:
                position += 1
                kind = request.WhichOneof("payload")
                if kind == "document":
                    d = request.document
                    pos = d.position or position
                    yield SourceDocument(
                        position=pos,
                        text=d.text,
                        doc_id=d.id,
                        source=d.source_uri or f"stream#{pos}",
                        mime_type=_MIME.get(d.mime_type, "text/plain"),
                        metadata=dict(d.metadata),
                    )
                elif kind == "read_error":
                    e = request.read_error
                    yield ReadError(e.position or position, e.source, e.reason)
                else:
                    yield ReadError(
                        position, "stream", f"unexpected {kind or 'empty'} message after the header"
                    )

        record = await self._ingestor().run(
            header.dataset,
            items(),
            source_description=header.source_description,
            metadata=dict(header.metadata),
        )
        return _response(record)

    async def IngestFile(
        self, request: ingestion_pb2.IngestFileRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.IngestResponse:
        if problem := dataset_problem(request.dataset):
            raise InvalidArgument(problem)
        path = _local_path(request.uri)
        if not request.uri:
            raise InvalidArgument("uri is empty: give a path the service can read")
        if not any(path.is_relative_to(root) for root in self._roots):
            raise PermissionDenied(
                f"{path} is outside the folders this service may read ({', '.join(map(str, self._roots))}); "
                "set LLMOPS_INGESTION_ALLOWED_ROOTS or stream the documents with Ingest"
            )
        # An unreadable file raises UnreadableSource, an InvalidArgument.
        reader = read_documents(
            path,
            _FORMAT.get(request.format, "auto"),
            request.text_field or "text",
            request.id_field or "id",
        )
        first = await asyncio.to_thread(lambda: next(reader, None))

        async def items() -> AsyncIterator[SourceDocument | ReadError]:
            if first is not None:
                yield first
                async for item in _iterate_in_thread(reader):
                    yield item

        record = await self._ingestor().run(
            request.dataset,
            items(),
            source_description=request.source_description or str(path),
            metadata=dict(request.metadata),
        )
        return _response(record)

    async def GetBatch(
        self, request: ingestion_pb2.GetBatchRequest, context: grpc.aio.ServicerContext
    ) -> ingestion_pb2.BatchInfo:
        record = await asyncio.to_thread(self._ingestor().get, request.batch_id)
        if record is None:
            raise NotFound(f"no batch {request.batch_id!r}")
        return batch_info(record)
