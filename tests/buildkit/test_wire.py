"""The protobuf wire codec against encodings produced by the protobuf reference rules."""

from __future__ import annotations

import pytest

from shipit.adapters.engine.buildkit import wire


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")],
)
def test_varint_round_trips(value: int, encoded: bytes) -> None:
    assert wire.encode_varint(value) == encoded
    assert wire.decode_varint(encoded, 0) == (value, len(encoded))


def test_negative_int64_is_ten_bytes_and_decodes_signed() -> None:
    encoded = wire.encode_varint(-1)
    assert len(encoded) == 10
    assert wire.signed64(wire.decode_varint(encoded, 0)[0]) == -1


def test_fields_of_a_known_message() -> None:
    # {1: 150, 2: "testing"} as in the protobuf encoding guide
    buf = b"\x08\x96\x01\x12\x07testing"
    assert list(wire.iter_fields(buf)) == [(1, wire.VARINT, 150), (2, wire.LEN, b"testing")]
    assert wire.field_varint(1, 150) + wire.field_string(2, "testing") == buf


def test_repeated_fields_keep_order_and_empty_message_is_present() -> None:
    buf = wire.field_string(3, "a") + wire.field_string(3, "b") + wire.field_message(4, b"")
    assert wire.fields(buf) == {3: [b"a", b"b"], 4: [b""]}
    assert wire.field_varint(5, 0) == b""


def test_timestamp_round_trip() -> None:
    assert wire.decode_timestamp(wire.encode_timestamp(1700000000.25)) == pytest.approx(
        1700000000.25
    )


@pytest.mark.parametrize("buf", [b"\x08", b"\x12\x05ab", b"\x0b", b"\x80"])
def test_truncated_or_unknown_encodings_raise(buf: bytes) -> None:
    with pytest.raises(wire.WireError):
        list(wire.iter_fields(buf))
