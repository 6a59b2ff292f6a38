"""A CBOR decoder for untrusted bytes that knows only the types the band's formats use.

The batch envelope, its header and body, and the band-signed consent record are CBOR
(RFC 8949) built from unsigned and negative integers of at most 64 bits, byte strings,
text strings, arrays, maps and the simple values false, true and null; all of definite
length. A general decoder also understands semantic tags, and some of them cost the
receiver far more than the sender: a tag-30 rational of two 250 kB bignums makes cbor2
normalise it with a big-integer gcd that runs for seconds. This decoder rejects every tag,
float, undefined and indefinite-length item on sight, before any arithmetic, so decoding
is one linear pass over the input whatever its contents:

- integers are at most 64 bits by construction (bignums are tags, and tags are refused);
- a declared length or item count larger than the bytes left is refused before anything
  is allocated;
- nesting deeper than ``max_depth`` is refused;
- map keys must be integers, text or byte strings, without duplicates;
- the input must be exactly one data item.

Pure: bytes in, Python values (int, bytes, str, list, dict, bool, None) out.
"""

from __future__ import annotations

import struct
from typing import Final

from protocol.errors import KmebandError

#: Nesting the band's formats need: envelope -> suite list; body -> records -> column.
DEFAULT_MAX_DEPTH: Final = 8

_UINT: Final = {24: struct.Struct(">B"), 25: struct.Struct(">H"), 26: struct.Struct(">I")}
_UINT64: Final = struct.Struct(">Q")
_SIMPLE: Final = {20: False, 21: True, 22: None}


class StrictCborError(KmebandError, ValueError):
    """Bytes that are not CBOR of the restricted kind the band's formats use.

    The message names what is wrong (a tag, a float, too deep, truncated), never a value.
    """


def loads_strict(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> object:
    """Decode exactly one data item from ``data``; raise :class:`StrictCborError`."""
    decoder = _Decoder(bytes(data), max_depth)
    value = decoder.item(0)
    if decoder.pos != len(decoder.data):
        raise StrictCborError("trailing bytes after the CBOR data item")
    return value


class _Decoder:
    __slots__ = ("data", "max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data, self.max_depth, self.pos = data, max_depth, 0

    def _argument(self, info: int) -> int:
        if info < 24:
            return info
        data, pos = self.data, self.pos
        if info in _UINT:
            size = _UINT[info].size
            if pos + size > len(data):
                raise StrictCborError("truncated CBOR item")
            self.pos = pos + size
            return int(_UINT[info].unpack_from(data, pos)[0])
        if info == 27:
            if pos + 8 > len(data):
                raise StrictCborError("truncated CBOR item")
            self.pos = pos + 8
            return int(_UINT64.unpack_from(data, pos)[0])
        if info == 31:
            raise StrictCborError("indefinite-length CBOR items are not accepted")
        raise StrictCborError("reserved CBOR additional information")

    def _length(self, info: int) -> int:
        length = self._argument(info)
        if length > len(self.data) - self.pos:
            # Every byte or item takes at least one byte: a longer claim is a lie.
            raise StrictCborError("a CBOR length exceeds the bytes that follow")
        return length

    def item(self, depth: int) -> object:
        data = self.data
        if self.pos >= len(data):
            raise StrictCborError("truncated CBOR item")
        initial = data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if major == 0:
            return self._argument(info)
        if major == 1:
            return -1 - self._argument(info)
        if major == 2 or major == 3:
            length = self._length(info)
            raw = data[self.pos : self.pos + length]
            self.pos += length
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise StrictCborError("a CBOR text string is not valid UTF-8") from None
        if major == 4 or major == 5:
            if depth >= self.max_depth:
                raise StrictCborError(f"CBOR nested deeper than {self.max_depth} levels")
            count = self._length(info)
            if major == 4:
                return [self.item(depth + 1) for _ in range(count)]
            out: dict[object, object] = {}
            for _ in range(count):
                key = self.item(depth + 1)
                if type(key) not in (int, str, bytes):
                    raise StrictCborError("a CBOR map key is not an integer or a string")
                if key in out:
                    raise StrictCborError("a CBOR map repeats a key")
                out[key] = self.item(depth + 1)
            return out
        if major == 6:
            raise StrictCborError("CBOR tags are not accepted in this format")
        if info in _SIMPLE:
            return _SIMPLE[info]
        raise StrictCborError("CBOR floats and other simple values are not accepted")
