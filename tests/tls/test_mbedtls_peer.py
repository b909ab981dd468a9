"""The handshake messages against a DTLS client we did not write: python-mbedtls (Mbed TLS),
driven sans-IO through its buffers. Its ClientHello parses; our HelloVerifyRequest makes it
send a second ClientHello carrying our cookie (RFC 6347 §4.2.1). Then a whole
TLS_PSK_WITH_AES_128_CCM_8 handshake, the test playing the server with a minimal record layer of
its own: Mbed TLS's Finished verifies under our master secret (plain and extended), ours
completes its handshake, and application data passes both ways under our key block."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from tests.helpers.mbedtls import drive, handshake_over, psk_client

from lwm2m.tls.messages import (
    DTLS_1_2,
    ClientHello,
    ClientKeyExchange,
    ExtendedMasterSecretExtension,
    ExtensionType,
    Finished,
    HandshakeType,
    HelloVerifyRequest,
    ServerHello,
    ServerHelloDone,
    encode_handshake,
    split_handshake_fragments,
)
from lwm2m.tls.prf import (
    check_finished,
    extended_master_secret,
    key_block,
    master_secret,
    psk_premaster_secret,
    verify_data,
)

pytest.importorskip("mbedtls.tls")

PSK_CCM_8 = 0xC0A8
RECORD_HEADER_LENGTH = 13  # RFC 6347 §4.1: type, version, epoch, sequence_number (48 bits), length


def _records(datagram: bytes) -> list[tuple[int, int, int, bytes]]:
    # Just enough of the record layer for the test: (type, version, epoch, fragment) per record.
    out = []
    at = 0
    while at < len(datagram):
        header = datagram[at : at + RECORD_HEADER_LENGTH]
        assert len(header) == RECORD_HEADER_LENGTH
        length = int.from_bytes(header[11:13], "big")
        fragment = datagram[at + RECORD_HEADER_LENGTH : at + RECORD_HEADER_LENGTH + length]
        assert len(fragment) == length
        out.append(
            (header[0], int.from_bytes(header[1:3], "big"), int.from_bytes(header[3:5], "big"), fragment)
        )
        at += RECORD_HEADER_LENGTH + length
    return out


def _record(content_type: int, sequence: int, fragment: bytes) -> bytes:
    return (
        bytes([content_type])
        + DTLS_1_2.to_bytes(2, "big")
        + (0).to_bytes(2, "big")  # epoch 0: the handshake before ChangeCipherSpec
        + sequence.to_bytes(6, "big")
        + len(fragment).to_bytes(2, "big")
        + fragment
    )


def _client_hello(datagram: bytes, message_seq: int) -> ClientHello:
    [(content_type, version, epoch, fragment)] = _records(datagram)
    assert (content_type, epoch) == (22, 0)  # handshake, epoch 0
    assert version in (DTLS_1_2, 0xFEFF)
    [(header, body)] = split_handshake_fragments(fragment)
    assert header.msg_type == HandshakeType.CLIENT_HELLO
    assert header.message_seq == message_seq
    assert (header.fragment_offset, header.fragment_length) == (0, header.length)
    hello = ClientHello.parse(body)
    assert hello.to_bytes() == body  # our serialization gives back Mbed TLS's bytes exactly
    return hello


def test_mbedtls_client_hello_parses_and_takes_our_cookie() -> None:
    buf = psk_client("device-1", b"secretPSK")

    first = _client_hello(drive(buf), message_seq=0)
    assert first.client_version == DTLS_1_2
    assert PSK_CCM_8 in first.cipher_suites
    assert first.cookie == b""
    assert len(first.random) == 32
    assert first.compression_methods == b"\x00"
    assert first.extension(ExtensionType.EXTENDED_MASTER_SECRET) == ExtendedMasterSecretExtension()

    cookie = bytes(range(100, 132))
    verify = encode_handshake(HandshakeType.HELLO_VERIFY_REQUEST, 0, HelloVerifyRequest(cookie).to_bytes())
    buf.receive_from_network(_record(22, 0, verify))

    second = _client_hello(drive(buf), message_seq=1)
    assert second.cookie == cookie
    # RFC 6347 §4.2.1: the second hello repeats the first apart from the cookie.
    assert second.random == first.random
    assert second.cipher_suites == first.cipher_suites
    assert second.extensions == first.extensions


# --- a whole PSK handshake: the key schedule against Mbed TLS ------------------------------


def _aead_nonce_and_aad(
    salt: bytes, epoch: int, sequence: int, content_type: int, length: int
) -> tuple[bytes, bytes]:
    # RFC 6655 §3 / RFC 5288 §3: nonce = 4-byte implicit salt + 8-byte explicit part, here the
    # epoch and sequence number; RFC 6347 §4.1.2.1: the additional data uses epoch + sequence.
    seq_num = epoch.to_bytes(2, "big") + sequence.to_bytes(6, "big")
    aad = seq_num + bytes([content_type]) + DTLS_1_2.to_bytes(2, "big") + length.to_bytes(2, "big")
    return salt + seq_num, aad


def _encrypted_record(
    key: bytes, salt: bytes, content_type: int, epoch: int, sequence: int, data: bytes
) -> bytes:
    nonce, aad = _aead_nonce_and_aad(salt, epoch, sequence, content_type, len(data))
    fragment = nonce[4:] + AESCCM(key, tag_length=8).encrypt(nonce, data, aad)
    header = bytes([content_type]) + DTLS_1_2.to_bytes(2, "big") + epoch.to_bytes(2, "big")
    return header + sequence.to_bytes(6, "big") + len(fragment).to_bytes(2, "big") + fragment


def _decrypt(key: bytes, salt: bytes, content_type: int, epoch: int, fragment: bytes) -> bytes:
    explicit, sealed = fragment[:8], fragment[8:]
    seq_num = int.from_bytes(explicit, "big")
    nonce, aad = _aead_nonce_and_aad(salt, epoch, seq_num & 0xFFFFFFFFFFFF, content_type, len(sealed) - 8)
    assert nonce[4:] == explicit  # Mbed TLS uses the epoch and sequence number as explicit nonce
    plaintext: bytes = AESCCM(key, tag_length=8).decrypt(nonce, sealed, aad)
    return plaintext


@pytest.mark.parametrize("use_ems", [False, True], ids=["master-secret", "extended-master-secret"])
def test_a_psk_handshake_with_mbedtls_agrees_on_every_key(use_ems: bool) -> None:
    psk = bytes(range(1, 17))
    buf = psk_client("device-1", psk)
    drive(buf)
    cookie = b"cookie-of-the-server"
    verify = encode_handshake(HandshakeType.HELLO_VERIFY_REQUEST, 0, HelloVerifyRequest(cookie).to_bytes())
    buf.receive_from_network(_record(22, 0, verify))
    [(_, _, _, hello_fragment)] = _records(drive(buf))
    [(_, hello_body)] = split_handshake_fragments(hello_fragment)
    hello = ClientHello.parse(hello_body)

    # RFC 6347 §4.2.6: the transcript starts at the ClientHello that carries the cookie.
    transcript = [encode_handshake(HandshakeType.CLIENT_HELLO, 1, hello_body)]
    server_random = bytes(range(200, 232))
    extensions = (ExtendedMasterSecretExtension(),) if use_ems else ()
    server_hello = ServerHello(server_random, PSK_CCM_8, session_id=bytes(16), extensions=extensions)
    transcript.append(encode_handshake(HandshakeType.SERVER_HELLO, 1, server_hello.to_bytes()))
    transcript.append(encode_handshake(HandshakeType.SERVER_HELLO_DONE, 2, ServerHelloDone().to_bytes()))
    buf.receive_from_network(_record(22, 1, transcript[1] + transcript[2]))

    # The client's flight: ClientKeyExchange, ChangeCipherSpec, Finished (epoch 1, encrypted).
    records = _records(drive(buf))
    assert [(content_type, epoch) for content_type, _, epoch, _ in records] == [(22, 0), (20, 0), (22, 1)]
    [(header, key_exchange_body)] = split_handshake_fragments(records[0][3])
    assert header.msg_type == HandshakeType.CLIENT_KEY_EXCHANGE
    key_exchange = ClientKeyExchange.parse(key_exchange_body)
    assert key_exchange.psk_identity == b"device-1"
    transcript.append(
        encode_handshake(HandshakeType.CLIENT_KEY_EXCHANGE, header.message_seq, key_exchange_body)
    )

    premaster = psk_premaster_secret(psk)
    if use_ems:
        master = extended_master_secret(premaster, hashlib.sha256(b"".join(transcript)).digest())
    else:
        master = master_secret(premaster, hello.random, server_random)
    keys = key_block(master, hello.random, server_random)

    finished_plain = _decrypt(keys.client_write_key, keys.client_write_iv, 22, 1, records[2][3])
    [(finished_header, finished_body)] = split_handshake_fragments(finished_plain)
    assert finished_header.msg_type == HandshakeType.FINISHED
    client_hash = hashlib.sha256(b"".join(transcript)).digest()
    check_finished(master, b"client finished", client_hash, Finished.parse(finished_body).verify_data)
    transcript.append(finished_plain)

    ours = Finished(verify_data(master, b"server finished", hashlib.sha256(b"".join(transcript)).digest()))
    finished = encode_handshake(HandshakeType.FINISHED, 3, ours.to_bytes())
    buf.receive_from_network(
        _record(20, 2, b"\x01")
        + _encrypted_record(keys.server_write_key, keys.server_write_iv, 22, 1, 0, finished)
    )
    drive(buf)
    assert handshake_over(buf)

    # Application data both ways, under the keys of the key block.
    buf.write(b"ping")
    n = len(buf._output_buffer)
    [(content_type, _, epoch, fragment)] = _records(buf.peek_outgoing(n))
    buf.consume_outgoing(n)
    assert (content_type, epoch) == (23, 1)
    assert _decrypt(keys.client_write_key, keys.client_write_iv, 23, 1, fragment) == b"ping"
    buf.receive_from_network(
        _encrypted_record(keys.server_write_key, keys.server_write_iv, 23, 1, 1, b"pong")
    )
    assert buf.read(100) == b"pong"
