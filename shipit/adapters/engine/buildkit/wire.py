"""Protocol Buffers wire format: just enough to speak BuildKit's messages without protobuf.

BuildKit's session services and its status trace exchange a handful of small messages. Encoding
them by field number keeps the protobuf runtime and generated code off the build path; the field
numbers come from the .proto files each message module cites.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5


class WireError(ValueError):
    """A buffer that is not a valid protobuf encoding."""


def encode_varint(value: int) -> bytes:
    """Unsigned (or two's-complement 64-bit, for negatives) base-128 varint."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint too long")


def signed64(value: int) -> int:
    """An int64 field's value from its unsigned varint."""
    return value - (1 << 64) if value >= 1 << 63 else value


def key(number: int, wire_type: int) -> bytes:
    return encode_varint((number << 3) | wire_type)


def field_varint(number: int, value: int) -> bytes:
    """A varint field (int32/int64/uint32/uint64/bool/enum); zero is omitted as proto3 does."""
    if not value:
        return b""
    return key(number, VARINT) + encode_varint(int(value))


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field (bytes, string, embedded message); empty is omitted."""
    if not data:
        return b""
    return key(number, LEN) + encode_varint(len(data)) + data


def field_string(number: int, text: str) -> bytes:
    return field_bytes(number, text.encode())


def field_message(number: int, encoded: bytes) -> bytes:
    """An embedded message, present even when empty (presence matters for messages)."""
    return key(number, LEN) + encode_varint(len(encoded)) + encoded


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field; LEN values are bytes, others ints."""
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = decode_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == VARINT:
            value, pos = decode_varint(buf, pos)
            yield number, wire_type, value
        elif wire_type == LEN:
            size, pos = decode_varint(buf, pos)
            if pos + size > end:
                raise WireError("truncated length-delimited field")
            yield number, wire_type, bytes(buf[pos : pos + size])
            pos += size
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield number, wire_type, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield number, wire_type, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")


def fields(buf: bytes | memoryview) -> dict[int, list[int | bytes]]:
    """Every field's values by number (repeated fields keep their order)."""
    out: dict[int, list[int | bytes]] = {}
    for number, _, value in iter_fields(buf):
        out.setdefault(number, []).append(value)
    return out


def encode_timestamp(seconds: float) -> bytes:
    """A google.protobuf.Timestamp (seconds = 1, nanos = 2)."""
    whole = int(seconds // 1)
    nanos = round((seconds - whole) * 1e9)
    return field_varint(1, whole) + field_varint(2, nanos)


def decode_timestamp(buf: bytes) -> float:
    """A google.protobuf.Timestamp as seconds since the epoch."""
    seconds = nanos = 0
    for number, _, value in iter_fields(buf):
        if number == 1 and isinstance(value, int):
            seconds = signed64(value)
        elif number == 2 and isinstance(value, int):
            nanos = value
    return seconds + nanos / 1e9
