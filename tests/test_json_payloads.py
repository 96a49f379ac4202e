"""Payload encoding: the JSON Microsoft's SDK writes and reads for common Python values."""

import enum
from collections import namedtuple
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from durabletask.internal.json_payloads import annotated_input_type, from_json, to_json


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Route:
    start: Point
    label: str


class Color(enum.Enum):
    RED = "red"


Pair = namedtuple("Pair", "left right")


class Money:
    def __init__(self, cents):
        self.cents = cents

    def to_json(self):
        return {"cents": self.cents}

    @classmethod
    def from_json(cls, value):
        return cls(value["cents"])


@pytest.mark.parametrize("value, text", [
    ({"a": [1, 2.5, None, True]}, '{"a": [1, 2.5, null, true]}'),
    ("text", '"text"'),
    (Point(1, 2), '{"x": 1, "y": 2}'),
    (Route(Point(0, 0), "home"), '{"start": {"x": 0, "y": 0}, "label": "home"}'),
    (Pair(1, "b"), '[1, "b"]'),
    (Color.RED, '"red"'),
    (SimpleNamespace(a=1), '{"a": 1}'),
    (Money(250), '{"cents": 250}'),
])
def test_values_encode_as_microsofts_sdk_encodes_them(value, text):
    assert to_json(value) == text


def test_none_is_no_payload_at_all():
    assert to_json(None) is None
    assert from_json(None) is None and from_json("") is None


def test_unencodable_value_is_named_in_the_error():
    with pytest.raises(TypeError, match="Cannot encode a value of type 'set' as JSON"):
        to_json({1, 2})


def test_objects_from_older_microsoft_sdks_read_back_as_namespaces():
    value = from_json('{"__durabletask_autoobject__": true, "a": 1}')
    assert value == SimpleNamespace(a=1)


def test_typed_decoding_builds_dataclasses_and_from_json_types():
    assert from_json('{"x": 1, "y": 2}', Point) == Point(1, 2)
    assert from_json('{"cents": 5}', Money).cents == 5
    assert from_json('[1, 2]', Point) == [1, 2]  # not an object: left as it is


def test_input_type_comes_from_the_second_parameter_annotation():
    def typed(ctx, point: Point):
        ...

    def plain(ctx, value: int):
        ...

    assert annotated_input_type(typed) is Point
    assert annotated_input_type(plain) is None
