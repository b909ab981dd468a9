"""The stateless cookie of RFC 6347 §4.2.1 (``lwm2m.tls.cookies``): bound to the client's address
and hello parameters, the previous secret still good after one rotation, rotation driven by the
``now`` passed in, the raw-bytes check on hellos from Mbed TLS (a peer we did not write) and on
our own, a full cookie exchange with Mbed TLS, and any bytes taken without an exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.mbedtls import drive, mbedtls_tls, psk_client

from lwm2m.errors import DtlsError
from lwm2m.tls.cookies import COOKIE_LENGTH, COOKIE_ROTATION, CookieChecker
from lwm2m.tls.messages import (
    ClientHello,
    ConnectionIdExtension,
    ExtendedMasterSecretExtension,
    HandshakeType,
    encode_handshake,
)
from lwm2m.tls.record import DTLS_1_2, HANDSHAKE, DtlsRecord

ADDRESS = b"192.0.2.1:5684"


def _datagram(hello: ClientHello, sequence: int = 7, message_seq: int = 0) -> bytes:
    message = encode_handshake(HandshakeType.CLIENT_HELLO, message_seq, hello.to_bytes())
    return DtlsRecord(HANDSHAKE, DTLS_1_2, 0, sequence, message).encode()


def _with_cookie(hello: bytes, cookie: bytes) -> bytes:
    # The same datagram with another cookie in its hello, all lengths fixed up.
    record, header, body = hello[:13], hello[13:25], hello[25:]
    at = 35 + body[34]
    body = body[:at] + bytes([len(cookie)]) + cookie + body[at + 1 + body[at] :]
    n = len(body).to_bytes(3, "big")
    header = header[:1] + n + header[4:6] + b"\0\0\0" + n
    return record[:11] + (12 + len(body)).to_bytes(2, "big") + header + body


def _cookie_of(verify: bytes) -> bytes:
    assert verify[0] == HANDSHAKE and verify[13] == HandshakeType.HELLO_VERIFY_REQUEST
    return verify[13 + 12 + 3 :]


def _mbedtls_hello() -> bytes:
    return drive(psk_client("dev-1", bytes(16)))


def test_cookie_binds_address_and_parameters_and_survives_one_rotation() -> None:
    checker = CookieChecker(b"k" * 32)
    hello = ClientHello(bytes(32), (0xC0A8,))
    cookie = checker.cookie(ADDRESS, hello)
    assert len(cookie) == COOKIE_LENGTH
    signed = ClientHello(bytes(32), (0xC0A8,), cookie=cookie)
    assert checker.check(ADDRESS, signed)
    assert not checker.check(b"198.51.100.1:5684", signed)
    assert not checker.check(ADDRESS, ClientHello(bytes(31) + b"\x01", (0xC0A8,), cookie=cookie))
    assert not checker.check(ADDRESS, ClientHello(bytes(32), (0xC0A8, 0x00AE), cookie=cookie))
    assert not checker.check(ADDRESS, ClientHello(bytes(32), (0xC0A8,), cookie=cookie[:-1]))
    checker.rotate(b"n" * 32)
    assert checker.check(ADDRESS, signed)  # made under the previous secret: still good
    checker.rotate(b"m" * 32)
    assert not checker.check(ADDRESS, signed)
    with pytest.raises(DtlsError):
        CookieChecker(b"short")
    with pytest.raises(DtlsError):
        CookieChecker(previous=b"short")
    with pytest.raises(DtlsError):
        checker.rotate(b"short")
    with pytest.raises(DtlsError):
        CookieChecker(rotation=0.0)


def test_two_checkers_make_different_cookies_and_a_secret_gives_the_same() -> None:
    hello = ClientHello(bytes(32), (0xC0A8,))
    assert CookieChecker().cookie(ADDRESS, hello) != CookieChecker().cookie(ADDRESS, hello)
    assert CookieChecker(b"s" * 16).cookie(ADDRESS, hello) == CookieChecker(b"s" * 16).cookie(ADDRESS, hello)


def test_rotation_follows_the_now_passed_in() -> None:
    secrets = iter(bytes([i]) * 32 for i in range(1, 10))
    checker = CookieChecker(b"k" * 32, rotation=10.0, random=lambda n: next(secrets))
    hello = ClientHello(bytes(32), (0xC0A8,))
    signed = ClientHello(bytes(32), (0xC0A8,), cookie=checker.cookie(ADDRESS, hello))
    checker.rotate_if_due(100.0)  # the first time seen: counting starts
    checker.rotate_if_due(109.9)
    assert checker.cookie(ADDRESS, hello) == signed.cookie
    checker.rotate_if_due(110.0)
    assert checker.cookie(ADDRESS, hello) != signed.cookie and checker.check(ADDRESS, signed)
    checker.rotate_if_due(50.0)  # a clock set back: counting starts again from there
    checker.rotate_if_due(59.0)
    assert checker.check(ADDRESS, signed)
    checker.rotate_if_due(60.0)
    assert not checker.check(ADDRESS, signed)
    # Without a rotation interval the secret changes only when asked.
    fixed = CookieChecker(b"k" * 32)
    before = fixed.cookie(ADDRESS, hello)
    fixed.rotate_if_due(0.0)
    fixed.rotate_if_due(1e9)
    assert fixed.cookie(ADDRESS, hello) == before


@given(st.binary(max_size=32), st.binary(max_size=255), st.binary(max_size=16))
def test_the_cookie_of_a_received_hello_is_the_cookie_of_its_fields(
    session_id: bytes, cookie: bytes, cid: bytes
) -> None:
    # The cookie is cut out of the bytes received rather than the hello encoded again; both
    # give the same cookie, and the raw-bytes check of a datagram agrees with the parsed one.
    checker = CookieChecker(b"k" * 32, previous=b"p" * 32)
    extensions = (ExtendedMasterSecretExtension(), ConnectionIdExtension(cid))
    hello = ClientHello(bytes(range(32)), (0xC0A8,), session_id, cookie, extensions=extensions)
    body = hello.to_bytes()
    assert checker.cookie(ADDRESS, hello, body) == checker.cookie(ADDRESS, hello)
    verify = checker.answer(_datagram(hello), ADDRESS)
    assert verify is not None and _cookie_of(verify) == checker.cookie(ADDRESS, hello)
    signed = ClientHello(
        hello.random, hello.cipher_suites, session_id, checker.cookie(ADDRESS, hello), extensions=extensions
    )
    assert checker.check(ADDRESS, signed, signed.to_bytes())
    assert checker.answer(_datagram(signed), ADDRESS) is None


def test_raw_bytes_of_an_mbedtls_hello_bind_the_address_and_survive_one_rotation() -> None:
    checker = CookieChecker(rotation=COOKIE_ROTATION)
    hello = _mbedtls_hello()
    verify = checker.answer(hello, b"a|1", 0.0)
    assert verify is not None
    assert verify[5:11] == hello[5:11]  # the hello's record sequence number: no counter kept
    second = _with_cookie(hello, _cookie_of(verify))
    assert checker.answer(second, b"a|1", 1.0) is None
    assert checker.answer(second, b"a|2", 1.0) not in (None, b"")  # another address
    assert checker.answer(second, b"a|1", COOKIE_ROTATION) is None  # the previous secret counts
    assert checker.answer(second, b"a|1", 2 * COOKIE_ROTATION) is not None
    # Fragmented, cut or altered hellos: nothing, or a new HelloVerifyRequest; never accepted.
    for cut in range(len(hello)):
        assert checker.answer(hello[:cut], b"a|1") == b""
    fresh = CookieChecker(b"k" * 32)
    second = _with_cookie(hello, _cookie_of(fresh.answer(hello, b"a|1") or b""))
    assert fresh.answer(second, b"a|1") is None
    for at in range(25, len(second)):
        changed = second[:at] + bytes([second[at] ^ 1]) + second[at + 1 :]
        assert fresh.answer(changed, b"a|1") is not None, at
    assert fresh.answer(b"\x17" + second[1:], b"a|1") == b""  # not a handshake record


def test_an_mbedtls_client_completes_the_cookie_exchange() -> None:
    """Mbed TLS takes our HelloVerifyRequest and repeats its hello with the cookie."""
    tls = mbedtls_tls()
    checker = CookieChecker()
    client = psk_client("dev-1", bytes(16))
    first = drive(client)
    verify = checker.answer(first, ADDRESS, 0.0)
    assert verify
    client.receive_from_network(verify)
    try:
        second = drive(client)
    except tls.HelloVerifyRequest:  # some versions report it before writing the new hello
        second = drive(client)
    assert checker.answer(second, ADDRESS, 1.0) is None
    assert checker.answer(second, b"elsewhere", 1.0) not in (None, b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 120))
def test_the_raw_bytes_check_takes_any_bytes(data: bytes, keep: int) -> None:
    hello = _datagram(ClientHello(bytes(32), (0xC0A8,), extensions=(ExtendedMasterSecretExtension(),)))
    checker = CookieChecker(b"k" * 32)
    for datagram in (data, hello[:keep] + data, hello[:25] + data):
        answer = checker.answer(datagram, b"x")
        assert answer is None or isinstance(answer, bytes)


def test_a_body_whose_lengths_do_not_fit_never_checks_out() -> None:
    checker = CookieChecker(b"k" * 32)
    hello = ClientHello(bytes(32), (0xC0A8,), cookie=bytes(32))
    for body in (b"", bytes(34), bytes(34) + b"\x05", bytes(35) + b"\x09"):
        assert not checker.check(ADDRESS, hello, body)
        with pytest.raises(DtlsError):
            checker.cookie(ADDRESS, hello, body)
