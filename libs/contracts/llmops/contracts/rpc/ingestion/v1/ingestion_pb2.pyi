import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MimeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIME_TYPE_UNSPECIFIED: _ClassVar[MimeType]
    MIME_TYPE_TEXT_PLAIN: _ClassVar[MimeType]
    MIME_TYPE_TEXT_HTML: _ClassVar[MimeType]
    MIME_TYPE_TEXT_MARKDOWN: _ClassVar[MimeType]

class FileFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_FORMAT_UNSPECIFIED: _ClassVar[FileFormat]
    FILE_FORMAT_AUTO: _ClassVar[FileFormat]
    FILE_FORMAT_JSONL: _ClassVar[FileFormat]
    FILE_FORMAT_CSV: _ClassVar[FileFormat]
    FILE_FORMAT_PARQUET: _ClassVar[FileFormat]
    FILE_FORMAT_TEXT_FOLDER: _ClassVar[FileFormat]

class BatchState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATE_UNSPECIFIED: _ClassVar[BatchState]
    BATCH_STATE_RECEIVING: _ClassVar[BatchState]
    BATCH_STATE_PROCESSING: _ClassVar[BatchState]
    BATCH_STATE_SUCCEEDED: _ClassVar[BatchState]
    BATCH_STATE_FAILED: _ClassVar[BatchState]
MIME_TYPE_UNSPECIFIED: MimeType
MIME_TYPE_TEXT_PLAIN: MimeType
MIME_TYPE_TEXT_HTML: MimeType
MIME_TYPE_TEXT_MARKDOWN: MimeType
FILE_FORMAT_UNSPECIFIED: FileFormat
FILE_FORMAT_AUTO: FileFormat
FILE_FORMAT_JSONL: FileFormat
FILE_FORMAT_CSV: FileFormat
FILE_FORMAT_PARQUET: FileFormat
FILE_FORMAT_TEXT_FOLDER: FileFormat
BATCH_STATE_UNSPECIFIED: BatchState
BATCH_STATE_RECEIVING: BatchState
BATCH_STATE_PROCESSING: BatchState
BATCH_STATE_SUCCEEDED: BatchState
BATCH_STATE_FAILED: BatchState

class IngestHeader(_message.Message):
    __slots__ = ("dataset", "source_description", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    source_description: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, dataset: _Optional[str] = ..., source_description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "text", "source_uri", "mime_type", "metadata", "position")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    source_uri: str
    mime_type: MimeType
    metadata: _containers.ScalarMap[str, str]
    position: int
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., source_uri: _Optional[str] = ..., mime_type: _Optional[_Union[MimeType, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., position: _Optional[int] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("header", "document", "read_error")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    READ_ERROR_FIELD_NUMBER: _ClassVar[int]
    header: IngestHeader
    document: Document
    read_error: ItemError
    def __init__(self, header: _Optional[_Union[IngestHeader, _Mapping]] = ..., document: _Optional[_Union[Document, _Mapping]] = ..., read_error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("batch_id", "dataset", "state", "received", "kept", "dropped", "errors", "snapshot_id")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    dataset: str
    state: BatchState
    received: int
    kept: int
    dropped: int
    errors: int
    snapshot_id: str
    def __init__(self, batch_id: _Optional[str] = ..., dataset: _Optional[str] = ..., state: _Optional[_Union[BatchState, str]] = ..., received: _Optional[int] = ..., kept: _Optional[int] = ..., dropped: _Optional[int] = ..., errors: _Optional[int] = ..., snapshot_id: _Optional[str] = ...) -> None: ...

class IngestFileRequest(_message.Message):
    __slots__ = ("uri", "format", "dataset", "text_field", "id_field", "source_description", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URI_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    uri: str
    format: FileFormat
    dataset: str
    text_field: str
    id_field: str
    source_description: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, uri: _Optional[str] = ..., format: _Optional[_Union[FileFormat, str]] = ..., dataset: _Optional[str] = ..., text_field: _Optional[str] = ..., id_field: _Optional[str] = ..., source_description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class BatchCounts(_message.Message):
    __slots__ = ("received", "normalised", "html_stripped", "dropped_quality", "pii_redacted", "pii_redacted_by_type", "dropped_exact_dup", "dropped_near_dup", "kept", "errors")
    class PiiRedactedByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    NORMALISED_FIELD_NUMBER: _ClassVar[int]
    HTML_STRIPPED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_QUALITY_FIELD_NUMBER: _ClassVar[int]
    PII_REDACTED_FIELD_NUMBER: _ClassVar[int]
    PII_REDACTED_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    DROPPED_EXACT_DUP_FIELD_NUMBER: _ClassVar[int]
    DROPPED_NEAR_DUP_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    received: int
    normalised: int
    html_stripped: int
    dropped_quality: int
    pii_redacted: int
    pii_redacted_by_type: _containers.ScalarMap[str, int]
    dropped_exact_dup: int
    dropped_near_dup: int
    kept: int
    errors: int
    def __init__(self, received: _Optional[int] = ..., normalised: _Optional[int] = ..., html_stripped: _Optional[int] = ..., dropped_quality: _Optional[int] = ..., pii_redacted: _Optional[int] = ..., pii_redacted_by_type: _Optional[_Mapping[str, int]] = ..., dropped_exact_dup: _Optional[int] = ..., dropped_near_dup: _Optional[int] = ..., kept: _Optional[int] = ..., errors: _Optional[int] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("position", "source", "reason")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    position: int
    source: str
    reason: str
    def __init__(self, position: _Optional[int] = ..., source: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BatchInfo(_message.Message):
    __slots__ = ("batch_id", "dataset", "state", "snapshot_id", "snapshot_uri", "created_at", "completed_at", "counts", "errors", "source_description", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_URI_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    dataset: str
    state: BatchState
    snapshot_id: str
    snapshot_uri: str
    created_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    counts: BatchCounts
    errors: _containers.RepeatedCompositeFieldContainer[ItemError]
    source_description: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, batch_id: _Optional[str] = ..., dataset: _Optional[str] = ..., state: _Optional[_Union[BatchState, str]] = ..., snapshot_id: _Optional[str] = ..., snapshot_uri: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counts: _Optional[_Union[BatchCounts, _Mapping]] = ..., errors: _Optional[_Iterable[_Union[ItemError, _Mapping]]] = ..., source_description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...
