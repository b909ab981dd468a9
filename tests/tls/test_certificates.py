"""Certificates and raw public keys (RFC 5246 §7.4.2, §7.4.4; RFC 7250 §3, §4): message layouts,
the certificate type negotiation, and the check of a peer's chain or key with
``cryptography.x509.verification``, LwM2M certificate usage 1 and 3 included."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.certificates import NOW, CertificateAuthority, Issued, p256, rpk_credentials

from lwm2m.errors import (
    CertificateRejected,
    CertificateTypeMismatch,
    DtlsError,
    HandshakeFormatError,
    ProtocolError,
    UnknownCertificateAuthority,
)
from lwm2m.tls.certificates import (
    CertificateCredentials,
    CertificateMessage,
    CertificateRequest,
    CertificateType,
    CertificateUsage,
    PeerCredentials,
    answered_types,
    choose_types,
    offered_types,
    spki_der,
)
from lwm2m.tls.messages import (
    ClientCertificateTypeExtension,
    ServerCertificateTypeExtension,
    parse_extensions,
    serialize_extensions,
)

X509, RPK = CertificateType.X509, CertificateType.RAW_PUBLIC_KEY
CA = CertificateAuthority("Test CA")
OTHER_CA = CertificateAuthority("Other CA")
INTERMEDIATE = CertificateAuthority("Intermediate CA", parent=CA)
SERVER = CA.issue("lwm2m.example", dns_names=("lwm2m.example",), usage="server")
CLIENT = CA.issue("urn:imei:490154203237518")
OWN = CA.issue("ours")


def _der(issued: Issued) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in issued.chain)


def _x509(issued: Issued) -> CertificateMessage:
    return CertificateMessage(X509, _der(issued))


def _checker(**options: object) -> CertificateCredentials:
    options.setdefault("trust_anchors", (CA.certificate,))
    return OWN.credentials(**options)


# --- messages --------------------------------------------------------------------------------


def test_certificate_layout_x509_and_raw_public_key() -> None:
    # RFC 5246 §7.4.2: a 3-byte list length, each certificate with its own 3-byte length.
    assert CertificateMessage(X509, (b"AB", b"C")).to_bytes() == b"\x00\x00\x09\x00\x00\x02AB\x00\x00\x01C"
    assert CertificateMessage(X509, ()).to_bytes() == b"\x00\x00\x00"
    # RFC 7250 §3: the SubjectPublicKeyInfo alone, one 3-byte length.
    assert CertificateMessage(RPK, (b"SPKI",)).to_bytes() == b"\x00\x00\x04SPKI"
    for message in (_x509(SERVER), CertificateMessage(RPK, (SERVER.spki,)), CertificateMessage(X509, ())):
        assert CertificateMessage.parse(message.to_bytes(), message.certificate_type) == message


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"\x00\x00\x06\x00\x00\x02AB", X509),  # list longer than the bytes
        (b"\x00\x00\x03\x00\x00\x00", X509),  # an empty certificate (ASN.1Cert<1..2^24-1>)
        (b"\x00\x00\x00\x00", X509),  # a byte after the list
        (b"\x00\x00\x00", RPK),  # an empty key
        (b"\x00\x00\x02A", RPK),
        (b"\x00\x00\x2c" + b"\x00\x00\x01A" * 11, X509),  # more certificates than we take
    ],
)
def test_malformed_certificate_messages_are_refused(body: bytes, kind: CertificateType) -> None:
    with pytest.raises(HandshakeFormatError):
        CertificateMessage.parse(body, kind)


def test_certificate_request_layout() -> None:
    request = CertificateRequest(authorities=(b"DN",))
    # ecdsa_sign (64); sha256/ecdsa (4, 3); one DistinguishedName.
    assert request.to_bytes() == b"\x01\x40\x00\x02\x04\x03\x00\x04\x00\x02DN"
    assert CertificateRequest.parse(request.to_bytes()) == request
    assert CertificateRequest().to_bytes() == b"\x01\x40\x00\x02\x04\x03\x00\x00"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00\x02\x04\x03\x00\x00",  # no certificate type
        b"\x01\x40\x00\x03\x04\x03\x01\x00\x00",  # an odd algorithm list
        b"\x01\x40\x00\x02\x04\x03",  # no certificate_authorities
    ],
)
def test_malformed_certificate_requests_are_refused(body: bytes) -> None:
    with pytest.raises(HandshakeFormatError):
        CertificateRequest.parse(body)


def test_certificate_type_extensions_list_and_answer_forms() -> None:
    # RFC 7250 §3: a list in the ClientHello, one type in the ServerHello.
    offer = (ClientCertificateTypeExtension((2, 0)), ServerCertificateTypeExtension((2,)))
    assert serialize_extensions(offer) == b"\x00\x0d\x00\x13\x00\x03\x02\x02\x00\x00\x14\x00\x02\x01\x02"
    assert parse_extensions(serialize_extensions(offer)[2:]) == offer
    answer = (ClientCertificateTypeExtension((2,), answer=True), ServerCertificateTypeExtension((0,), True))
    assert serialize_extensions(answer) == b"\x00\x0a\x00\x13\x00\x01\x02\x00\x14\x00\x01\x00"
    assert parse_extensions(serialize_extensions(answer)[2:]) == answer
    with pytest.raises(HandshakeFormatError):
        ClientCertificateTypeExtension((0, 2), answer=True).data()
    for bad in (b"", b"\x00\x00", b"\x02\x02"):
        with pytest.raises(HandshakeFormatError):
            ServerCertificateTypeExtension.parse_data(bad)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), kind=st.sampled_from([X509, RPK]))
def test_any_bytes_parse_or_raise_a_format_error(data: bytes, kind: CertificateType) -> None:
    for parse in (lambda b: CertificateMessage.parse(b, kind), CertificateRequest.parse):
        with contextlib.suppress(ProtocolError):
            assert parse(data).to_bytes() == data
    for extension in (ClientCertificateTypeExtension, ServerCertificateTypeExtension):
        with contextlib.suppress(ProtocolError):
            assert extension.parse_data(data).data() == data


# --- credentials ----------------------------------------------------------------------------


def test_credentials_are_checked_on_construction() -> None:
    with pytest.raises(DtlsError, match="secp256r1"):
        CertificateCredentials(private_key=ec.generate_private_key(ec.SECP384R1()), raw_public_key=True)
    with pytest.raises(DtlsError, match="chain is needed"):
        CertificateCredentials(private_key=p256())
    with pytest.raises(DtlsError, match="not for the private key"):
        CertificateCredentials(private_key=p256(), certificate_chain=SERVER.chain)
    with pytest.raises(DtlsError, match="1 or 3"):
        rpk_credentials(p256(), certificate_usage=2, server_certificate=SERVER.certificate)
    with pytest.raises(DtlsError, match="pins"):
        rpk_credentials(p256(), certificate_usage=3)
    with pytest.raises(DtlsError, match="neither"):
        rpk_credentials(p256(), expected_name="\u00e9.example")  # not an A-label


def test_own_certificate_and_types() -> None:
    both = OWN.credentials(
        raw_public_key=True, peer_public_keys=frozenset({b"k"}), trust_anchors=(CA.certificate,)
    )
    assert both.own_types() == (RPK, X509) and both.peer_types() == (RPK, X509)
    assert both.own_certificate(RPK) == CertificateMessage(RPK, (OWN.spki,))
    assert both.own_certificate(X509) == _x509(OWN)
    assert OWN.spki == spki_der(OWN.key.public_key())


# --- the certificate type negotiation (RFC 7250 §4) ------------------------------------------


def test_a_pure_x509_client_sends_no_certificate_type_extensions() -> None:
    assert offered_types(_checker()) == (None, None)
    rpk = rpk_credentials(p256(), peer_public_keys=frozenset({b"k"}))
    offer = (ClientCertificateTypeExtension((RPK,)), ServerCertificateTypeExtension((RPK,)))
    assert offered_types(rpk) == offer


def test_the_server_chooses_types_both_can_use() -> None:
    rpk_server = rpk_credentials(p256(), peer_public_keys=frozenset({b"k"}))
    offer = (ClientCertificateTypeExtension((RPK,)), ServerCertificateTypeExtension((RPK,)))
    assert choose_types(rpk_server, *offer) == (RPK, RPK)
    assert choose_types(_checker(), None, None) == (X509, X509)  # no extensions: X.509
    with pytest.raises(CertificateTypeMismatch):
        choose_types(_checker(), *offer)  # the server checks no raw keys and has none
    with pytest.raises(CertificateTypeMismatch):
        choose_types(rpk_server, None, None)  # the client can take X.509 only


def test_the_client_takes_only_answers_it_offered() -> None:
    rpk = rpk_credentials(p256(), peer_public_keys=frozenset({b"k"}))
    answer = (ClientCertificateTypeExtension((RPK,), True), ServerCertificateTypeExtension((RPK,), True))
    assert answered_types(rpk, *answer) == (RPK, RPK)
    with pytest.raises(CertificateTypeMismatch):
        answered_types(rpk, None, None)  # X.509 was not offered
    with pytest.raises(CertificateTypeMismatch):
        answered_types(rpk, ClientCertificateTypeExtension((RPK, X509)), None)  # a list, not an answer
    with pytest.raises(CertificateTypeMismatch):
        answered_types(rpk, ClientCertificateTypeExtension((1,), True), None)  # OpenPGP


# --- the peer's chain or key -----------------------------------------------------------------


def test_a_client_chain_from_a_trust_anchor_gives_its_common_name() -> None:
    peer = _checker().check_peer(_x509(CLIENT), peer_is_server=False)
    assert peer == PeerCredentials(X509, CLIENT.spki, "urn:imei:490154203237518", _der(CLIENT))
    assert peer.identity == b"urn:imei:490154203237518"


def test_the_name_is_the_first_dns_san_without_a_common_name() -> None:
    issued = CA.issue(None, dns_names=("dev1.example", "dev2.example"))
    assert _checker().check_peer(_x509(issued), peer_is_server=False).name == "dev1.example"
    bare = CA.issue(None)
    assert _checker().check_peer(_x509(bare), peer_is_server=False).identity == bare.spki


def test_a_chain_through_an_intermediate_validates() -> None:
    issued = INTERMEDIATE.issue("behind an intermediate")
    assert len(issued.chain) == 2
    assert _checker().check_peer(_x509(issued), peer_is_server=False).name == "behind an intermediate"
    # Without the intermediate the path cannot be built.
    with pytest.raises(UnknownCertificateAuthority):
        _checker().check_peer(CertificateMessage(X509, _der(issued)[:1]), peer_is_server=False)


@pytest.mark.parametrize("peer_is_server", [False, True])
def test_an_untrusted_chain_is_an_unknown_ca(peer_is_server: bool) -> None:
    stranger = OTHER_CA.issue("lwm2m.example", dns_names=("lwm2m.example",), usage="server")
    with pytest.raises(UnknownCertificateAuthority):
        _checker().check_peer(_x509(stranger), peer_is_server=peer_is_server)
    with pytest.raises(UnknownCertificateAuthority, match="no trust anchors"):
        _checker(trust_anchors=()).check_peer(_x509(stranger), peer_is_server=peer_is_server)


def test_an_expired_certificate_is_refused() -> None:
    later = _checker(validation_time=lambda: NOW + dt.timedelta(days=400))
    with pytest.raises(UnknownCertificateAuthority):
        later.check_peer(_x509(CLIENT), peer_is_server=False)


def test_a_server_certificate_is_checked_against_the_expected_name() -> None:
    assert _checker(expected_name="lwm2m.example").check_peer(_x509(SERVER), peer_is_server=True).name
    # A trusted chain for another name: bad_certificate, not unknown_ca.
    with pytest.raises(CertificateRejected, match=r"not for other\.example") as caught:
        _checker(expected_name="other.example").check_peer(_x509(SERVER), peer_is_server=True)
    assert not isinstance(caught.value, UnknownCertificateAuthority)
    # A client certificate (clientAuth only, no subjectAltName) does not pass as a named server's.
    with pytest.raises(CertificateRejected):
        _checker(expected_name="urn").check_peer(_x509(CLIENT), peer_is_server=True)


def test_a_client_certificate_for_server_auth_only_is_refused() -> None:
    with pytest.raises(UnknownCertificateAuthority):
        _checker().check_peer(_x509(SERVER), peer_is_server=False)


def test_certificate_usage_3_pins_the_server_certificate_without_a_chain() -> None:
    self_signed = OTHER_CA.issue("pinned", usage="server")
    pinned = _checker(trust_anchors=(), certificate_usage=3, server_certificate=self_signed.certificate)
    assert pinned.check_peer(_x509(self_signed), peer_is_server=True).name == "pinned"
    with pytest.raises(CertificateRejected, match="pinned"):
        pinned.check_peer(_x509(SERVER), peer_is_server=True)


def test_certificate_usage_1_pins_and_validates() -> None:
    usage = CertificateUsage.SERVICE_CERTIFICATE_CONSTRAINT
    pinned = _checker(certificate_usage=usage, server_certificate=SERVER.certificate)
    assert pinned.check_peer(_x509(SERVER), peer_is_server=True).name == "lwm2m.example"
    stranger = OTHER_CA.issue("pinned", usage="server")
    untrusted = _checker(certificate_usage=usage, server_certificate=stranger.certificate)
    with pytest.raises(UnknownCertificateAuthority):
        untrusted.check_peer(_x509(stranger), peer_is_server=True)


def test_the_policy_callback_has_the_last_word() -> None:
    seen: list[PeerCredentials] = []

    def accept(peer: PeerCredentials) -> bool:
        seen.append(peer)
        return peer.name == "urn:imei:490154203237518"

    assert _checker(accept=accept).check_peer(_x509(CLIENT), peer_is_server=False)
    with pytest.raises(CertificateRejected, match="policy"):
        _checker(accept=accept).check_peer(_x509(OWN), peer_is_server=False)
    assert [p.name for p in seen] == ["urn:imei:490154203237518", "ours"]


def test_raw_public_keys_known_or_accepted() -> None:
    key = p256()
    spki = spki_der(key.public_key())
    message = CertificateMessage(RPK, (spki,))
    known = rpk_credentials(p256(), peer_public_keys=frozenset({spki}))
    assert known.check_peer(message, peer_is_server=False) == PeerCredentials(RPK, spki)
    assert known.check_peer(message, peer_is_server=False).identity == spki
    looked_up = rpk_credentials(p256(), accept=lambda peer: peer.public_key == spki)
    assert looked_up.check_peer(message, peer_is_server=False).public_key == spki
    with pytest.raises(UnknownCertificateAuthority):
        known.check_peer(CertificateMessage(RPK, (OWN.spki,)), peer_is_server=False)


@pytest.mark.parametrize(
    "entry",
    [
        b"\x30\x03\x02\x01\x01",
        spki_der(ec.generate_private_key(ec.SECP384R1()).public_key()),
        b"not DER at all",
    ],
)
def test_a_malformed_or_foreign_raw_public_key_is_a_bad_certificate(entry: bytes) -> None:
    checker = rpk_credentials(p256(), accept=lambda peer: True)
    with pytest.raises(CertificateRejected) as caught:
        checker.check_peer(CertificateMessage(RPK, (entry,)), peer_is_server=False)
    assert not isinstance(caught.value, UnknownCertificateAuthority)


def test_malformed_or_foreign_certificates_are_bad_certificates() -> None:
    with pytest.raises(CertificateRejected, match="no certificate"):
        _checker().check_peer(CertificateMessage(X509, ()), peer_is_server=False)
    with pytest.raises(CertificateRejected, match="malformed"):
        _checker().check_peer(CertificateMessage(X509, (b"\x30\x03\x02\x01\x01",)), peer_is_server=False)
    p384 = CA.issue("p384", key=ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]
    with pytest.raises(CertificateRejected, match="secp256r1"):
        _checker().check_peer(_x509(p384), peer_is_server=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=3), st.sampled_from([X509, RPK]))
def test_any_certificate_bytes_are_accepted_or_rejected_never_raised(
    entries: list[bytes], kind: CertificateType
) -> None:
    checker = _checker(peer_public_keys=frozenset({b"k"}))
    with contextlib.suppress(CertificateRejected):
        checker.check_peer(CertificateMessage(kind, tuple(entries)), peer_is_server=False)
