"""The ECDHE key exchange of ECDHE_ECDSA (RFC 8422 §5.4, §5.7, §5.10; RFC 5246 §4.7) and of
ECDHE_PSK (RFC 5489 §2): known answers, byte layouts, round trips, hostile points and
signatures, and fuzzed parsers."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import BadSignature, HandshakeFormatError, InvalidPeerKey, ProtocolError
from lwm2m.tls.keyexchange import (
    ECDSA_SECP256R1_SHA256,
    SECP256R1,
    DigitallySigned,
    EcdhClientKeyExchange,
    EcdheKeyPair,
    EcdheServerKeyExchange,
    ServerEcdhParams,
    ecdsa_sign,
    ecdsa_verify,
    load_point,
    server_params_content,
)
from lwm2m.tls.messages import ClientKeyExchange, ServerKeyExchange
from lwm2m.tls.prf import ecdhe_psk_premaster_secret

# RFC 5903 §8.1, the 256-bit random ECP group: the initiator's and responder's private values,
# their public points and the shared x coordinate.
I_PRIVATE = 0xC88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433
GI = bytes.fromhex(
    "04DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"
    "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3"
)
R_PRIVATE = 0xC6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53
GR = bytes.fromhex(
    "04D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"
    "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB"
)
GIR = bytes.fromhex("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")


def _pair(value: int) -> EcdheKeyPair:
    return EcdheKeyPair(ec.derive_private_key(value, ec.SECP256R1()))


def test_ecdh_premaster_secret_known_answer_rfc_5903() -> None:
    initiator, responder = _pair(I_PRIVATE), _pair(R_PRIVATE)
    assert initiator.point == GI and responder.point == GR
    # RFC 8422 §5.10: the premaster secret is the x coordinate of the shared point.
    assert initiator.shared_secret(GR) == GIR == responder.shared_secret(GI)


def test_fresh_key_pairs_agree() -> None:
    a, b = EcdheKeyPair(), EcdheKeyPair()
    assert len(a.point) == 65 and a.point[0] == 4
    assert a.shared_secret(b.point) == b.shared_secret(a.point)
    assert a.point != b.point


def test_server_key_exchange_layout() -> None:
    params = ServerEcdhParams(SECP256R1, GI)
    signed = DigitallySigned(ECDSA_SECP256R1_SHA256, b"\x30\x06\x02\x01\x01\x02\x01\x02")
    body = EcdheServerKeyExchange(params, signed).to_bytes()
    # curve_type named_curve, secp256r1, point<1..2^8-1>, then sha256/ecdsa and signature<0..2^16-1>.
    assert body == b"\x03\x00\x17\x41" + GI + b"\x04\x03\x00\x08" + signed.signature
    assert EcdheServerKeyExchange.parse(body) == EcdheServerKeyExchange(params, signed)
    assert server_params_content(b"c" * 32, b"s" * 32, params) == b"c" * 32 + b"s" * 32 + body[:69]


def test_client_key_exchange_layout() -> None:
    assert EcdhClientKeyExchange(GR).to_bytes() == b"\x41" + GR
    assert EcdhClientKeyExchange.parse(b"\x41" + GR) == EcdhClientKeyExchange(GR)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x01\x00\x17\x41" + GI + b"\x04\x03\x00\x00",  # explicit_prime curve type
        b"\x03\x00\x17\x00\x04\x03\x00\x00",  # an empty point
        b"\x03\x00\x17\x41" + GI[:-1],  # truncated point
        b"\x03\x00\x17\x41" + GI + b"\x04\x03\x00\x09\x30",  # signature shorter than its length
        b"\x03\x00\x17\x41" + GI + b"\x04\x03\x00\x00\x00",  # a byte after the end
    ],
)
def test_malformed_server_key_exchange_is_refused(body: bytes) -> None:
    with pytest.raises(HandshakeFormatError):
        EcdheServerKeyExchange.parse(body)


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x41" + GR[:-1], b"\x41" + GR + b"\x00"])
def test_malformed_client_key_exchange_is_refused(body: bytes) -> None:
    with pytest.raises(HandshakeFormatError):
        EcdhClientKeyExchange.parse(body)


@pytest.mark.parametrize(
    "point",
    [
        GI[:33],  # compressed length
        b"\x02" + GI[1:33],  # a compressed point: RFC 8422 §5.1.2 keeps uncompressed only
        b"\x04" + bytes(64),  # (0, 0) is not on the curve
        GI[:-1] + bytes([GI[-1] ^ 1]),  # y off by one: off the curve
        b"\x05" + GI[1:],
    ],
)
def test_a_point_that_is_not_an_uncompressed_p256_point_is_refused(point: bytes) -> None:
    with pytest.raises(InvalidPeerKey):
        load_point(point)
    with pytest.raises(InvalidPeerKey):
        EcdheKeyPair().shared_secret(point)


def test_signatures_verify_and_tampering_is_caught() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signed = ecdsa_sign(key, b"content")
    assert signed.algorithm == ECDSA_SECP256R1_SHA256
    ecdsa_verify(key.public_key(), b"content", signed)
    assert DigitallySigned.parse(signed.to_bytes()) == signed
    with pytest.raises(BadSignature):
        ecdsa_verify(key.public_key(), b"other content", signed)
    with pytest.raises(BadSignature):
        ecdsa_verify(ec.generate_private_key(ec.SECP256R1()).public_key(), b"content", signed)
    with pytest.raises(BadSignature, match="was not offered"):
        ecdsa_verify(key.public_key(), b"content", DigitallySigned(0x0203, signed.signature))  # sha1
    with pytest.raises(BadSignature):
        ecdsa_verify(key.public_key(), b"content", DigitallySigned(ECDSA_SECP256R1_SHA256, b"\x30\x00"))
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(BadSignature, match="secp384r1"):
        ecdsa_verify(p384.public_key(), b"content", ecdsa_sign(p384, b"content"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_format_error(data: bytes) -> None:
    for parse in (EcdheServerKeyExchange.parse, EcdhClientKeyExchange.parse, DigitallySigned.parse):
        # What parses serializes back to the same bytes.
        with contextlib.suppress(ProtocolError):
            assert parse(data).to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=80))
def test_any_point_gives_a_secret_or_invalid_peer_key(point: bytes) -> None:
    with contextlib.suppress(InvalidPeerKey):
        assert len(EcdheKeyPair().shared_secret(point)) == 32


# --- ECDHE_PSK (RFC 5489 §2) ------------------------------------------------------------------------


def test_ecdhe_psk_server_key_exchange_layout() -> None:
    # psk_identity_hint<0..2^16-1>, then ServerECDHParams unsigned: written out by hand.
    params = ServerEcdhParams(SECP256R1, GR)
    body = b"\x00\x05lwm2m" + b"\x03\x00\x17\x41" + GR
    exchange = ServerKeyExchange(b"lwm2m", params.to_bytes())
    assert exchange.to_bytes() == body
    parsed = ServerKeyExchange.parse(body)
    assert parsed.psk_identity_hint == b"lwm2m"
    assert ServerEcdhParams.parse(parsed.params) == params


def test_ecdhe_psk_client_key_exchange_layout() -> None:
    body = b"\x00\x03dev" + b"\x41" + GI
    parsed = ClientKeyExchange.parse(body)
    assert parsed.psk_identity == b"dev"
    assert EcdhClientKeyExchange.parse(parsed.exchange_keys).point == GI
    assert ClientKeyExchange(b"dev", EcdhClientKeyExchange(GI).to_bytes()).to_bytes() == body


def test_ecdhe_psk_premaster_secret_known_answer() -> None:
    # RFC 5489 §2: the premaster secret of ECDHE_PSK is Z (RFC 5903's shared x) and the PSK,
    # each with a uint16 length.
    initiator = EcdheKeyPair(ec.derive_private_key(I_PRIVATE, ec.SECP256R1()))
    z = initiator.shared_secret(GR)
    assert ecdhe_psk_premaster_secret(z, b"\x01" * 16) == b"\x00\x20" + GIR + b"\x00\x10" + b"\x01" * 16


@pytest.mark.parametrize(
    "params",
    [b"", b"\x03\x00\x17", b"\x03\x00\x17\x41" + GR + b"\x00", b"\x01\x00\x17\x41" + GR, b"\x03\x00\x17\x00"],
    ids=["empty", "no-point", "trailing-byte", "explicit-prime", "empty-point"],
)
def test_malformed_ecdhe_psk_params_are_refused(params: bytes) -> None:
    with pytest.raises(HandshakeFormatError):
        ServerEcdhParams.parse(params)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_any_ecdhe_psk_params_parse_or_raise_a_format_error(data: bytes) -> None:
    with contextlib.suppress(HandshakeFormatError):
        params = ServerEcdhParams.parse(data)
        assert params.to_bytes() == data
