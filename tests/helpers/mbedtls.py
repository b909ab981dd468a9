"""Mbed TLS (through python-mbedtls) as a DTLS peer we did not write, driven sans-IO: its
``TLSWrappedBuffer`` takes datagrams with ``receive_from_network`` and gives its own with
:func:`take`. PSK with TLS_PSK_WITH_AES_128_CCM_8, LwM2M's mandatory suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.helpers.dtls_engine import events

from lwm2m.tls.connection import ApplicationData, DtlsConnection

PSK_CCM_8 = "TLS-PSK-WITH-AES-128-CCM-8"


def mbedtls_tls() -> Any:
    """``mbedtls.tls``, or the test is skipped where python-mbedtls is not installed."""
    return pytest.importorskip("mbedtls.tls")


def psk_configuration(**options: Any) -> Any:
    """A DTLS 1.2 configuration offering only PSK with CCM_8; ``options`` add to it (the
    client's ``pre_shared_key``, the server's ``pre_shared_key_store``, …)."""
    tls = mbedtls_tls()
    settings: dict[str, Any] = {
        "ciphers": (PSK_CCM_8,),
        "lowest_supported_version": tls.DTLSVersion.DTLSv1_2,
        "highest_supported_version": tls.DTLSVersion.DTLSv1_2,
        "validate_certificates": False,
    }
    settings.update(options)
    return tls.DTLSConfiguration(**settings)


def psk_client(identity: str, psk: bytes, **options: Any) -> Any:
    """A sans-IO Mbed TLS DTLS client with that PSK."""
    return (
        mbedtls_tls()
        .ClientContext(psk_configuration(pre_shared_key=(identity, psk), **options))
        .wrap_buffers(None)
    )


def psk_server_context(store: dict[str, bytes], **options: Any) -> Any:
    """An Mbed TLS DTLS server context knowing the PSKs of ``store`` (identity -> key); its
    buffers share the cookie secret, so the one after a HelloVerifyRequest takes the cookie."""
    return mbedtls_tls().ServerContext(psk_configuration(pre_shared_key_store=store, **options))


def psk_server(store: dict[str, bytes], **options: Any) -> Any:
    """A sans-IO Mbed TLS DTLS server knowing the PSKs of ``store``."""
    return psk_server_context(store, **options).wrap_buffers()


def handshake_over(buf: Any) -> bool:
    return buf._handshake_state is mbedtls_tls().HandshakeStep.HANDSHAKE_OVER  # type: ignore[no-any-return]


def step(buf: Any, steps: int = 10) -> None:
    """Run the handshake until it is over or waits for the peer (Mbed TLS's own exceptions,
    e.g. ``HelloVerifyRequest`` or a fatal alert, go to the caller)."""
    tls = mbedtls_tls()
    for _ in range(steps):
        if handshake_over(buf):
            return
        try:
            buf.do_handshake()
        except tls.WantWriteError:
            continue
        except tls.WantReadError:
            return


def take(buf: Any) -> bytes:
    """What Mbed TLS wrote since the last call."""
    n = len(buf._output_buffer)
    out: bytes = buf.peek_outgoing(n) if n else b""
    buf.consume_outgoing(n)
    return out


def drive(buf: Any) -> bytes:
    """Step the handshake, then take what it wrote."""
    step(buf)
    return take(buf)


def serve_mbedtls_client(
    buf: Any, server: DtlsConnection, rounds: int = 8, watch: Callable[[str, bytes], None] | None = None
) -> None:
    """Carry datagrams between the Mbed TLS client ``buf`` and our ``server`` for ``rounds``
    round trips (at time 0); ``watch`` sees each datagram with its sender ("client"/"server")."""
    for _ in range(rounds):
        sent = drive(buf)
        if sent:
            if watch is not None:
                watch("client", sent)
            server.receive_datagram(sent, 0.0)
        for datagram in server.datagrams_to_send(0.0):
            if watch is not None:
                watch("server", datagram)
            buf.receive_from_network(datagram)


def answer_of_mbedtls_server(buf: Any, client: DtlsConnection, address: bytes) -> bytes:
    """Give the Mbed TLS server ``buf`` what our ``client`` sends (from ``address``, the
    cookie's client id); what it answers."""
    tls = mbedtls_tls()
    out = b""
    for datagram in client.datagrams_to_send(0.0):
        buf.setcookieparam(address)
        buf.receive_from_network(datagram)
        try:
            out += drive(buf)
        except tls.HelloVerifyRequest:
            # Mbed TLS wrote its HelloVerifyRequest and reset itself for the hello with the cookie.
            out += take(buf)
    return out


def connect_to_mbedtls_server(
    buf: Any, client: DtlsConnection, address: bytes, rounds: int = 6
) -> list[bytes]:
    """Carry datagrams between our ``client`` and the Mbed TLS server ``buf`` for ``rounds``
    round trips (at time 0); the server's answer of each round."""
    answers = []
    for _ in range(rounds):
        answer = answer_of_mbedtls_server(buf, client, address)
        answers.append(answer)
        if answer:
            client.receive_datagram(answer, 0.0)
    return answers


def data_both_ways(buf: Any, ours: DtlsConnection) -> None:
    """Over an established pair, Mbed TLS (``buf``) sends a request, and ``ours`` answers it."""
    buf.write(b"POST /rd?ep=mbedtls")
    ours.receive_datagram(drive(buf), 1.0)
    assert events(ours) == [ApplicationData(b"POST /rd?ep=mbedtls")]
    ours.send_application_data(b"2.01 Created")
    for datagram in ours.datagrams_to_send(1.0):
        buf.receive_from_network(datagram)
    assert buf.read(100) == b"2.01 Created"
