"""Record protection with AES-128-CCM-8, AES-128-CCM and AES-128-GCM: the primitive against
the published vectors, the nonce and additional data of RFC 6347 §4.1.2.1 / RFC 5246 §6.2.3.3
and of RFC 9146 §5 written out by hand, round trips, tampering, and fuzzing."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.mbedtls import handshake_over, mbedtls_tls, psk_client, psk_server_context, step, take

from lwm2m.errors import BadRecordMac, DtlsError, ProtocolError, RecordError, RecordOverflow, SecurityError
from lwm2m.tls.protection import (
    AES_128_CCM,
    AES_128_CCM_8,
    AES_128_GCM,
    SUITE_ALGORITHMS,
    AeadAlgorithm,
    AeadProtection,
    NullProtection,
    additional_data,
)
from lwm2m.tls.record import (
    ALERT,
    APPLICATION_DATA,
    DTLS_1_2,
    HANDSHAKE,
    MAX_PLAINTEXT,
    TLS12_CID,
    DtlsRecord,
    parse_datagram,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
SALT = bytes.fromhex("a0a1a2a3")
ALGORITHMS = [AES_128_CCM_8, AES_128_CCM, AES_128_GCM]


# --- the primitives against published vectors ---------------------------------------------------


@pytest.mark.parametrize(
    ("nonce", "payload", "expected"),
    [
        # RFC 3610 §8, Packet Vector #1: 8-byte header, 23-byte payload, 8-byte tag.
        (
            "00000003020100a0a1a2a3a4a5",
            "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
            "588c979a61c663d2f066d0c2c0f989806d5f6b61dac384" + "17e8d12cfdf926e0",
        ),
        # RFC 3610 §8, Packet Vector #2: 8-byte header, 24-byte payload, 8-byte tag.
        (
            "00000004030201a0a1a2a3a4a5",
            "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3b" + "a091d56e10400916",
        ),
    ],
)
def test_aes_ccm_with_8_byte_tags_gives_the_rfc_3610_vectors(nonce: str, payload: str, expected: str) -> None:
    key = bytes.fromhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf")
    header = bytes.fromhex("0001020304050607")
    ccm = AESCCM(key, tag_length=8)
    assert ccm.encrypt(bytes.fromhex(nonce), bytes.fromhex(payload), header).hex() == expected
    assert ccm.decrypt(bytes.fromhex(nonce), bytes.fromhex(expected), header).hex() == payload


def test_aes_ccm_gives_the_sp_800_38c_example_2() -> None:
    # NIST SP 800-38C, Appendix C, Example 2: an 8-byte nonce, a 6-byte tag.
    ccm = AESCCM(bytes.fromhex("404142434445464748494a4b4c4d4e4f"), tag_length=6)
    sealed = ccm.encrypt(
        bytes.fromhex("1011121314151617"),
        bytes.fromhex("202122232425262728292a2b2c2d2e2f"),
        bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
    )
    assert sealed.hex() == "d2a1f0e051ea5f62081a7792073d593d" + "1fc64fbfaccd"


def test_aes_gcm_gives_the_gcm_spec_test_case_4() -> None:
    # McGrew & Viega, "The Galois/Counter Mode of Operation", Test Case 4 (AES-128, 96-bit IV).
    gcm = AESGCM(bytes.fromhex("feffe9928665731c6d6a8f9467308308"))
    plaintext = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    sealed = gcm.encrypt(
        bytes.fromhex("cafebabefacedbaddecaf888"),
        plaintext,
        bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
    )
    assert sealed.hex() == (
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091" + "5bc94fbc3221a5db94fae95ae7121a47"
    )


# --- nonce and additional data, written out -----------------------------------------------------


def test_a_record_is_sealed_with_salt_plus_epoch_and_sequence_and_the_rfc_6347_aad() -> None:
    record = DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 5, b"hello")
    sealed = AeadProtection(AES_128_CCM_8, KEY, SALT).encrypt(record)
    explicit = bytes.fromhex("0001 000000000005")
    aad = bytes.fromhex("0001000000000005 17 fefd 0005")
    expected = explicit + AESCCM(KEY, tag_length=8).encrypt(SALT + explicit, b"hello", aad)
    assert sealed == DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 5, expected)
    assert len(sealed.fragment) == 8 + 5 + 8


def test_a_cid_record_is_sealed_with_the_rfc_9146_aad_and_inner_plaintext() -> None:
    record = DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 5, b"hello", cid=b"\xc1\xc2\xc3")
    sealed = AeadProtection(AES_128_GCM, KEY, SALT, padding=2).encrypt(record)
    explicit = bytes.fromhex("0001 000000000005")
    inner = b"hello" + b"\x17" + b"\x00\x00"
    aad = bytes.fromhex("ffffffffffffffff 19 03 19 fefd 0001000000000005 c1c2c3 0008")
    expected = explicit + AESGCM(KEY).encrypt(SALT + explicit, inner, aad)
    assert sealed == DtlsRecord(TLS12_CID, DTLS_1_2, 1, 5, expected, cid=b"\xc1\xc2\xc3")
    assert sealed.encode()[:14] == bytes.fromhex("19 fefd 0001 000000000005 c1c2c3")


def test_additional_data_shapes() -> None:
    assert additional_data(0x0002_00000000000A, HANDSHAKE, DTLS_1_2, 0x10) == bytes.fromhex(
        "000200000000000a 16 fefd 0010"
    )
    assert additional_data(1, APPLICATION_DATA, DTLS_1_2, 3, b"\x07") == bytes.fromhex(
        "ffffffffffffffff 19 01 19 fefd 0000000000000001 07 0003"
    )


@pytest.mark.parametrize("cid", [b"", b"\x07"])
@pytest.mark.parametrize(
    "fields",
    [(2**64, HANDSHAKE, DTLS_1_2, 0), (0, 256, DTLS_1_2, 0), (0, 0, 2**16, 0), (0, 0, DTLS_1_2, 2**16)],
)
def test_additional_data_fields_that_do_not_fit_are_refused(
    fields: tuple[int, int, int, int], cid: bytes
) -> None:
    if cid and fields[1] == 256:
        return  # the content type is not in the additional data of a CID record
    with pytest.raises(RecordError):
        additional_data(*fields, cid)


def test_the_suites_map_to_their_aead() -> None:
    assert SUITE_ALGORITHMS[0xC0A8] is AES_128_CCM_8  # TLS_PSK_WITH_AES_128_CCM_8
    assert SUITE_ALGORITHMS[0xC0AE] is AES_128_CCM_8  # TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
    assert SUITE_ALGORITHMS[0xC02B] is AES_128_GCM  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    assert AES_128_CCM_8.tag_length == 8
    assert AES_128_GCM.tag_length == AES_128_CCM.tag_length == 16


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
@pytest.mark.parametrize("cid", [b"", b"\x01", b"\x02" * 8])
def test_round_trip_through_the_wire(algorithm: AeadAlgorithm, cid: bytes) -> None:
    writer = AeadProtection(algorithm, KEY, SALT, padding=3)
    reader = AeadProtection(algorithm, KEY, SALT)
    records = [
        DtlsRecord(HANDSHAKE, DTLS_1_2, 1, 0, b"finished" * 2, cid),
        DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 1, b"", cid),
        DtlsRecord(ALERT, DTLS_1_2, 1, 2, b"\x01\x00", cid),
    ]
    wire = b"".join(writer.encrypt(r).encode() for r in records)
    received = [reader.decrypt(r) for r in parse_datagram(wire, len(cid))]
    assert received == records


def test_the_largest_plaintext_round_trips_and_one_more_byte_overflows() -> None:
    protection = AeadProtection(AES_128_CCM_8, KEY, SALT)
    record = DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 0, b"\x55" * MAX_PLAINTEXT)
    assert protection.decrypt(protection.encrypt(record)) == record
    with pytest.raises(RecordOverflow):
        protection.encrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 0, b"\x55" * (MAX_PLAINTEXT + 1)))
    with pytest.raises(RecordOverflow):
        protection.decrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 0, b"\x55" * (MAX_PLAINTEXT + 17)))
    with pytest.raises(RecordOverflow):
        # With a CID the type byte counts too.
        protection.encrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 0, b"\x55" * MAX_PLAINTEXT, b"\x01"))


def test_the_seal_and_open_forms_need_no_framing() -> None:
    # TLS over TCP: a 64-bit implicit sequence number and the header fields.
    protection = AeadProtection(AES_128_GCM, KEY, SALT)
    fragment = protection.seal(7, APPLICATION_DATA, 0x0303, b"coap over tls")
    assert protection.open(7, APPLICATION_DATA, 0x0303, fragment) == (APPLICATION_DATA, b"coap over tls")
    with pytest.raises(BadRecordMac):
        protection.open(8, APPLICATION_DATA, 0x0303, fragment)


# --- what does not authenticate -----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
@pytest.mark.parametrize(
    "change",
    [
        {"epoch": 2},
        {"sequence": 6},
        {"content_type": HANDSHAKE},
        {"version": 0xFEFF},
    ],
)
def test_a_changed_header_field_does_not_authenticate(
    algorithm: AeadAlgorithm, change: dict[str, int]
) -> None:
    protection = AeadProtection(algorithm, KEY, SALT)
    sealed = protection.encrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 5, b"payload"))
    forged = DtlsRecord(**{**_fields(sealed), **change})  # type: ignore[arg-type]
    with pytest.raises(BadRecordMac):
        protection.decrypt(forged)


@pytest.mark.parametrize(
    "change", [{"epoch": 2}, {"sequence": 6}, {"version": 0xFEFF}, {"cid": b"\xc1\xc2\xc4"}]
)
def test_a_changed_cid_record_does_not_authenticate(change: dict[str, object]) -> None:
    protection = AeadProtection(AES_128_CCM_8, KEY, SALT)
    sealed = protection.encrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 5, b"payload", b"\xc1\xc2\xc3"))
    forged = DtlsRecord(**{**_fields(sealed), **change})  # type: ignore[arg-type]
    with pytest.raises(BadRecordMac):
        protection.decrypt(forged)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.name)
def test_every_flipped_bit_of_the_fragment_is_caught(algorithm: AeadAlgorithm) -> None:
    protection = AeadProtection(algorithm, KEY, SALT)
    sealed = protection.encrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 5, b"abc"))
    for index in range(len(sealed.fragment)):
        for bit in (0x01, 0x80):
            fragment = bytearray(sealed.fragment)
            fragment[index] ^= bit
            with pytest.raises(BadRecordMac):
                protection.decrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 5, bytes(fragment)))


def test_another_key_or_salt_does_not_authenticate() -> None:
    sealed = AeadProtection(AES_128_CCM_8, KEY, SALT).encrypt(DtlsRecord(HANDSHAKE, DTLS_1_2, 1, 0, b"x"))
    with pytest.raises(BadRecordMac):
        AeadProtection(AES_128_CCM_8, bytes(16), SALT).decrypt(sealed)
    with pytest.raises(BadRecordMac):
        AeadProtection(AES_128_CCM_8, KEY, b"\x00\x00\x00\x00").decrypt(sealed)
    with pytest.raises(BadRecordMac):
        AeadProtection(AES_128_CCM, KEY, SALT).decrypt(sealed)  # CCM with 16-byte tags


@pytest.mark.parametrize("length", [0, 1, 8, 15])
def test_a_fragment_too_short_for_nonce_and_tag_is_a_bad_mac(length: int) -> None:
    with pytest.raises(BadRecordMac):
        AeadProtection(AES_128_CCM_8, KEY, SALT).decrypt(
            DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 0, bytes(length))
        )


def test_an_authentic_cid_record_without_an_inner_type_is_refused() -> None:
    explicit = bytes.fromhex("0001 000000000000")
    aad = additional_data(1 << 48, APPLICATION_DATA, DTLS_1_2, 4, b"\x01")
    fragment = explicit + AESCCM(KEY, tag_length=8).encrypt(SALT + explicit, bytes(4), aad)
    with pytest.raises(RecordError):
        AeadProtection(AES_128_CCM_8, KEY, SALT).decrypt(
            DtlsRecord(TLS12_CID, DTLS_1_2, 1, 0, fragment, b"\x01")
        )


def test_mismatched_cid_and_content_type_are_refused() -> None:
    protection = AeadProtection(AES_128_CCM_8, KEY, SALT)
    with pytest.raises(RecordError):
        protection.decrypt(DtlsRecord(TLS12_CID, DTLS_1_2, 1, 0, bytes(20)))
    with pytest.raises(RecordError):
        protection.decrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 0, bytes(20), b"\x01"))
    with pytest.raises(RecordError):
        protection.encrypt(DtlsRecord(TLS12_CID, DTLS_1_2, 1, 0, b"x", b"\x01"))


@pytest.mark.parametrize(
    ("key", "salt", "padding"),
    [(bytes(15), SALT, 0), (bytes(32), SALT, 0), (KEY, bytes(12), 0), (KEY, SALT, -1)],
)
def test_keys_of_the_wrong_size_are_refused(key: bytes, salt: bytes, padding: int) -> None:
    with pytest.raises(DtlsError):
        AeadProtection(AES_128_CCM_8, key, salt, padding)


# --- epoch 0 ------------------------------------------------------------------------------------


def test_null_protection_passes_the_record_through() -> None:
    record = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, b"client hello")
    assert NullProtection().encrypt(record) is record
    assert NullProtection().decrypt(record) is record


def test_null_protection_refuses_cid_records_and_long_plaintexts() -> None:
    with pytest.raises(RecordError):
        NullProtection().encrypt(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, b"x", b"\x01"))
    with pytest.raises(RecordError):
        NullProtection().decrypt(DtlsRecord(TLS12_CID, DTLS_1_2, 0, 0, b"x", b"\x01"))
    long = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, bytes(MAX_PLAINTEXT + 1))
    with pytest.raises(RecordOverflow):
        NullProtection().encrypt(long)
    with pytest.raises(RecordOverflow):
        NullProtection().decrypt(long)


# --- fuzzing ------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=120), st.sampled_from(ALGORITHMS), st.integers(0, 3))
def test_any_datagram_is_decrypted_or_refused_with_our_errors(
    wire: bytes, algorithm: AeadAlgorithm, cid_length: int
) -> None:
    protection = AeadProtection(algorithm, KEY, SALT)
    try:
        for record in parse_datagram(wire, cid_length):
            protection.decrypt(record)
    except (ProtocolError, SecurityError):
        pass


@FUZZ
@given(
    st.sampled_from(ALGORITHMS),
    st.sampled_from([HANDSHAKE, APPLICATION_DATA, ALERT]),
    st.integers(1, 0xFFFF),
    st.integers(0, 2**48 - 1),
    st.binary(max_size=200),
    st.binary(max_size=12),
    st.integers(0, 16),
)
def test_any_record_round_trips(
    algorithm: AeadAlgorithm,
    content_type: int,
    epoch: int,
    sequence: int,
    content: bytes,
    cid: bytes,
    padding: int,
) -> None:
    record = DtlsRecord(content_type, DTLS_1_2, epoch, sequence, content, cid)
    sealed = AeadProtection(algorithm, KEY, SALT, padding).encrypt(record)
    (received,) = parse_datagram(sealed.encode(), len(cid))
    assert AeadProtection(algorithm, KEY, SALT).decrypt(received) == record


def _fields(record: DtlsRecord) -> dict[str, object]:
    return {
        "content_type": record.content_type,
        "version": record.version,
        "epoch": record.epoch,
        "sequence": record.sequence,
        "fragment": record.fragment,
        "cid": record.cid,
    }


# --- a peer we did not write: Mbed TLS (python-mbedtls), TLS_PSK_WITH_AES_128_CCM_8 -------------
#
# A full in-memory handshake between an Mbed TLS client and server gives real epoch-1 records.
# With the PSK and what went over the wire, the key block follows from RFC 5246 §5 (the PRF),
# §6.3 (the key block), §8.1 (the master secret; RFC 7627 §4 when the extended master secret
# was negotiated) and RFC 4279 §2 (the PSK premaster secret): our protection must open the
# peer's records, and the peer must accept ours.

PEER_PSK = b"0123456789abcdef"


def _prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:length]


def _mbedtls_session() -> tuple[Any, list[tuple[str, bytes]]]:
    """An Mbed TLS client and server shake hands; returns the client and every datagram, in order."""
    tls = mbedtls_tls()
    client = psk_client("device-1", PEER_PSK)
    server_context = psk_server_context({"device-1": PEER_PSK})
    server = server_context.wrap_buffers()
    step(client, 20)
    log: list[tuple[str, bytes]] = []
    server.setcookieparam(b"client")
    log.append(("client", take(client)))
    server.receive_from_network(log[-1][1])
    with pytest.raises(tls.HelloVerifyRequest):
        step(server, 20)
    log.append(("server", take(server)))
    server = server_context.wrap_buffers()  # the cookie exchange leaves the first one spent
    server.setcookieparam(b"client")
    for _ in range(10):
        client.receive_from_network(log[-1][1])
        step(client, 20)
        log.append(("client", take(client)))
        server.receive_from_network(log[-1][1])
        step(server, 20)
        log.append(("server", take(server)))
        if handshake_over(client) and handshake_over(server):
            break
    assert handshake_over(client)
    client.write(b"hello coap")
    log.append(("client", take(client)))
    return client, [(who, data) for who, data in log if data]


def test_records_of_an_mbedtls_session_open_and_ours_are_accepted() -> None:
    client, log = _mbedtls_session()
    records = [(who, record) for who, data in log for record in parse_datagram(data)]
    handshake = [r.fragment for _, r in records if r.epoch == 0 and r.content_type == HANDSHAKE]
    # The ClientHello with the cookie, ServerHello, ServerHelloDone, ClientKeyExchange: the first
    # ClientHello and the HelloVerifyRequest are not hashed (RFC 6347 §4.2.1).
    messages = handshake[2:6]
    assert [m[0] for m in messages] == [1, 2, 14, 16]
    client_random, server_random = messages[0][14:46], messages[1][14:46]
    premaster = (
        len(PEER_PSK).to_bytes(2, "big") + bytes(len(PEER_PSK)) + len(PEER_PSK).to_bytes(2, "big") + PEER_PSK
    )
    extended = b"\x00\x17" in _extension_types(messages[1])
    if extended:
        master = _prf(premaster, b"extended master secret", hashlib.sha256(b"".join(messages)).digest(), 48)
    else:
        master = _prf(premaster, b"master secret", client_random + server_random, 48)
    block = _prf(master, b"key expansion", server_random + client_random, 40)
    client_write = AeadProtection(AES_128_CCM_8, block[:16], block[32:36])
    server_write = AeadProtection(AES_128_CCM_8, block[16:32], block[36:40])

    protected = [(who, r) for who, r in records if r.epoch == 1]
    opened = [(client_write if who == "client" else server_write).decrypt(r) for who, r in protected]
    assert [(r.content_type, r.sequence) for r in opened] == [
        (HANDSHAKE, 0),
        (HANDSHAKE, 0),
        (APPLICATION_DATA, 1),
    ]
    assert opened[0].fragment[0] == opened[1].fragment[0] == 20  # the two Finished messages
    assert opened[2].fragment == b"hello coap"

    # Our record, sealed with the server's keys, is read by the Mbed TLS client.
    ours = server_write.encrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 1, b"hello device"))
    client.receive_from_network(ours.encode())
    assert client.read(100) == b"hello device"


def _extension_types(server_hello: bytes) -> list[bytes]:
    body = server_hello[12:]
    position = 35 + body[34] + 3  # version, random, session id, cipher suite, compression
    position += 2  # the length of the extensions
    types = []
    while position + 4 <= len(body):
        types.append(body[position : position + 2])
        position += 4 + int.from_bytes(body[position + 2 : position + 4], "big")
    return types
