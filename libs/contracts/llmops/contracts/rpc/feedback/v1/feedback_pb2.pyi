from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Thumb(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THUMB_UNSPECIFIED: _ClassVar[Thumb]
    THUMB_UP: _ClassVar[Thumb]
    THUMB_DOWN: _ClassVar[Thumb]
THUMB_UNSPECIFIED: Thumb
THUMB_UP: Thumb
THUMB_DOWN: Thumb

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("request_id", "score", "thumb", "comment", "correction", "user_id", "metadata", "feedback_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THUMB_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    score: float
    thumb: Thumb
    comment: str
    correction: str
    user_id: str
    metadata: _containers.ScalarMap[str, str]
    feedback_id: str
    def __init__(self, request_id: _Optional[str] = ..., score: _Optional[float] = ..., thumb: _Optional[_Union[Thumb, str]] = ..., comment: _Optional[str] = ..., correction: _Optional[str] = ..., user_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., feedback_id: _Optional[str] = ...) -> None: ...

class SubmitFeedbackResponse(_message.Message):
    __slots__ = ("feedback_id", "score")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    score: float
    def __init__(self, feedback_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...
