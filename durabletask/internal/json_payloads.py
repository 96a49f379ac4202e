"""JSON payloads as they travel on the wire, encoded the way Microsoft's SDK encodes them.

A payload is plain JSON text in a `google.protobuf.StringValue`; `None` means "no payload" and
is sent as an absent field, never as the text "null". Dataclasses and SimpleNamespaces travel as
JSON objects of their fields, enums as their value, namedtuples as arrays, and any type with a
`to_json` method as whatever that method returns.
"""

import dataclasses
import enum
import functools
import inspect
import json
import typing
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from google.protobuf import wrappers_pb2

# Older Microsoft SDKs tagged auto-serialized objects with this key; such objects read back as
# SimpleNamespace so in-flight instances written by them still replay.
_LEGACY_OBJECT_MARKER = "__durabletask_autoobject__"


def to_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, default=_plain_json_value)
    except TypeError as error:
        raise TypeError(f"Cannot encode a value of type '{type(value).__name__}' as JSON: {error}") from error


def from_json(text: str | None, expected_type: type | None = None) -> Any:
    """Decode a payload; with `expected_type` a dataclass (or a type with `from_json`), build one."""
    if not text:
        return None
    value = json.loads(text, object_hook=_read_legacy_object)
    if expected_type is None:
        return value
    if isinstance(value, SimpleNamespace):
        value = vars(value)
    from_json_hook = getattr(expected_type, "from_json", None)
    if callable(from_json_hook):
        return from_json_hook(value)
    if dataclasses.is_dataclass(expected_type) and isinstance(value, dict):
        return expected_type(**value)
    return value


@functools.lru_cache(maxsize=1024)
def annotated_input_type(fn: Callable[..., Any]) -> type | None:
    """The type a function declares for its input (second parameter), if payloads can be built into it."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn) if len(parameters) > 1 else {}
    except (TypeError, ValueError, NameError):
        return None
    return _buildable(hints.get(parameters[1].name)) if len(parameters) > 1 else None


@functools.lru_cache(maxsize=1024)
def annotated_output_type(fn: Callable[..., Any]) -> type | None:
    """The type a function declares it returns, if payloads can be built into it."""
    try:
        return _buildable(typing.get_type_hints(fn).get("return"))
    except (TypeError, ValueError, NameError):
        return None


def _buildable(annotation: Any) -> type | None:
    if isinstance(annotation, type) and (dataclasses.is_dataclass(annotation)
                                         or callable(getattr(annotation, "from_json", None))):
        return annotation
    return None


def to_string_value(value: Any) -> wrappers_pb2.StringValue | None:
    """Encode `value` as a protobuf payload field, or None when there is nothing to send."""
    return wrap(to_json(value))


def wrap(text: str | None) -> wrappers_pb2.StringValue | None:
    return None if text is None else wrappers_pb2.StringValue(value=text)


def unwrap(field: wrappers_pb2.StringValue) -> str | None:
    """The raw JSON text of a payload field; an empty string counts as no payload."""
    return field.value or None


def _plain_json_value(value: Any) -> Any:
    to_json_hook = getattr(type(value), "to_json", None)
    if callable(to_json_hook):
        return to_json_hook(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Shallow on purpose: json.dumps recurses and sends nested values back through this hook.
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, SimpleNamespace):
        return vars(value)
    raise TypeError(f"Object of type '{type(value).__name__}' is not JSON serializable")


def _read_legacy_object(obj: dict[str, Any]) -> Any:
    if obj.pop(_LEGACY_OBJECT_MARKER, False):
        return SimpleNamespace(**obj)
    return obj
