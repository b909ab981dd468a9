"""What the server, the bootstrap server and the DTLS layer log (issue: diagnostics through
``logging``), over real loopback sockets: registrations with endpoint and address, refusals
with their CoAP code and reason, DTLS handshake failures (bounded under a flood), bootstrap
sessions, and a line per CoAP message at DEBUG only."""

from __future__ import annotations

import logging

import pytest
from tests.helpers.pki import KEY, OTHER_KEY
from tests.helpers.server import register

from lwm2m.bootstrap import BootstrapConfig, BootstrapFinished, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.client import Client
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type, code_text
from lwm2m.errors import DtlsHandshakeError
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials, open_dtls_endpoint
from lwm2m.transport.dtls.diagnostics import SessionLog
from lwm2m.transport.dtls.events import HandshakeFailed
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.transport.wire import describe


def messages(caplog: pytest.LogCaptureFixture, logger: str, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


async def test_registration_update_and_deregistration_are_logged_with_endpoint_and_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint() as device:
        peer = ("127.0.0.1", server.port)
        created = await device.request(register("diag-1"), peer, timeout=5)
        assert created.code == Code.CREATED
        location = list(created.location_path)
        update = Message.build(Type.CON, Code.POST, uri_path=location)
        assert (await device.request(update, peer, timeout=5)).code == Code.CHANGED
        delete = Message.build(Type.CON, Code.DELETE, uri_path=location)
        assert (await device.request(delete, peer, timeout=5)).code == Code.DELETED
        here = f"127.0.0.1:{device.port}"
    lines = messages(caplog, "lwm2m.server.registrar")
    assert lines[0].startswith(f"registered 'diag-1' from {here} at /rd/{location[1]} (lifetime ")
    assert lines[1] == f"updated 'diag-1' from {here}"
    assert lines[2] == f"de-registered 'diag-1' from {here}"


async def test_expiry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with (
        Server(ServerConfig(port=0, expiry_interval=0.05)) as server,
        open_udp_endpoint() as device,
    ):
        port = device.port
        events = server.events()
        message = Message.build(
            Type.CON, Code.POST, uri_path="/rd", uri_query=["ep=short", "lt=1"], payload=b"</3/0>"
        )
        assert (await device.request(message, ("127.0.0.1", server.port), timeout=5)).code == Code.CREATED
        async for event in events:
            if type(event).__name__ == "RegistrationExpired":
                break
    (line,) = [m for m in messages(caplog, "lwm2m.server.registrar") if "expired" in m]
    assert line == f"registration of 'short' (last from 127.0.0.1:{port}) expired after 1 s without an update"


async def test_refused_registration_is_logged_with_its_code_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint() as device:
        peer = ("127.0.0.1", server.port)
        bad = Message.build(
            Type.CON, Code.POST, uri_path="/rd", uri_query=["ep=diag-2", "lt=0"], payload=b"</3/0>"
        )
        refused = await device.request(bad, peer, timeout=5)
        assert refused.code == Code.BAD_REQUEST
        stray = Message.build(Type.CON, Code.GET, uri_path="/nothing")
        assert (await device.request(stray, peer, timeout=5)).code == Code.NOT_FOUND
        gone = Message.build(Type.CON, Code.POST, uri_path="/rd/unknown")
        assert (await device.request(gone, peer, timeout=5)).code == Code.NOT_FOUND
        here = f"127.0.0.1:{device.port}"
    (line,) = [m for m in messages(caplog, "lwm2m.server.registrar") if m.startswith("Register refused")]
    assert line == f"Register refused from {here} (ep 'diag-2'): 4.00 Bad Request: {refused.payload.decode()}"
    assert (
        f"Update refused from {here} (at /rd/unknown): 4.04 Not Found: no registration 'unknown'"
        in messages(caplog, "lwm2m.server.registrar")
    )
    assert messages(caplog, "lwm2m.server.role") == [
        f"GET request refused from {here}: 4.04 Not Found: no resource /nothing"
    ]


async def test_block1_out_of_order_is_logged_as_4_08(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    from lwm2m.coap.option import BlockOption

    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint() as device:
        port = device.port
        # Block 2 of a transfer the server never saw the start of (RFC 7959 §2.9.2).
        orphan = Message.build(
            Type.CON,
            Code.POST,
            uri_path="/rd",
            uri_query=["ep=diag-3"],
            options=[(27, BlockOption(2, True, 2).encode())],
            payload=b"x" * 64,
        )
        answer = await device.request(orphan, ("127.0.0.1", server.port), timeout=5)
    assert answer.code == Code.REQUEST_ENTITY_INCOMPLETE
    (line,) = messages(caplog, "lwm2m.coap.serving")
    assert line.startswith(f"POST /rd refused from 127.0.0.1:{port}: 4.08 Request Entity Incomplete: ")


async def test_security_refusal_is_logged_as_4_03(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint() as device:
        await server.security.put(SecurityInfo("locked", "locked-id", KEY))
        answer = await device.request(register("locked"), ("127.0.0.1", server.port), timeout=5)
    assert answer.code == Code.FORBIDDEN
    (line,) = messages(caplog, "lwm2m.server.security")
    assert "over plain CoAP: 4.03 Forbidden: endpoint 'locked' must use DTLS" in line


async def test_dtls_handshake_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        assert server.coaps_port
        wrong = DtlsClientConfig(psk=PskCredentials("dev-1-id", OTHER_KEY))
        async with open_dtls_endpoint(client=wrong) as client:
            with pytest.raises(DtlsHandshakeError):
                await client.connect(("127.0.0.1", server.coaps_port), timeout=5)
            here = f"127.0.0.1:{client.port}"
    lines = messages(caplog, "lwm2m.transport.dtls")
    assert any(line.startswith(f"DTLS handshake with {here} failed: ") for line in lines), lines


def test_a_flood_of_handshake_failures_is_counted_not_logged_line_by_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    log = SessionLog(window=10.0, burst=3)
    for i in range(1000):
        log.event(HandshakeFailed(("192.0.2.1", 1000 + i), "bad record MAC"), now=100.0 + i * 0.001)
    assert len(messages(caplog, "lwm2m.transport.dtls")) == 3
    # The next window tells how many were left out, then logs again.
    log.event(HandshakeFailed(("192.0.2.1", 9), "bad record MAC"), now=111.0)
    (summary,) = messages(caplog, "lwm2m.transport.dtls", logging.WARNING)
    assert summary.startswith("997 more DTLS handshake or session failures in 10 s")
    assert "192.0.2.1:1999" in summary
    assert len(messages(caplog, "lwm2m.transport.dtls")) == 4


async def test_bootstrap_sessions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        config = {"servers": [{"uri": server.uri, "shortServerId": 101, "lifetime": 120, "binding": "U"}]}
        await bs.set_config("bs-diag", BootstrapConfig.from_json(config))
        bs_events, events = bs.events(), server.events()
        async with Client("bs-diag", bootstrap=bs.uri):
            async for event in bs_events:
                if isinstance(event, BootstrapFinished):
                    break
            async for event in events:
                if isinstance(event, ClientRegistered):
                    break
        async with open_udp_endpoint() as device:
            port = device.port
            unknown = Message.build(Type.CON, Code.POST, uri_path="/bs", uri_query=["ep=stranger"])
            assert (await device.request(unknown, ("127.0.0.1", bs.port), timeout=5)).code == Code.BAD_REQUEST
    lines = messages(caplog, "lwm2m.bootstrap.server")
    assert any(
        line.startswith("bootstrap session of 'bs-diag' from 127.0.0.1:") and line.endswith(" started")
        for line in lines
    )
    assert any(
        line.startswith("bootstrap session of 'bs-diag' from ") and line.endswith(" finished")
        for line in lines
    )
    assert any(
        line.startswith(f"bootstrap session of 'stranger' from 127.0.0.1:{port} failed: 4.00 Bad Request: ")
        for line in lines
    ), lines


def test_describe_gives_one_line_per_coap_message() -> None:
    message = Message.build(
        Type.CON, Code.POST, mid=7, token=b"\x01\x02", uri_path="/rd", content_format=40, payload=b"</3/0>"
    )
    assert describe(message.encode()) == "CON POST mid=7 token=0102 /rd ct=40 6 B"
    answer = Message.build(Type.ACK, Code.CREATED, mid=7, token=b"\x01\x02")
    assert describe(answer.encode()) == f"ACK {code_text(Code.CREATED)} mid=7 token=0102 0 B"
    assert describe(b"\xff") == "undecodable datagram of 1 bytes"


async def test_no_message_lines_unless_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lwm2m")
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint() as device:
        assert (
            await device.request(register("quiet"), ("127.0.0.1", server.port), timeout=5)
        ).code == Code.CREATED
    assert not [r for r in caplog.records if r.name == "lwm2m.transport.wire"]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="lwm2m")
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint() as device:
        port = device.port
        assert (
            await device.request(register("loud"), ("127.0.0.1", server.port), timeout=5)
        ).code == Code.CREATED
    wire = [r.getMessage() for r in caplog.records if r.name == "lwm2m.transport.wire"]
    assert any(line.startswith(f"in  127.0.0.1:{port} CON POST ") and " /rd " in line for line in wire), wire
    assert any(line.startswith(f"out 127.0.0.1:{port} ACK 2.01 Created ") for line in wire), wire


async def test_debug_shows_coap_messages_inside_dtls_in_plaintext(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lwm2m")
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        assert server.coaps_port
        psk = DtlsClientConfig(psk=PskCredentials("dev-1-id", KEY))
        async with open_dtls_endpoint(client=psk) as client:
            created = await client.request(register("dev-1"), ("127.0.0.1", server.coaps_port), timeout=5)
            assert created.code == Code.CREATED
            here = f"127.0.0.1:{client.port}"
    wire = [r.getMessage() for r in caplog.records if r.name == "lwm2m.transport.wire"]
    assert any(line.startswith(f"in  {here} CON POST ") and " /rd " in line for line in wire), wire
    assert any(line.startswith(f"out {here} ACK 2.01 Created ") for line in wire), wire
    assert not any("undecodable" in line for line in wire), "records are traced after decryption"
    established = [r.getMessage() for r in caplog.records if r.name == "lwm2m.transport.dtls"]
    assert any(line.startswith(f"DTLS session with {here} established: identity ") for line in established)


def test_the_count_of_a_flood_is_told_with_the_next_event_after_it() -> None:
    from lwm2m.transport.dtls.events import SessionEstablished

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("lwm2m.transport.dtls")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        log = SessionLog(window=10.0, burst=1)
        for i in range(5):
            log.event(HandshakeFailed(("192.0.2.1", i), "bad"), now=float(i))
        assert len(records) == 1
        log.event(SessionEstablished(("192.0.2.2", 1), None), now=9.0)
        assert len(records) == 1  # still within the window
        log.event(SessionEstablished(("192.0.2.2", 1), None), now=10.5)
        assert [r.levelno for r in records] == [logging.INFO, logging.WARNING]
        assert records[1].getMessage().startswith("4 more DTLS handshake or session failures")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
