"""CoAP over reliable transports (RFC 8323): message framing and signaling messages.

Over TCP and TLS a CoAP message has no type and no Message ID (RFC 8323 §3.2)::

    Len (4 bits) | TKL (4 bits) | Extended Length (0, 1, 2 or 4 bytes) | Code | Token | Options | FF Payload

``Len`` is the length of what follows the token (options, payload marker and payload):
0..12 as is; 13, 14 and 15 announce an extended length of 1, 2 or 4 bytes holding the
length minus 13, 269 or 65805. Options and payload are those of RFC 7252 §3.1, so the
option walk is the one of ``lwm2m.coap.message`` (the message decodes into a ``Message``
with type CON and Message ID 0, which nothing over TCP reads).

``FrameDecoder`` takes the byte stream in chunks of any size and gives whole messages; it
never holds more than one message's bytes beyond what it was fed, and refuses a message
longer than its ``max_message_size`` from its header alone (``FrameTooLarge``), before the
body arrives. Signaling messages (class 7, RFC 8323 §5) are ``Message``s with a
``SignalCode``; their options are numbered per code (``SignalOption``).
"""

from __future__ import annotations

from enum import IntEnum

from lwm2m.coap.message import MAX_TOKEN_LENGTH, Message, Options, decode_message
from lwm2m.coap.numbers import Type
from lwm2m.coap.option import decode_uint, encode_uint
from lwm2m.errors import FrameTooLarge, FramingError, MessageError

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FrameDecoder",
    "SignalCode",
    "SignalOption",
    "decode_frame",
    "encode_frame",
    "encode_message",
    "signal",
]

# RFC 8323 §5.3.1: without a CSM saying otherwise, a peer takes 1152 bytes.
DEFAULT_MAX_MESSAGE_SIZE = 1152

_EXT1, _EXT2, _EXT4 = 13, 269, 65805  # RFC 8323 §3.2: the offsets of the extended lengths


class SignalCode(IntEnum):
    """Signaling codes (RFC 8323 §11.1): class 7."""

    CSM = 0xE1  # 7.01
    PING = 0xE2  # 7.02
    PONG = 0xE3  # 7.03
    RELEASE = 0xE4  # 7.04
    ABORT = 0xE5  # 7.05


class SignalOption(IntEnum):
    """Signaling option numbers (RFC 8323 §11.2); a number's meaning depends on the code."""

    MAX_MESSAGE_SIZE = 2  # CSM
    BLOCK_WISE_TRANSFER = 4  # CSM
    CUSTODY = 2  # Ping, Pong
    ALTERNATIVE_ADDRESS = 2  # Release
    HOLD_OFF = 4  # Release
    BAD_CSM_OPTION = 2  # Abort


def is_signal(code: int) -> bool:
    return code >> 5 == 7


def encode_frame(code: int, token: bytes, body: bytes) -> bytes:
    """A message of ``code`` and ``token`` whose options and payload are encoded in ``body``."""
    tkl = len(token)
    if tkl > MAX_TOKEN_LENGTH:
        raise ValueError(f"token of {tkl} bytes: at most {MAX_TOKEN_LENGTH}")
    n = len(body)
    if n < _EXT1:
        head = bytes(((n << 4) | tkl, code))
    elif n < _EXT2:
        head = bytes(((13 << 4) | tkl, n - _EXT1, code))
    elif n < _EXT4:
        m = n - _EXT2
        head = bytes(((14 << 4) | tkl, m >> 8, m & 0xFF, code))
    else:
        head = bytes(((15 << 4) | tkl,)) + (n - _EXT4).to_bytes(4, "big") + bytes((code,))
    return head + token + body


def encode_message(message: Message) -> bytes:
    """``message`` in RFC 8323 framing: its type and Message ID are not sent."""
    tkl = len(message.token)
    if tkl > MAX_TOKEN_LENGTH:
        raise ValueError(f"token of {tkl} bytes: at most {MAX_TOKEN_LENGTH}")
    # The RFC 7252 encoding less its 4-byte header and token: options and payload are the same.
    udp = Message(Type.CON, message.code, 0, message.token, message.options, message.payload).encode()
    return encode_frame(int(message.code), message.token, udp[4 + tkl :])


