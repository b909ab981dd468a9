"""Stateless cookies for HelloVerifyRequest (RFC 6347 §4.2.1), the one implementation for the
engine's ``DtlsConnection`` and the transport's session layer.

RFC 6347 §4.2.1 asks of a cookie that the server can check it without keeping state, that it
is bound to the client's address and to the parameters of its hello (so that a cookie seen
once is good only for that client and that hello), and that the secret behind it can change
without turning away a client in the middle of its exchange. Here:

- the cookie is HMAC-SHA256(secret, address length ‖ client address ‖ ClientHello body without
  its cookie field): the second hello repeats the first apart from the cookie (RFC 6347
  §4.2.1), so it checks out only from the address the first came from;
- :meth:`CookieChecker.rotate` (or :meth:`CookieChecker.rotate_if_due`, every ``rotation``
  seconds of the ``now`` the caller passes: no clock is read here) installs a new secret;
  cookies made under the previous one stay valid until the next rotation;
- cookies are compared with ``hmac.compare_digest``, under both secrets every time, so the time
  taken says nothing about which one matched;
- :meth:`CookieChecker.answer` works on a received datagram's bytes, without parsing the
  hello's extensions: a flood of ClientHellos costs a few slices and one HMAC each (RFC 6347
  §4.2.1's point: the exchange is there against a spoofed source), and a whole hello with a
  valid cookie is the only thing that goes further. The HelloVerifyRequest it makes takes the
  hello's record sequence number (RFC 6347 §4.2.1), so no counter is kept either.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Final

from lwm2m.errors import DtlsError
from lwm2m.tls.messages import ClientHello, HandshakeType, HelloVerifyRequest, encode_handshake
from lwm2m.tls.prf import HmacSha256
from lwm2m.tls.record import DTLS_1_0, DTLS_1_2, HANDSHAKE, DtlsRecord

__all__ = ["COOKIE_LENGTH", "COOKIE_ROTATION", "MIN_COOKIE_SECRET", "CookieChecker"]

MIN_COOKIE_SECRET: Final = 16
COOKIE_LENGTH: Final = 32  # a whole SHA-256 output; RFC 6347 §4.2.1 allows up to 255 bytes
COOKIE_ROTATION: Final = 300.0  # seconds between secrets, for a checker that rotates on its own
_SECRET_LENGTH: Final = 32
# A ClientHello body (RFC 6347 §4.2.1, RFC 5246 §7.4.1.2): client_version(2) random(32)
# session_id<0..32> cookie<0..255> cipher_suites compression_methods extensions.
_SESSION_ID_AT: Final = 2 + 32
# A ClientHello datagram: record header (13 bytes, RFC 6347 §4.1: the sequence number at
# 5..11, the length at 11..13), then the handshake header (12 bytes, RFC 6347 §4.2.2: type,
# length at 1..4, message_seq at 4..6, fragment_offset at 6..9, fragment_length at 9..12).
_RECORD_HEADER: Final = 13
_HANDSHAKE_HEADER: Final = 12
_BODY_AT: Final = _RECORD_HEADER + _HANDSHAKE_HEADER


def _without_cookie(body: bytes) -> bytes | None:
    """The hello's body with its cookie field cut out; None if the lengths do not fit."""
    if len(body) <= _SESSION_ID_AT:
        return None
    cookie_at = _SESSION_ID_AT + 1 + body[_SESSION_ID_AT]
    if cookie_at >= len(body):
        return None
    cookie_end = cookie_at + 1 + body[cookie_at]
    if cookie_end > len(body):
        return None
    return body[:cookie_at] + body[cookie_end:]


