"""An OSCORE security context (RFC 8613 §3) and the protection of messages with it (§5, §8).

``OscoreContext(config)`` derives the Sender Key, Recipient Key and Common IV from an
``OscoreConfig`` (§3.2: HKDF-SHA256, AES-CCM-16-64-128) and protects and verifies messages:

    protect_request(message) -> (outer message, RequestBinding)
    unprotect_request(message) -> (inner message, RequestBinding)      # the server's side
    protect_response(message, binding, *, fresh_piv=False) -> outer message
    unprotect_response(message, binding) -> (inner message, Partial IV as int or None)

A request's ``RequestBinding`` (its kid and Partial IV, §5.4) ties its responses to it. A
response reuses the request's nonce unless ``fresh_piv`` (Observe notifications, §4.1.3.5.2)
or the request's freshness is unknown. The context owns its sender sequence numbers
(``SenderSequence``: Appendix B.1.1's stored ranges, so a restart never reuses a nonce) and its
replay window (``OscoreReplayWindow``, §7.4; after a restart not known, so the first request is
answered with a 4.01 Echo challenge, Appendix B.1.2 and RFC 9175). Every failure is an
``OscoreError`` whose ``code`` is the CoAP error of §8.2.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lwm2m.coap.message import Message, decode_message, encode_parts
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.oscore.cose import NONCE_LENGTH, OscoreOption, aad, info, nonce, piv_bytes
from lwm2m.errors import (
    ConfigError,
    MessageError,
    OscoreContextNotFound,
    OscoreDecryptFailed,
    OscoreEchoRequired,
    OscoreOptionError,
    OscoreReplay,
    OscoreSequenceUnavailable,
)

__all__ = [
    "MAX_SEQUENCE",
    "OSCORE_OPTION",
    "OscoreConfig",
    "OscoreContext",
    "OscoreReplayWindow",
    "RequestBinding",
    "SenderSequence",
]

OSCORE_OPTION = 9  # RFC 8613 §2
ECHO_OPTION = 252  # RFC 9175 §2.2
KEY_LENGTH = 16
TAG_LENGTH = 8
MAX_ID_LENGTH = NONCE_LENGTH - 6  # §3.3
MAX_SEQUENCE = (1 << 40) - 1  # §7.2.1: a Partial IV has at most 5 bytes
MAX_WINDOW = 4096

# Class U options (RFC 8613 §4.1, Figure 5): they stay in the outer message only. Observe is both
# (§4.1.3.5), handled on its own; every other option, known or not, is Class E (encrypted).
_OUTER = frozenset((OptionNumber.URI_HOST, OptionNumber.URI_PORT, OptionNumber.PROXY_SCHEME, 16))
_OBSERVE = OptionNumber.OBSERVE
_PROXY_URI = OptionNumber.PROXY_URI


def _hexed(b: bytes | None) -> str:
    return "-" if b is None else (b.hex() or "''")


@dataclass(frozen=True, slots=True)
class OscoreConfig:
    """The input parameters of a security context (RFC 8613 §3.2): the Master Secret and Salt,
    our Sender ID and the peer's (our Recipient ID), an optional ID Context, and the size of
    the replay window (§7.4, default 32). The secret never shows in ``repr``."""

    master_secret: bytes = field(repr=False)
    sender_id: bytes
    recipient_id: bytes
    master_salt: bytes = field(default=b"", repr=False)
    id_context: bytes | None = None
    replay_window: int = 32

    def __post_init__(self) -> None:
        if not self.master_secret:
            raise ConfigError("the OSCORE master secret is empty")
        for name in ("sender_id", "recipient_id"):
            value = getattr(self, name)
            if len(value) > MAX_ID_LENGTH:
                raise ConfigError(f"an OSCORE {name} has at most {MAX_ID_LENGTH} bytes (RFC 8613 §3.3)")
        if self.sender_id == self.recipient_id:
            raise ConfigError("the OSCORE sender and recipient IDs must differ (RFC 8613 §3.3)")
        if self.id_context is not None and len(self.id_context) > 0xFF:
            raise ConfigError("an OSCORE ID context has at most 255 bytes")
        if not 1 <= self.replay_window <= MAX_WINDOW:
            raise ConfigError(f"the OSCORE replay window holds 1 to {MAX_WINDOW} numbers")

    def peer(self) -> OscoreConfig:
        """The configuration the other end holds: sender and recipient swapped."""
        return OscoreConfig(
            self.master_secret,
            self.recipient_id,
            self.sender_id,
            self.master_salt,
            self.id_context,
            self.replay_window,
        )


class SenderSequence:
    """The sender sequence number, stored in ranges (RFC 8613 Appendix B.1.1).

    Without ``reserve`` the numbers live in memory only. With it, every number handed out lies
    below a limit the store has confirmed: when the next number comes within half a ``step`` of
    the limit, ``reserve(new_limit)`` asks the store to write ``new_limit``; it returns True when
    written at once, else the holder calls ``reserved(new_limit)`` once the write is done (or
    ``reserved(None)`` when it failed, to ask again). After a restart the context starts at the
    stored limit, above every number used before. No number at or above the confirmed limit is
    ever handed out: ``take`` raises ``OscoreSequenceUnavailable`` while a write is still due.

    Where several holders share one context's stored limit (the nodes of a cluster), the store
    hands each a range of its own: ``reserved(limit, start=s)`` gives the numbers from ``s``
    below ``limit``; when ``s`` lies above the current limit (another holder took the numbers
    between), they are used once the current range is spent.
    """

    def __init__(self, start: int = 0, *, reserve: Callable[[int], bool] | None = None, step: int = 1024):
        if not 0 <= start <= MAX_SEQUENCE + 1:
            raise ConfigError(f"an OSCORE sequence number lies in 0..{MAX_SEQUENCE}")
        if step < 2:
            raise ConfigError("the stored range of OSCORE sequence numbers has at least 2 numbers")
        self._next = start
        self._reserve = reserve
        self._step = step
        self._limit = start if reserve is not None else MAX_SEQUENCE + 1
        self._asked: int | None = None
        self._ahead: tuple[int, int] | None = None  # a range given beyond the current one

    @property
    def next(self) -> int:
        """The number ``take`` hands out next."""
        return self._next

    @property
    def limit(self) -> int:
        """The confirmed limit: every number handed out lies below it."""
        return self._limit

    def prepare(self) -> None:
        """Ask for the next range now if it is due (a new context asks before its first use)."""
        n = self._next
        if (
            self._reserve is not None
            and self._asked is None
            and self._ahead is None
            and n + self._step // 2 >= self._limit
        ):
            want = min(max(self._limit, n) + self._step, MAX_SEQUENCE + 1)
            self._asked = want
            try:
                done = self._reserve(want)
            except Exception as exc:  # a store that cannot write now: asked again next time
                self._asked = None
                raise OscoreSequenceUnavailable(
                    f"storing the next OSCORE sequence numbers failed: {exc}"
                ) from exc
            if done:
                self.reserved(want)

    def take(self) -> int:
        n = self._next
        if n >= self._limit and self._ahead is not None:
            n, self._limit = self._ahead  # the current range is spent: on to the one given beyond
            self._next = n
            self._ahead = None
        if n > MAX_SEQUENCE:
            raise OscoreSequenceUnavailable(
                "the OSCORE sender sequence numbers are exhausted: a new context is due"
            )
        if self._reserve is not None:
            self.prepare()
            if n >= self._limit:
                raise OscoreSequenceUnavailable("the next range of OSCORE sequence numbers is not stored yet")
        self._next = n + 1
        return n

    def reserved(self, limit: int | None, *, start: int | None = None) -> None:
        """The store has written ``limit`` (None: the write failed, ask again); with ``start``,
        the numbers given are those from ``start`` below ``limit`` (the answer to the ask)."""
        if limit is None:
            self._asked = None
            return
        if start is not None:
            self._asked = None
            if start > self._limit:
                if limit > start:
                    self._ahead = (start, limit)
                return
        if limit > self._limit:
            self._limit = limit
        if self._asked is not None and limit >= self._asked:
            self._asked = None


class OscoreReplayWindow:
    """The replay window of a recipient context (RFC 8613 §7.4): the highest Partial IV seen and
    which of the ``size`` below it were seen. ``initialized`` False (a context restored after a
    restart) means nothing is known: the caller asks for freshness first (Appendix B.1.2)."""

    __slots__ = ("_bits", "_mask", "_top", "initialized", "size")

    def __init__(self, size: int = 32, *, initialized: bool = True) -> None:
        self.size = size
        self._mask = (1 << size) - 1
        self._top = -1
        self._bits = 0  # bit i: top - i was seen
        self.initialized = initialized

    def seen(self, seq: int) -> bool:
        """Whether ``seq`` must be refused: seen already, or below the window."""
        if seq > self._top:
            return False
        back = self._top - seq
        return back >= self.size or bool((self._bits >> back) & 1)

    def accept(self, seq: int) -> None:
        if seq > self._top:
            shift = seq - self._top
            self._bits = ((self._bits << shift) | 1) & self._mask if shift < self.size else 1
            self._top = seq
        else:
            self._bits |= 1 << (self._top - seq)

    def initialize(self, seq: int) -> None:
        """Appendix B.1.2: ``seq`` was verified fresh; it and everything below is refused."""
        self._top = seq
        self._bits = self._mask
        self.initialized = True


@dataclass(frozen=True, slots=True)
class RequestBinding:
    """What ties a response to its request (RFC 8613 §5.4): the request's kid (the ID of whoever
    made its Partial IV) and Partial IV, its outer code (POST, or FETCH for Observe, §4.2: the
    outer response code follows it), and whether its nonce may be reused by the response."""

    kid: bytes
    piv: bytes
    outer_code: int = Code.POST
    reuse_nonce: bool = True
    kid_context: bytes | None = None

    @property
    def sequence(self) -> int:
        return int.from_bytes(self.piv, "big")


def _hkdf(secret: bytes, salt: bytes, info_: bytes, length: int) -> bytes:
    # RFC 5869: an empty salt is a string of HashLen zeros, which HMAC pads to the same key.
    return HKDF(hashes.SHA256(), length, salt or None, info_).derive(secret)


def _plaintext(code: int, options: list[tuple[int, bytes]], payload: bytes) -> bytes:
    """RFC 8613 §5.3: the code, the Class E options and the payload, as in a CoAP message."""
    return bytes((code,)) + encode_parts(0, 0, 0, b"", options, payload)[4:]


def _parse_plaintext(plaintext: bytes) -> Message:
    if not plaintext:
        raise OscoreOptionError("an empty OSCORE plaintext")
    try:
        msg, _ = decode_message(b"\x40" + plaintext[:1] + b"\0\0" + plaintext[1:])
    except MessageError as exc:
        raise OscoreOptionError(f"malformed OSCORE plaintext: {exc}") from None
    if any(n == OSCORE_OPTION for n, _ in msg.options):
        raise OscoreOptionError("an OSCORE option inside an OSCORE message (RFC 8613 §4.1.3.7)")
    return msg


def _merge(outer: list[tuple[int, bytes]], inner: list[tuple[int, bytes]]) -> tuple[tuple[int, bytes], ...]:
    out = outer + inner
    out.sort(key=lambda o: o[0])  # stable: repeated options keep their order
    return tuple(out)


class OscoreContext:
    """One OSCORE security context: derived keys, sender sequence numbers, replay window."""

    def __init__(
        self,
        config: OscoreConfig,
        *,
        sequence: SenderSequence | None = None,
        window: OscoreReplayWindow | None = None,
    ) -> None:
        self.config = config
        c = config
        self.sender_key = _hkdf(
            c.master_secret, c.master_salt, info(c.sender_id, c.id_context, "Key", 16), 16
        )
        self.recipient_key = _hkdf(
            c.master_secret, c.master_salt, info(c.recipient_id, c.id_context, "Key", KEY_LENGTH), KEY_LENGTH
        )
        self.common_iv = _hkdf(
            c.master_secret, c.master_salt, info(b"", c.id_context, "IV", NONCE_LENGTH), NONCE_LENGTH
        )
        self._seal = AESCCM(self.sender_key, TAG_LENGTH)
        self._open = AESCCM(self.recipient_key, TAG_LENGTH)
        self.sequence = sequence if sequence is not None else SenderSequence()
        self.window = window if window is not None else OscoreReplayWindow(c.replay_window)
        # The Echo value a request must carry while the replay window is unknown (B.1.2).
        self.echo = secrets.token_bytes(8)

    @property
    def sender_id(self) -> bytes:
        return self.config.sender_id

    @property
    def recipient_id(self) -> bytes:
        return self.config.recipient_id

    @property
    def id_context(self) -> bytes | None:
        return self.config.id_context

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<OscoreContext sender={_hexed(c.sender_id)} recipient={_hexed(c.recipient_id)}"
            f" context={_hexed(c.id_context)} next={self.sequence.next}>"
        )

    # --- requests ---------------------------------------------------------------------------

    def protect_request(
        self, message: Message, *, kid_context: bool = True
    ) -> tuple[Message, RequestBinding]:
        """The OSCORE request for ``message`` (RFC 8613 §8.1) and its binding for the response.
        The ID Context goes in the option unless ``kid_context`` is False."""
        outer: list[tuple[int, bytes]] = []
        inner: list[tuple[int, bytes]] = []
        observe = False
        for number, value in message.options:
            if number in _OUTER:
                outer.append((number, value))
            elif number == _OBSERVE:
                outer.append((number, value))  # both: the proxy's and the server's (§4.1.3.5.1)
                inner.append((number, value))
                observe = True
            elif number in (OSCORE_OPTION, _PROXY_URI):
                raise ValueError(f"option {number} cannot be protected here (RFC 8613 §4.1.3.3, §4.1.3.7)")
            else:
                inner.append((number, value))
        seq = self.sequence.take()
        piv = piv_bytes(seq)
        sender = self.config.sender_id
        ctx = self.config.id_context if kid_context else None
        ciphertext = self._seal.encrypt(
            nonce(self.common_iv, sender, piv),
            _plaintext(message.code, inner, message.payload),
            aad(sender, piv),
        )
        outer.append((OSCORE_OPTION, OscoreOption(piv, sender, ctx).encode()))
        outer_code = Code.FETCH if observe else Code.POST
        protected = Message(
            message.type, outer_code, message.mid, message.token, _merge(outer, []), ciphertext
        )
        return protected, RequestBinding(sender, piv, outer_code, True, ctx)

    def unprotect_request(
        self, message: Message, option: OscoreOption | None = None
    ) -> tuple[Message, RequestBinding]:
        """The request inside an OSCORE request (RFC 8613 §8.2), or an ``OscoreError``.

        ``option`` is the message's OSCORE option already decoded (a server that looked the
        context up by it). While the replay window is unknown (after a restart) a request
        without the context's Echo value raises ``OscoreEchoRequired`` with the challenge to
        send; with it, the window starts at its Partial IV (Appendix B.1.2)."""
        if option is None:
            option = OscoreOption.decode(_option_value(message))
        if option.piv is None or option.kid is None:
            raise OscoreOptionError("an OSCORE request needs a kid and a Partial IV (RFC 8613 §6.1)")
        if option.kid != self.config.recipient_id or (
            option.kid_context is not None and option.kid_context != self.config.id_context
        ):
            raise OscoreContextNotFound("Security context not found")
        seq = int.from_bytes(option.piv, "big")
        window = self.window
        if window.initialized and window.seen(seq):
            raise OscoreReplay("Replay detected")
        kid = option.kid
        try:
            plaintext = self._open.decrypt(
                nonce(self.common_iv, kid, option.piv), message.payload, aad(kid, option.piv)
            )
        except (InvalidTag, ValueError):
            raise OscoreDecryptFailed("Decryption failed") from None
        inner = _parse_plaintext(plaintext)
        binding = RequestBinding(kid, option.piv, message.code, True, option.kid_context)
        if not window.initialized:
            if inner.option(ECHO_OPTION) != self.echo:
                challenge = Message(Type.ACK, Code.UNAUTHORIZED, options=((ECHO_OPTION, self.echo),))
                # §7.4 / B.1.2: the answer to a request of unknown freshness never reuses its nonce.
                fresh = RequestBinding(kid, option.piv, message.code, False, option.kid_context)
                raise OscoreEchoRequired(
                    "Replay window unknown: Echo required", self.protect_response(challenge, fresh)
                )
            window.initialize(seq)
        else:
            window.accept(seq)
        outer = [(n, v) for n, v in message.options if n in _OUTER]
        inner_options = list(inner.options)
        if message.option(_OBSERVE) is None:
            inner_options = [(n, v) for n, v in inner_options if n != _OBSERVE]
        plain = Message(
            message.type, inner.code, message.mid, message.token, _merge(outer, inner_options), inner.payload
        )
        return plain, binding

    # --- responses ----------------------------------------------------------------------------

    def protect_response(
        self, message: Message, binding: RequestBinding, *, fresh_piv: bool = False
    ) -> Message:
        """The OSCORE response to the request of ``binding`` (RFC 8613 §8.3). It reuses the
        request's nonce unless ``fresh_piv`` or the binding forbids it (then it carries a
        Partial IV of its own). An Observe option stays outside (the endpoint numbers
        notifications, §4.1.3.5.2); the rest is encrypted."""
        outer: list[tuple[int, bytes]] = []
        inner: list[tuple[int, bytes]] = []
        for number, value in message.options:
            if number == _OBSERVE:
                outer.append((number, value))
            elif number in _OUTER or number == OSCORE_OPTION:
                raise ValueError(f"option {number} has no place in an OSCORE response")
            else:
                inner.append((number, value))
        plaintext = _plaintext(message.code, inner, message.payload)
        ext = aad(binding.kid, binding.piv)
        if binding.reuse_nonce and not fresh_piv:
            n = nonce(self.common_iv, binding.kid, binding.piv)
            value = b""
        else:
            piv = piv_bytes(self.sequence.take())
            n = nonce(self.common_iv, self.config.sender_id, piv)
            value = OscoreOption(piv).encode()
        outer.append((OSCORE_OPTION, value))
        code = Code.CONTENT if binding.outer_code == Code.FETCH else Code.CHANGED
        return Message(
            message.type,
            code,
            message.mid,
            message.token,
            _merge(outer, []),
            self._seal.encrypt(n, plaintext, ext),
        )

    def unprotect_response(self, message: Message, binding: RequestBinding) -> tuple[Message, int | None]:
        """The response inside an OSCORE response to the request of ``binding`` (RFC 8613
        §8.4) and its Partial IV as a number (None when it reused the request's nonce), which
        orders notifications (§7.4.1); an ``OscoreError`` when it does not verify."""
        option = OscoreOption.decode(_option_value(message))
        if option.kid is not None and option.kid != self.config.recipient_id:
            raise OscoreContextNotFound("Security context not found")
        if option.piv is None:
            n = nonce(self.common_iv, binding.kid, binding.piv)
            seq = None
        else:
            n = nonce(self.common_iv, self.config.recipient_id, option.piv)
            seq = int.from_bytes(option.piv, "big")
        try:
            plaintext = self._open.decrypt(n, message.payload, aad(binding.kid, binding.piv))
        except (InvalidTag, ValueError):
            raise OscoreDecryptFailed("Decryption failed") from None
        inner = _parse_plaintext(plaintext)
        options = [(n_, v) for n_, v in inner.options if n_ != _OBSERVE]
        observe = message.option(_OBSERVE)
        if observe is not None:
            options.append((_OBSERVE, observe))
        plain = Message(
            message.type, inner.code, message.mid, message.token, _merge(options, []), inner.payload
        )
        return plain, seq


def _option_value(message: Message) -> bytes:
    value = message.option(OSCORE_OPTION)
    if value is None:
        raise OscoreOptionError("not an OSCORE message: no OSCORE option")
    return value
