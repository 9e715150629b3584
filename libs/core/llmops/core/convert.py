"""Conversions between protobuf messages, domain records, events and settings, by field name.

A servicer turns a domain record into its message with ``message(pb.Queue, queue)``, a request into a
domain value with ``copy_fields(VersionSpec, request)``, and a domain enum into the proto enum and
back with an :class:`EnumMap`. Fields are matched by name; what differs is said with keyword
overrides, so a converter names only what is not a plain copy.

Conventions these rely on (every ``proto/`` file follows them):
- a proto enum ``TaskState`` has values ``TASK_STATE_<MEMBER>`` for the domain enum's members and
  ``TASK_STATE_UNSPECIFIED`` = 0, which means "not given";
- a ``google.protobuf.Timestamp`` field holds a domain ``datetime`` (unset when it is None).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from typing import Any, Generic, TypeVar

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp

from llmops.core.errors import InvalidArgument

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
M = TypeVar("M", bound=Message)

_TIMESTAMP = Timestamp.DESCRIPTOR.full_name


def timestamp(value: dt.datetime | float | None) -> Timestamp | None:
    """``value`` (a datetime, or seconds since the epoch) as a Timestamp; None stays None."""
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value if isinstance(value, dt.datetime) else dt.datetime.fromtimestamp(value, dt.UTC))
    return ts


def datetime_of(message: Message, field: str) -> dt.datetime | None:
    """The aware UTC datetime in ``message.<field>`` (a Timestamp), or None when it is unset."""
    if not message.HasField(field):
        return None
    return getattr(message, field).ToDatetime(tzinfo=dt.UTC)


def _enum_prefix(descriptor: EnumDescriptor) -> str:
    # TaskState -> TASK_STATE_
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


class EnumMap(Generic[E]):
    """A domain enum and its proto enum, matched by member name (``TaskState.OPEN`` is
    ``TASK_STATE_OPEN``); every member must have its proto value, or this raises at import."""

    def __init__(self, proto_enum: Any, domain: type[E]) -> None:
        descriptor: EnumDescriptor = proto_enum.DESCRIPTOR
        prefix = _enum_prefix(descriptor)
        self.name = descriptor.name
        self._to_pb: dict[E, int] = {}
        for member in domain:
            value = descriptor.values_by_name.get(prefix + member.name)
            if value is None:
                raise TypeError(f"{descriptor.full_name} has no value {prefix + member.name} for {member!r}")
            self._to_pb[member] = value.number
        self._from_pb = {number: member for member, number in self._to_pb.items()}

    def to_pb(self, member: E | str) -> int:
        """The proto value of ``member`` (a member, or its value)."""
        domain = type(next(iter(self._to_pb)))
        return self._to_pb[domain(member)]

    def from_pb(self, number: int, field: str) -> E | None:
        """The member for ``number``; None for 0 (unspecified); InvalidArgument naming ``field`` for a
        number this enum does not have."""
        if number == 0:
            return None
        member = self._from_pb.get(number)
        if member is None:
            raise InvalidArgument(f"{field} {number} is not a known {self.name}")
        return member

    def require(self, number: int, field: str) -> E:
        """Like :meth:`from_pb`, but 0 (unspecified) is InvalidArgument too."""
        member = self.from_pb(number, field)
        if member is None:
            raise InvalidArgument(f"{field} is required (one of {', '.join(m.name for m in self._to_pb)})")
        return member


def _enum_number(descriptor: EnumDescriptor, value: enum.Enum) -> int:
    name = _enum_prefix(descriptor) + value.name
    found = descriptor.values_by_name.get(name)
    if found is None:
        raise TypeError(f"{descriptor.full_name} has no value {name} for {value!r}")
    return found.number


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, enum.Enum):
        return _enum_number(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == _TIMESTAMP:
            return timestamp(value)
        if not isinstance(value, Message):
            return message(GetMessageClass(field.message_type), value)
    return value


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def message(cls: type[M], source: Any = None, /, **overrides: Any) -> M:
    """A ``cls`` message whose fields are ``overrides`` or else the same-named attributes of ``source``.

    Datetimes become Timestamps, domain enums proto enum values, nested records nested messages,
    sequences repeated fields and mappings map fields; None leaves a field unset.
    """
    descriptor: Descriptor = cls.DESCRIPTOR
    out = cls()
    for field in descriptor.fields:
        name = field.name
        if name in overrides:
            value = overrides[name]
        elif source is not None and hasattr(source, name):
            value = getattr(source, name)
        else:
            continue
        if value is None:
            continue
        if _is_map(field):
            getattr(out, name).update(value)
        elif field.is_repeated:
            items = [_field_value(field, v) for v in value]
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(out, name).extend(items)
            else:
                getattr(out, name)[:] = items
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(out, name).CopyFrom(_field_value(field, value))
        else:
            setattr(out, name, _field_value(field, value))
    for name in overrides:
        if name not in descriptor.fields_by_name:
            raise TypeError(f"{descriptor.full_name} has no field {name!r}")
    return out


def _names(target: type) -> list[str]:
    if dataclasses.is_dataclass(target):
        return [f.name for f in dataclasses.fields(target) if f.init]
    model_fields = getattr(target, "model_fields", None)
    if model_fields is not None:
        return list(model_fields)
    raise TypeError(f"{target.__name__} is neither a dataclass nor a pydantic model")


def _from_message(source: Message, name: str) -> Any:
    field = source.DESCRIPTOR.fields_by_name[name]
    value = getattr(source, name)
    if _is_map(field):
        return dict(value)
    if field.is_repeated:
        return tuple(value)
    if field.type in (FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_MESSAGE):
        raise TypeError(f"{source.DESCRIPTOR.full_name}.{name} needs converting: give it as an override")
    if field.has_presence and not source.HasField(name):
        return None
    return value


def copy_fields(target: type[T], source: Any, /, **overrides: Any) -> T:
    """A ``target`` (a dataclass or a pydantic model) built from ``overrides`` and else the
    same-named attributes of ``source`` (a message, a record, an event or settings).

    From a message, map fields become dicts, repeated fields tuples and an unset ``optional`` field
    None; an enum or message field must be given as an override (it needs converting). From anything
    else, values are copied as they are.
    """
    names = _names(target)
    for name in overrides:
        if name not in names:
            raise TypeError(f"{target.__name__} has no field {name!r}")
    values: dict[str, Any] = {}
    for name in names:
        if name in overrides:
            continue
        if isinstance(source, Message):
            if name in source.DESCRIPTOR.fields_by_name:
                values[name] = _from_message(source, name)
        elif hasattr(source, name):
            values[name] = getattr(source, name)
    return target(**values, **overrides)


def query_rows(reply: Any) -> list[list[Any]]:
    """The rows of a monitoring ``QueryReply`` as plain Python values (None for NULL; numbers travel
    as doubles; arrays and maps as lists and dicts)."""
    from google.protobuf.json_format import MessageToDict

    return [[MessageToDict(v) if v.WhichOneof("kind") else None for v in row.values] for row in reply.rows]


def query_dicts(reply: Any) -> list[dict[str, Any]]:
    """The rows of a monitoring ``QueryReply`` as dicts by column name (see :func:`query_rows`)."""
    names = [c.name for c in reply.columns]
    return [dict(zip(names, row, strict=True)) for row in query_rows(reply)]
