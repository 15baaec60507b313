"""OSC 1.0 packets → (timetag, address, arguments), parsed in bounded time and size.

Every read consumes at least four bytes of the packet, element sizes are
checked against what is left, bundles nest at most ``MAX_DEPTH`` deep and a
packet yields at most ``MAX_MESSAGES`` messages: a hostile datagram is a
:class:`OscPacketError`, never a loop (python-osc's own bundle parser spins
for ever on an element of negative size).

Argument types: ``i h f d s S c b t T F N I r m`` and ``[ ]`` arrays.
"""

from __future__ import annotations

import struct

BUNDLE_TAG = b"#bundle\x00"
IMMEDIATELY = None  # the timetag of a message sent for "now"
NTP_TO_UNIX_S = 2208988800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
MAX_DEPTH = 8
MAX_MESSAGES = 1024
MAX_ARGS = 256


class OscPacketError(ValueError):
    """A datagram that is not well-formed OSC. The message is one line."""


def parse_packet(data: bytes) -> list[tuple[float | None, str, list]]:
    """(timetag as Unix seconds or None for "now", address, args) for every message in ``data``."""
    out: list[tuple[float | None, str, list]] = []
    if data.startswith(BUNDLE_TAG):
        _bundle(data, IMMEDIATELY, 0, out)
    elif data.startswith(b"/"):
        address, args = parse_message(data)
        out.append((IMMEDIATELY, address, args))
    else:
        raise OscPacketError("neither an OSC message nor a bundle")
    return out


def _bundle(data: bytes, outer_tag: float | None, depth: int, out: list) -> None:
    if depth >= MAX_DEPTH:
        raise OscPacketError(f"bundles nested deeper than {MAX_DEPTH}")
    if len(data) < 16:
        raise OscPacketError("bundle shorter than its header")
    seconds, fraction = struct.unpack_from(">II", data, 8)
    tag = outer_tag if (seconds, fraction) == (0, 1) else seconds - NTP_TO_UNIX_S + fraction / 2**32
    index = 16
    while index < len(data):
        if len(data) - index < 4:
            raise OscPacketError(f"bundle element size cut off at byte {index}")
        (size,) = struct.unpack_from(">i", data, index)
        index += 4
        if size <= 0 or size % 4 or size > len(data) - index:
            raise OscPacketError(f"bundle element of {size} bytes at byte {index - 4}, "
                                 f"allowed a positive multiple of 4 up to {len(data) - index}")
        element = data[index:index + size]
        index += size
        if element.startswith(BUNDLE_TAG):
            _bundle(element, tag, depth + 1, out)
        elif element.startswith(b"/"):
            if len(out) >= MAX_MESSAGES:
                raise OscPacketError(f"more than {MAX_MESSAGES} messages in one packet")
            address, args = parse_message(element)
            out.append((tag, address, args))
        else:
            raise OscPacketError(f"bundle element at byte {index - size} is neither a message nor a bundle")


def parse_message(data: bytes) -> tuple[str, list]:
    """(address, arguments) of one OSC message."""
    address, index = _string(data, 0)
    if index >= len(data):
        return address, []
    tags, index = _string(data, index)
    if not tags.startswith(","):
        raise OscPacketError(f"{address}: type tags must start with ',', found {tags[:16]!r}")
    if len(tags) - 1 > MAX_ARGS:
        raise OscPacketError(f"{address}: {len(tags) - 1} type tags, allowed at most {MAX_ARGS}")
    args: list = []
    stack = [args]
    for tag in tags[1:]:
        if tag == "[":
            stack[-1].append([])
            stack.append(stack[-1][-1])
            continue
        if tag == "]":
            if len(stack) < 2:
                raise OscPacketError(f"{address}: ']' without '[' in the type tags")
            stack.pop()
            continue
        value, index = _argument(data, index, tag, address)
        stack[-1].append(value)
    if len(stack) != 1:
        raise OscPacketError(f"{address}: '[' without ']' in the type tags")
    return address, args


_FIXED = {"i": ">i", "h": ">q", "f": ">f", "d": ">d", "c": ">I", "r": ">I", "m": ">4s", "t": ">II"}
_CONSTANT = {"T": True, "F": False, "N": None, "I": float("inf")}


def _argument(data: bytes, index: int, tag: str, address: str):
    if tag in _CONSTANT:
        return _CONSTANT[tag], index
    if tag in ("s", "S"):
        return _string(data, index)
    if tag == "b":
        (size,) = _unpack(">i", data, index, address)
        start = index + 4
        if size < 0 or size > len(data) - start:
            raise OscPacketError(f"{address}: blob of {size} bytes, {len(data) - start} left")
        return data[start:start + size], start + size + (-size % 4)
    if tag not in _FIXED:
        raise OscPacketError(f"{address}: unknown type tag {tag!r}")
    fmt = _FIXED[tag]
    value = _unpack(fmt, data, index, address)
    index += struct.calcsize(fmt)
    if tag == "c":
        return chr(value[0] & 0x10FFFF), index
    if tag == "t":
        return value[0] - NTP_TO_UNIX_S + value[1] / 2**32, index
    return value[0], index


def _unpack(fmt: str, data: bytes, index: int, address: str) -> tuple:
    if struct.calcsize(fmt) > len(data) - index:
        raise OscPacketError(f"{address}: argument cut off at byte {index}")
    return struct.unpack_from(fmt, data, index)


def _string(data: bytes, index: int) -> tuple[str, int]:
    """An OSC string (NUL-terminated, padded to 4 bytes) and the index after it."""
    end = data.find(b"\x00", index)
    if end < 0:
        raise OscPacketError(f"string at byte {index} has no terminating NUL")
    try:
        text = data[index:end].decode("utf-8")
    except UnicodeDecodeError:
        raise OscPacketError(f"string at byte {index} is not UTF-8") from None
    return text, end + 4 - (end % 4)