def decode_frame(data: bytes) -> Message:
    """One whole message (exactly the bytes of one frame); ``FramingError`` for any other input."""
    decoder = FrameDecoder(max(len(data), 1))
    messages = decoder.feed(data)
    if len(messages) != 1 or decoder.buffered:
        raise FramingError(f"not exactly one message in {len(data)} bytes")
    return messages[0]


def signal(code: SignalCode, options: Options = (), payload: bytes = b"") -> Message:
    """A signaling message (RFC 8323 §5): no token."""
    return Message(Type.CON, code, 0, b"", options, payload)


def uint_option(number: int, value: int) -> tuple[int, bytes]:
    return (number, encode_uint(value))


def read_uint(value: bytes) -> int:
    return decode_uint(value)


def _header(data: bytes | bytearray, pos: int) -> tuple[int, int, int] | None:
    """(token length, body length, bytes before the code) of the frame at ``pos``, or None while
    the header is incomplete (the code byte is not there yet)."""
    n = len(data) - pos
    if n < 2:
        return None
    b0 = data[pos]
    tkl = b0 & 0x0F
    if tkl > MAX_TOKEN_LENGTH:
        raise FramingError(f"token length {tkl}: at most {MAX_TOKEN_LENGTH} (RFC 8323 §3.2)")
    ln = b0 >> 4
    if ln < 13:
        return tkl, ln, 1
    if ln == 13:
        return (tkl, data[pos + 1] + _EXT1, 2) if n >= 3 else None
    if ln == 14:
        return (tkl, ((data[pos + 1] << 8) | data[pos + 2]) + _EXT2, 3) if n >= 4 else None
    if n < 6:
        return None
    return tkl, int.from_bytes(data[pos + 1 : pos + 5], "big") + _EXT4, 5


class FrameDecoder:
    """The stream side of RFC 8323 §3.2: bytes in chunks of any size, whole messages out.

    ``max_message_size`` bounds a message (header, token, options and payload): one whose
    header announces more raises ``FrameTooLarge`` at once (the caller aborts the
    connection, RFC 8323 §5.3.1). A malformed message raises ``FramingError``; after either
    the decoder is spent (the stream cannot be resynchronised) and raises again on any feed.
    """

    __slots__ = ("_buf", "_failed", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 2:
            raise ValueError(f"max_message_size {max_message_size}: at least 2")
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._failed: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a message not yet whole."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """The messages that ``data`` completes, in order."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        try:
            while True:
                head = _header(buf, pos)
                if head is None:
                    # Even an incomplete header of a frame too large is refused by its length
                    # once known; until then at most 5 bytes wait.
                    break
                tkl, body, hl = head
                total = hl + 1 + tkl + body
                if total > self.max_message_size:
                    raise FrameTooLarge(
                        f"message of {total} bytes: over the Max-Message-Size of {self.max_message_size}",
                        size=total,
                    )
                if len(buf) - pos < total:
                    break
                out.append(_message(bytes(buf[pos + hl : pos + total]), tkl))
                pos += total
        except FramingError as exc:
            self._failed = exc
            buf.clear()
            raise
        if pos:
            del buf[:pos]
        return out


def _message(frame: bytes, tkl: int) -> Message:
    """A message from its code, token, options and payload (the frame less Len and Extended Length)."""
    code = frame[0]
    if code == 0:
        # RFC 8323 §3.4: an Empty message is ignored by its recipient; RFC 7252 §4.1: it has
        # nothing after the token.
        if len(frame) > 1 + tkl:
            raise FramingError("empty message (0.00) with options or payload")
        return Message(Type.CON, 0, 0, frame[1:])
    # The RFC 7252 option walk, after a CON header with Message ID 0 standing in for ours.
    try:
        return decode_message(bytes((0x40 | tkl, code, 0, 0)) + frame[1:])[0]
    except MessageError as exc:
        raise FramingError(str(exc)) from None
