"""Restate's service protocol on the wire, just enough to invoke one handler without a server.

A request body is a sequence of frames: an 8-byte header (message type, flags, length; big
endian) and a protobuf message. An invocation starts with a StartMessage and the handler's
InputCommandMessage; the answer ends with an OutputCommandMessage and an EndMessage. Field
numbers are those of Restate's protocol.proto (sdk-shared-core, service-protocol/). The SDK
has no encoder for the server's side of the exchange, so this writes the few fields needed.
"""

from __future__ import annotations

import struct

CONTENT_TYPE = "application/vnd.restate.invocation.v5"
START, END, INPUT, OUTPUT = 0x0000, 0x0003, 0x0400, 0x0401


def invocation_body(key: str, payload: bytes, invocation_id: bytes = b"\x01" * 26) -> bytes:
    """A fresh invocation of a keyed handler with `payload` as its input: nothing journaled yet,
    and the object's whole state (empty) sent along, so that reads need no round trip."""
    start = (_bytes(1, invocation_id) + _bytes(2, b"inv_test") + _uint(3, 1) + _bytes(6, key.encode()))
    input_command = _bytes(14, _bytes(1, payload))  # value = Value{content = payload}
    return _frame(START, start) + _frame(INPUT, input_command)


def output_of(body: bytes) -> tuple[str, bytes | tuple[int, str]]:
    """The handler's result in an answer: ("value", content) or ("failure", (code, message))."""
    for message_type, message in frames(body):
        if message_type == OUTPUT:
            fields = _fields(message)
            if 14 in fields:
                return "value", _fields(fields[14])[1]
            failure = _fields(fields[15])
            return "failure", (failure.get(1, 0), failure.get(2, b"").decode())
    raise ValueError(f"no output in the answer: {[hex(t) for t, _ in frames(body)]}")


def frames(body: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(body):
        message_type, _flags, length = struct.unpack(">HHI", body[at:at + 8])
        out.append((message_type, body[at + 8:at + 8 + length]))
        at += 8 + length
    return out


def _frame(message_type: int, message: bytes) -> bytes:
    return struct.pack(">HHI", message_type, 0, len(message)) + message


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _uint(field: int, number: int) -> bytes:
    return _varint(field << 3) + _varint(number)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _fields(message: bytes) -> dict[int, bytes | int]:
    """The last value of each field of a protobuf message (varints and length-delimited only)."""
    fields: dict[int, bytes | int] = {}
    at = 0
    while at < len(message):
        key, at = _read_varint(message, at)
        if key & 7 == 0:
            fields[key >> 3], at = _read_varint(message, at)
        elif key & 7 == 2:
            length, at = _read_varint(message, at)
            fields[key >> 3], at = message[at:at + length], at + length
        else:
            raise ValueError(f"unexpected wire type {key & 7}")
    return fields


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        byte = data[at]
        number |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return number, at
