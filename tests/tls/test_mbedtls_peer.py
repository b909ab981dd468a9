"""The handshake messages against a DTLS client we did not write: python-mbedtls (Mbed TLS),
driven sans-IO through its buffers. Its ClientHello parses; our HelloVerifyRequest makes it
send a second ClientHello carrying our cookie (RFC 6347 §4.2.1)."""

from __future__ import annotations

import pytest

from lwm2m.tls.messages import (
    DTLS_1_2,
    ClientHello,
    ExtendedMasterSecretExtension,
    ExtensionType,
    HandshakeType,
    HelloVerifyRequest,
    encode_handshake,
    split_handshake_fragments,
)

tls = pytest.importorskip("mbedtls.tls")

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


def _drive(buf: tls.TLSWrappedBuffer) -> bytes:
    for _ in range(10):
        try:
            buf.do_handshake()
        except tls.WantWriteError:
            continue
        except tls.WantReadError:
            break
    n = len(buf._output_buffer)
    out: bytes = buf.peek_outgoing(n)
    buf.consume_outgoing(n)
    return out


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
    conf = tls.DTLSConfiguration(
        pre_shared_key=("device-1", b"secretPSK"),
        ciphers=("TLS-PSK-WITH-AES-128-CCM-8",),
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
        validate_certificates=False,
    )
    buf = tls.ClientContext(conf).wrap_buffers(None)

    first = _client_hello(_drive(buf), message_seq=0)
    assert first.client_version == DTLS_1_2
    assert PSK_CCM_8 in first.cipher_suites
    assert first.cookie == b""
    assert len(first.random) == 32
    assert first.compression_methods == b"\x00"
    assert first.extension(ExtensionType.EXTENDED_MASTER_SECRET) == ExtendedMasterSecretExtension()

    cookie = bytes(range(100, 132))
    verify = encode_handshake(HandshakeType.HELLO_VERIFY_REQUEST, 0, HelloVerifyRequest(cookie).to_bytes())
    buf.receive_from_network(_record(22, 0, verify))

    second = _client_hello(_drive(buf), message_seq=1)
    assert second.cookie == cookie
    # RFC 6347 §4.2.1: the second hello repeats the first apart from the cookie.
    assert second.random == first.random
    assert second.cipher_suites == first.cipher_suites
    assert second.extensions == first.extensions
