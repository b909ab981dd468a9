"""Option values: uint encoding (RFC 7252 §3.2) and the Block1/Block2 value (RFC 7959 §2.2)."""

from __future__ import annotations

from dataclasses import dataclass

from lwm2m.errors import ProtocolError


def encode_uint(value: int) -> bytes:
    """Shortest big-endian form; 0 is the empty string (RFC 7252 §3.2)."""
    if value < 0:
        raise ValueError(f"option uint must not be negative: {value}")
    if value == 0:
        return b""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_uint(data: bytes) -> int:
    return int.from_bytes(data, "big")


MAX_SZX = 6  # szx 7 is reserved (RFC 7959 §2.2); 2**(6+4) = 1024 bytes


@dataclass(frozen=True, slots=True)
class BlockOption:
    """A Block1 or Block2 option value: block number, more flag, size exponent."""

    num: int
    more: bool
    szx: int

    def __post_init__(self) -> None:
        if not 0 <= self.szx <= MAX_SZX:
            raise ValueError(f"block size exponent {self.szx} out of range 0..{MAX_SZX}")
        if not 0 <= self.num < 1 << 20:
            raise ValueError(f"block number {self.num} out of range 0..{(1 << 20) - 1}")

    @property
    def size(self) -> int:
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        return self.num * self.size

    @classmethod
    def decode(cls, data: bytes) -> BlockOption:
        if len(data) > 3:
            raise ProtocolError("block option longer than 3 bytes")
        v = decode_uint(data)
        szx = v & 0x7
        if szx == 7:
            raise ProtocolError("block size exponent 7 is reserved")
        return cls(v >> 4, bool(v & 0x8), szx)

    def encode(self) -> bytes:
        return encode_uint((self.num << 4) | (0x8 if self.more else 0) | self.szx)

    @staticmethod
    def szx_for(size: int) -> int:
        """The largest size exponent whose block fits in ``size`` bytes (16..1024)."""
        szx = max(0, min(MAX_SZX, size.bit_length() - 5))
        return szx
