"""Our DTLS server (our own engine) against peers we did not write: OpenSSL's ``s_client``
(DTLS 1.2, PSK, TLS_PSK_WITH_AES_128_CCM_8) carrying a CoAP request written raw, and libcoap's
``coap-client-openssl`` and ``coap-client-gnutls`` registering with 16- and 64-byte PSKs.

Each test is skipped when its program is not installed (Debian: openssl, libcoap3-bin).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from tests.helpers.dtls_peers import aio_process, end_input, program, read_until
from tests.helpers.libcoap import run_process
from tests.helpers.pki import get, psk_client, psk_server
from tests.helpers.ports import free_udp_port

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import (
    CipherSuite,
    PeerIdentity,
    SessionEnded,
    SessionEstablished,
    open_dtls_endpoint,
)


def _s_client(port: int, identity: str, key_hex: str) -> list[str]:
    """``openssl s_client`` to our server at ``port`` with that PSK and the LwM2M suite."""
    argv = [program("openssl"), "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-psk", key_hex]
    return [*argv, "-psk_identity", identity, "-cipher", "PSK-AES128-CCM8"]


async def test_openssl_s_client_sends_a_coap_request_through_our_server() -> None:
    identity, key = "openssl-1", bytes(range(16))
    sessions: list[Any] = []
    seen: list[PeerIdentity | None] = []

    def handler(event: RequestReceived) -> Message:
        seen.append(server.peer_identity(event.addr))
        return Message.build(Type.ACK, Code.CONTENT, payload=b"hello from lwm2m over DTLS")

    async with open_dtls_endpoint(
        server=psk_server({identity: key}), handler=handler, on_session=sessions.append
    ) as server:
        async with aio_process(*_s_client(server.port, identity, key.hex())) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            # s_client prints the session once the handshake is over.
            banner = await read_until(proc.stdout, b"Extended master secret: ", line=True)
            assert b"Cipher is PSK-AES128-CCM8" in banner, banner.decode(errors="replace")
            assert b"Extended master secret: yes" in banner  # RFC 7627
            assert b"Secure Renegotiation IS supported" in banner  # RFC 5746's extension answered
            request = Message.build(Type.CON, Code.GET, 0x1234, b"\x07", uri_path="/hello")
            proc.stdin.write(request.encode())
            await proc.stdin.drain()
            answer = await read_until(proc.stdout, b"over DTLS")
            assert b"hello from lwm2m over DTLS" in answer, answer.decode(errors="replace")
            await end_input(proc)  # end of input: s_client sends close_notify and exits
        assert seen == [PeerIdentity("psk", identity)]
        (established,) = [e for e in sessions if isinstance(e, SessionEstablished)]
        assert established.cipher_suite == CipherSuite.PSK_WITH_AES_128_CCM_8
        for _ in range(100):
            if any(isinstance(e, SessionEnded) for e in sessions):
                break
            await asyncio.sleep(0.02)
        assert [e.reason for e in sessions if isinstance(e, SessionEnded)] == ["closed"]
        assert server.sessions() == []


async def test_openssl_s_client_with_a_wrong_psk_fails_the_handshake() -> None:
    async with open_dtls_endpoint(server=psk_server({"openssl-1": bytes(16)})) as server:
        argv = _s_client(server.port, "openssl-1", "ff" * 16)
        async with aio_process(*argv, stdin=asyncio.subprocess.DEVNULL) as proc, asyncio.timeout(20):
            out, _ = await proc.communicate()
        assert b"bad record mac" in out, out.decode(errors="replace")
        assert server.sessions() == [] and server.dtls.counters["handshakes_failed"] == 1


@pytest.mark.parametrize("size", [16, 64])
@pytest.mark.parametrize("binary", ["coap-client-openssl", "coap-client-gnutls"])
async def test_libcoap_registers_with_16_and_64_byte_psks(binary: str, size: int) -> None:
    path = program(binary)
    key = (b"0123456789abcdef" * 4)[:size]  # coap-client takes the key as text
    identity = f"{binary}-{size}"
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dev-1", identity, key))
        uri = f"coaps://127.0.0.1:{server.coaps_port}/rd?ep=dev-1&lt=300&lwm2m=1.1&b=U"
        result = await run_process(
            path, "-m", "post", "-u", identity, "-k", key.decode(), "-t", "40", "-e", "</3/0>", "-B", "5", uri
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0 and output.strip() == "", output
        (registration,) = await server.registrations()
        assert registration.endpoint == "dev-1"
        assert server.dtls is not None and server.dtls.dtls.counters["handshakes_done"] == 1


# --- our engine as the client ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 64])
@pytest.mark.parametrize("binary", ["coap-server-openssl", "coap-server-gnutls"])
async def test_our_client_gets_a_resource_from_libcoap_servers(binary: str, size: int) -> None:
    path = program(binary)
    key = (b"fedcba9876543210" * 4)[:size]
    port = free_udp_port()  # coap-server takes DTLS one port above its plain CoAP port
    proc = await asyncio.create_subprocess_exec(
        path, "-A", "127.0.0.1", "-p", str(port - 1), "-k", key.decode(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with open_dtls_endpoint(client=psk_client("our-client", key)) as client:
            response = None
            for _ in range(50):  # until it listens
                try:
                    response = await client.request(get("/"), ("127.0.0.1", port), timeout=1)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            assert response is not None and response.code == Code.CONTENT
            assert b"libcoap" in response.payload.lower(), response.payload
            (info,) = client.sessions()
            assert info.cipher_suite == CipherSuite.PSK_WITH_AES_128_CCM_8
    finally:
        proc.kill()
        await proc.wait()


async def test_our_client_shakes_hands_with_openssl_s_server() -> None:
    openssl = program("openssl")
    key = bytes(range(32))
    port = free_udp_port()
    argv = [openssl, "s_server", "-dtls1_2", "-accept", str(port), "-nocert", "-psk", key.hex()]
    argv += ["-psk_identity", "our-client", "-cipher", "PSK-AES128-CCM8", "-naccept", "1"]
    async with aio_process(*argv) as proc:
        assert proc.stdout is not None
        await read_until(proc.stdout, b"ACCEPT")
        async with open_dtls_endpoint(client=psk_client("our-client", key)) as client:
            identity = await client.connect(("127.0.0.1", port), timeout=10)
            assert identity == PeerIdentity("psk", "our-client")
            # A CoAP message written through the session arrives as plaintext at s_server.
            request = Message.build(Type.NON, Code.GET, 0x4242, b"\x01", uri_path="/from-our-engine")
            with contextlib.suppress(Exception):
                await client.request(request, ("127.0.0.1", port), timeout=0.5)
            seen = await read_until(proc.stdout, b"from-our-engine")
            assert b"from-our-engine" in seen, seen.decode(errors="replace")
            assert b"PSK-AES128-CCM8" in seen