class CookieChecker:
    """Makes and checks the cookies of a server (RFC 6347 §4.2.1); one serves all its clients.

    ``secret`` (random when not given) and ``previous`` need at least ``MIN_COOKIE_SECRET``
    bytes. With ``rotation`` (seconds) :meth:`rotate_if_due` and :meth:`answer` change the
    secret for a fresh one from ``random`` once that long has passed since the first ``now``
    seen or the last rotation; without it the secret changes only by :meth:`rotate`.
    """

    __slots__ = ("_previous", "_random", "_rotated", "_secret", "rotation")
    # The secrets are kept as prepared HMAC keys (``HmacSha256``): a hello costs its MACs only.

    def __init__(
        self,
        secret: bytes | None = None,
        previous: bytes | None = None,
        *,
        rotation: float | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if rotation is not None and not rotation > 0:
            raise DtlsError("a cookie rotation interval must be positive")
        self._random = random
        self._secret = self._checked(random(_SECRET_LENGTH) if secret is None else secret)
        self._previous = self._checked(previous) if previous is not None else None
        self._rotated: float | None = None
        self.rotation = rotation

    @staticmethod
    def _checked(secret: bytes) -> HmacSha256:
        if len(secret) < MIN_COOKIE_SECRET:
            raise DtlsError(f"a cookie secret needs at least {MIN_COOKIE_SECRET} bytes")
        return HmacSha256(bytes(secret))

    def rotate(self, secret: bytes | None = None) -> None:
        """Make ``secret`` (random when not given) the current secret; the current one becomes
        the previous one, still accepted until the next rotation."""
        new = self._checked(self._random(_SECRET_LENGTH) if secret is None else secret)
        self._previous, self._secret = self._secret, new

    def rotate_if_due(self, now: float) -> None:
        """Rotate when ``rotation`` seconds have passed (a clock set back counts from now)."""
        if self.rotation is None:
            return
        if self._rotated is None or now < self._rotated:
            self._rotated = now
        elif now - self._rotated >= self.rotation:
            self.rotate()
            self._rotated = now

    @staticmethod
    def _mac(secret: HmacSha256, address: bytes, parameters: bytes) -> bytes:
        message = len(address).to_bytes(2, "big") + address + parameters
        return secret.digest(message)[:COOKIE_LENGTH]

    def _valid(self, address: bytes, parameters: bytes, cookie: bytes) -> bool:
        if len(cookie) != COOKIE_LENGTH:
            return False
        ok = hmac.compare_digest(self._mac(self._secret, address, parameters), cookie)
        if self._previous is not None:
            # Both compared every time, so the time taken does not say which secret matched.
            ok |= hmac.compare_digest(self._mac(self._previous, address, parameters), cookie)
        return ok

    @staticmethod
    def _parameters(hello: ClientHello, body: bytes | None) -> bytes:
        # With the hello's bytes as received the cookie is cut out of them rather than the
        # hello encoded again; both give the same bytes.
        parameters = _without_cookie(body if body is not None else hello.to_bytes())
        if parameters is None:
            raise DtlsError("a ClientHello body whose lengths do not fit")
        return parameters

    def cookie(self, address: bytes, hello: ClientHello, body: bytes | None = None) -> bytes:
        """The cookie for this client address and hello, under the current secret. ``body`` is
        the hello as received, when there is one (ClientHello.parse has checked its lengths)."""
        return self._mac(self._secret, address, self._parameters(hello, body))

    def check(self, address: bytes, hello: ClientHello, body: bytes | None = None) -> bool:
        """True if the hello carries a cookie made for this address and these parameters; False
        for a ``body`` whose lengths do not fit (nothing a parsed hello gives)."""
        parameters = _without_cookie(body if body is not None else hello.to_bytes())
        return parameters is not None and self._valid(address, parameters, hello.cookie)

    def answer(self, datagram: bytes, address: bytes, now: float | None = None) -> bytes | None:
        """For a datagram as received from ``address``: None when it is one whole ClientHello
        (the first record, unfragmented) with a valid cookie; else the HelloVerifyRequest record
        to send, or b"" for anything that is no whole ClientHello (nothing is answered). With
        ``now`` the secret rotates first when due."""
        if now is not None:
            self.rotate_if_due(now)
        n = len(datagram)
        if n <= _BODY_AT or datagram[0] != HANDSHAKE:
            return b""
        if datagram[_RECORD_HEADER] != HandshakeType.CLIENT_HELLO:
            return b""
        length = int.from_bytes(datagram[14:17], "big")
        end = _BODY_AT + length
        # Unfragmented (offset 0, fragment length = length) and within the record and the
        # datagram: the cookie exchange needs the whole hello (RFC 6347 §4.2.1).
        if (
            datagram[19:22] != b"\0\0\0"
            or int.from_bytes(datagram[22:25], "big") != length
            or end > min(n, _RECORD_HEADER + int.from_bytes(datagram[11:13], "big"))
        ):
            return b""
        body = datagram[_BODY_AT:end]
        parameters = _without_cookie(body)
        if parameters is None:
            return b""
        cookie_at = _SESSION_ID_AT + 1 + body[_SESSION_ID_AT]
        if self._valid(address, parameters, body[cookie_at + 1 : cookie_at + 1 + body[cookie_at]]):
            return None
        verify = HelloVerifyRequest(self._mac(self._secret, address, parameters), server_version=DTLS_1_0)
        message_seq = int.from_bytes(datagram[17:19], "big")
        message = encode_handshake(HandshakeType.HELLO_VERIFY_REQUEST, message_seq, verify.to_bytes())
        sequence = int.from_bytes(datagram[5:11], "big")
        return DtlsRecord(HANDSHAKE, DTLS_1_2, 0, sequence, message).encode()
