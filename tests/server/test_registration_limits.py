"""The server's registration limits (``RegistrationLimits``) over real loopback CoAP: each refusal is
a 4.xx with a diagnostic payload and a log line, and leaves no registration behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from tests.helpers.server import register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.option import decode_uint
from lwm2m.server.config import ServerConfig
from lwm2m.server.registrar import FULL_RETRY_AFTER, RegistrationLimits, RegistrationRate
from lwm2m.server.role import Server
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

LOG = "lwm2m.server.registrar"


def raw_register(ep: str, *query: str, payload: bytes = b"</1/0>,</3/0>") -> Message:
    return Message.build(
        Type.CON,
        Code.POST,
        uri_path="/rd",
        uri_query=[f"ep={ep}", *query],
        content_format=40,
        payload=payload,
    )


def update(location: tuple[str, ...], *query: str, payload: bytes = b"") -> Message:
    return Message.build(
        Type.CON,
        Code.POST,
        uri_path=list(location),
        uri_query=list(query),
        content_format=40 if payload else None,
        payload=payload,
    )


@asynccontextmanager
async def server_and_device(
    limits: RegistrationLimits, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[Server, CoapUdpEndpoint, tuple[str, int]]]:
    async with (
        Server(ServerConfig(port=0, registration_limits=limits)) as server,
        open_udp_endpoint(host, 0) as device,
    ):
        yield server, device, ("127.0.0.1", server.port)


def max_age(answer: Message) -> int | None:
    value = answer.option(OptionNumber.MAX_AGE)
    return None if value is None else decode_uint(value)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and "refused" in r.getMessage()]


async def test_long_endpoint_names_get_4_00(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG)
    async with server_and_device(RegistrationLimits(max_endpoint_length=16)) as (server, device, peer):
        answer = await device.request(raw_register("x" * 17, "lt=60"), peer, timeout=5)
        assert answer.code == Code.BAD_REQUEST
        assert answer.payload == b"Endpoint Client Name (ep) has 17 bytes; this server takes at most 16"
        assert await server.registrations() == []
        assert (await device.request(raw_register("x" * 16, "lt=60"), peer, timeout=5)).code == Code.CREATED
    (line,) = refusals(caplog)
    assert line.startswith("Register refused from 127.0.0.1:") and "'xxxxxxxxxxxxxxxxx'" in line


async def test_the_default_cap_is_255_bytes_and_log_lines_cut_long_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOG)
    async with server_and_device(RegistrationLimits()) as (server, device, peer):
        answer = await device.request(raw_register("é" * 128), peer, timeout=5)
        assert answer.code == Code.BAD_REQUEST and b"256 bytes" in answer.payload
        assert (await device.request(raw_register("é" * 127), peer, timeout=5)).code == Code.CREATED
        assert [r.endpoint for r in await server.registrations()] == ["é" * 127]
    (line,) = refusals(caplog)
    assert "é" * 64 + "…" in line and "é" * 65 not in line


async def test_lifetime_is_clamped_and_must_be_a_positive_integer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG)
    async with server_and_device(RegistrationLimits(max_lifetime=3600)) as (server, device, peer):
        for lt in ("0", "-5", "1.5", "forever"):
            answer = await device.request(raw_register("dev-1", f"lt={lt}"), peer, timeout=5)
            assert answer.code == Code.BAD_REQUEST, lt
            assert b"is not a positive integer of seconds" in answer.payload
        assert await server.registrations() == []
        huge = "999999999999999999999999999999"
        created = await device.request(raw_register("dev-1", f"lt={huge}"), peer, timeout=5)
        assert created.code == Code.CREATED
        assert (await server.registration("dev-1")).lifetime == 3600
        # An Update may not lengthen it beyond the maximum either; a shorter one is kept.
        assert (
            await device.request(update(created.location_path, "lt=86400"), peer, timeout=5)
        ).code == Code.CHANGED
        assert (await server.registration("dev-1")).lifetime == 3600
        assert (
            await device.request(update(created.location_path, "lt=120"), peer, timeout=5)
        ).code == Code.CHANGED
        assert (await server.registration("dev-1")).lifetime == 120
        bad = await device.request(update(created.location_path, "lt=0"), peer, timeout=5)
        assert bad.code == Code.BAD_REQUEST and b"lt='0'" in bad.payload
        assert (await server.registration("dev-1")).lifetime == 120
    messages = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert sum("shortened from" in m and "to 3600 s" in m for m in messages) == 2
    assert sum(m.startswith("Register refused") for m in messages) == 4
    assert sum(m.startswith("Update refused") for m in messages) == 1


async def test_payload_size_gets_4_13_with_size1(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG)
    payload = ",".join(f"</3303/{i}>" for i in range(40)).encode()  # 429 bytes
    async with server_and_device(RegistrationLimits(max_payload=400)) as (server, device, peer):
        answer = await device.request(raw_register("dev-1", payload=payload), peer, timeout=5)
        assert answer.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert answer.size1 == 400
        assert answer.payload == f"Register payload of {len(payload)} bytes: at most 400".encode()
        assert await server.registrations() == []
        created = await device.request(raw_register("dev-1"), peer, timeout=5)
        assert created.code == Code.CREATED
        too_big = await device.request(update(created.location_path, payload=payload), peer, timeout=5)
        assert too_big.code == Code.REQUEST_ENTITY_TOO_LARGE and too_big.size1 == 400
        assert len((await server.registration("dev-1")).objects) == 2
    lines = refusals(caplog)
    assert len(lines) == 2
    assert "(ep 'dev-1'): 4.13 Request Entity Too Large: payload of 429 bytes, more than 400" in lines[0]
    assert lines[1].startswith("Update refused") and "(at /rd/" in lines[1]


async def test_link_count_is_capped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG)
    links = ",".join(f"</3303/{i}>" for i in range(9)).encode()
    async with server_and_device(RegistrationLimits(max_links=8)) as (server, device, peer):
        answer = await device.request(raw_register("dev-1", payload=links), peer, timeout=5)
        assert answer.code == Code.BAD_REQUEST
        assert answer.payload == b"payload has 9 links; this server takes at most 8"
        created = await device.request(
            raw_register("dev-1", payload=links[: links.rindex(b",")]), peer, timeout=5
        )
        assert created.code == Code.CREATED
        refused = await device.request(update(created.location_path, payload=links), peer, timeout=5)
        assert refused.code == Code.BAD_REQUEST and b"9 links" in refused.payload
        assert len((await server.registration("dev-1")).objects) == 8
    assert len(refusals(caplog)) == 2


async def test_a_full_server_refuses_new_endpoints_with_4_29(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG)
    async with server_and_device(RegistrationLimits(max_registrations=2)) as (server, device, peer):
        first = await device.request(register("dev-1"), peer, timeout=5)
        assert (await device.request(register("dev-2"), peer, timeout=5)).code == Code.CREATED
        full = await device.request(register("dev-3"), peer, timeout=5)
        assert full.code == Code.TOO_MANY_REQUESTS
        assert max_age(full) == FULL_RETRY_AFTER
        assert full.payload == b"this server holds its maximum of 2 registrations"
        # A registered endpoint may register again, and update.
        again = await device.request(register("dev-1"), peer, timeout=5)
        assert again.code == Code.CREATED
        assert (
            await device.request(update(again.location_path, "lt=60"), peer, timeout=5)
        ).code == Code.CHANGED
        # Room comes back when one leaves.
        gone = Message.build(Type.CON, Code.DELETE, uri_path=list(again.location_path))
        assert (await device.request(gone, peer, timeout=5)).code == Code.DELETED
        assert (await device.request(register("dev-3"), peer, timeout=5)).code == Code.CREATED
        assert sorted(r.endpoint for r in await server.registrations()) == ["dev-2", "dev-3"]
        assert first.location_path != again.location_path
    (line,) = refusals(caplog)
    assert "'dev-3'" in line and "holds 2 registrations" in line


async def test_registration_rate_per_source_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOG)
    limits = RegistrationLimits(rate=0.01, burst=3)  # 3 at once, then one per 100 s
    async with server_and_device(limits) as (server, device, peer):
        answers = [await device.request(register(f"dev-{i}"), peer, timeout=5) for i in range(5)]
        assert [a.code for a in answers] == [Code.CREATED] * 3 + [Code.TOO_MANY_REQUESTS] * 2
        limited = answers[3]
        assert 1 <= (max_age(limited) or 0) <= 100
        assert limited.payload == b"too many registrations from this address: at most 0.01/s"
        # Updates are not counted.
        ok = await device.request(update(answers[0].location_path, "lt=60"), peer, timeout=5)
        assert ok.code == Code.CHANGED
        # Another source address has its own bucket (the same port, another loopback address).
        async with open_udp_endpoint("127.0.0.2", 0) as other:
            assert (await other.request(register("dev-9"), peer, timeout=5)).code == Code.CREATED
        assert len(await server.registrations()) == 4
        assert server.registrar.rate is not None and len(server.registrar.rate) == 2
    records = [r for r in caplog.records if r.name == LOG and "refused" in r.getMessage()]
    # The first refusal of a burst is a warning, the next ones are only debug lines.
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG]
    assert "'dev-3'" in records[0].getMessage() and "127.0.0.1" in records[0].getMessage()


async def test_no_rate_limit_when_rate_is_none() -> None:
    async with server_and_device(RegistrationLimits(rate=None, burst=1)) as (server, device, peer):
        for i in range(5):
            assert (await device.request(register(f"dev-{i}"), peer, timeout=5)).code == Code.CREATED
        assert server.registrar.rate is None


# --- the rate table, alone -----------------------------------------------------------------


def test_token_bucket_refills_at_the_rate() -> None:
    rate = RegistrationRate(rate=2.0, burst=2, max_sources=10)
    assert rate.take("10.0.0.1", 0.0) == 0.0
    assert rate.take("10.0.0.1", 0.0) == 0.0
    assert rate.take("10.0.0.1", 0.0) == pytest.approx(0.5)
    assert rate.take("10.0.0.1", 0.25) == pytest.approx(0.25)
    assert rate.take("10.0.0.1", 0.5) == 0.0
    assert rate.take("10.0.0.2", 0.5) == 0.0  # its own bucket


def test_rate_table_is_bounded_in_size_and_time() -> None:
    rate = RegistrationRate(rate=1.0, burst=5, max_sources=3)
    for i in range(3):
        rate.take(f"10.0.0.{i}", float(i))
    assert len(rate) == 3
    # Full: the least recently seen address goes first.
    rate.take("10.0.0.9", 3.0)
    assert len(rate) == 3
    assert rate.take("10.0.0.0", 3.0) == 0.0  # a fresh bucket again; 10.0.0.1 went
    assert len(rate) == 3
    # The timer's sweep drops every address idle for burst / rate = 5 s, and stops at the first
    # one still in use.
    assert rate.sweep(7.9) == 1  # 10.0.0.2 (seen at 2.0)
    assert len(rate) == 2
    assert rate.sweep(100.0) == 2
    assert len(rate) == 0


async def test_the_expiry_timer_sweeps_the_rate_table() -> None:
    clock = [0.0]
    limits = RegistrationLimits(rate=10.0, burst=10)
    async with Server(ServerConfig(port=0, registration_limits=limits, expiry_interval=0.05)) as server:
        server.registrar._monotonic = lambda: clock[0]
        async with open_udp_endpoint("127.0.0.1", 0) as device:
            peer = ("127.0.0.1", server.port)
            assert (await device.request(register("dev-1"), peer, timeout=5)).code == Code.CREATED
        rate = server.registrar.rate
        assert rate is not None and len(rate) == 1
        clock[0] = 1.5  # idle longer than burst / rate = 1 s
        for _ in range(100):
            if len(rate) == 0:
                break
            await asyncio.sleep(0.05)
        assert len(rate) == 0


def test_ipv6_sources_share_a_bucket_per_64() -> None:
    rate = RegistrationRate(rate=0.001, burst=1, max_sources=10)
    assert rate.take("2001:db8:1:2::1", 0.0) == 0.0
    assert rate.take("2001:db8:1:2:ffff::7", 0.0) > 0  # the same /64
    assert rate.take("2001:db8:1:3::1", 0.0) == 0.0
    assert rate.take("192.0.2.1", 0.0) == 0.0
    assert rate.take("::ffff:192.0.2.1", 0.0) > 0  # IPv4-mapped: the IPv4 address's bucket


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_endpoint_length": 256}, "max_endpoint_length must be 1..255"),
        ({"max_endpoint_length": 0}, "max_endpoint_length must be 1..255"),
        ({"max_endpoint_length": "64"}, "max_endpoint_length must be 1..255"),
        ({"max_lifetime": 0}, "max_lifetime must be a positive integer"),
        ({"max_payload": -1}, "max_payload must be a positive integer"),
        ({"max_links": 1.5}, "max_links must be a positive integer"),
        ({"max_registrations": 0}, "max_registrations must be a positive integer"),
        ({"burst": 0}, "burst must be a positive integer"),
        ({"max_sources": 0}, "max_sources must be a positive integer"),
        ({"rate": 0}, "rate must be a positive number"),
        ({"rate": float("inf")}, "rate must be a positive number"),
        ({"rate": float("nan")}, "rate must be a positive number"),
        ({"rate": "fast"}, "rate must be a positive number"),
        ({"rate": True}, "rate must be a positive number"),
    ],
)
def test_limits_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegistrationLimits(**options)


def test_default_limits() -> None:
    d = RegistrationLimits()
    assert (d.max_endpoint_length, d.max_lifetime, d.max_registrations) == (255, 604_800, 1_000_000)
    assert (d.max_payload, d.max_links, d.rate, d.burst) == (65_536, 1_024, 100.0, 1_000)


async def test_a_flood_of_refusals_is_logged_within_a_budget(caplog: pytest.LogCaptureFixture) -> None:
    """10,000 Updates at unknown locations and 10,000 too-long names within 10 s of a virtual
    clock: a few lines per kind of refusal, then one count each (told by the periodic expiry)."""
    from lwm2m.server.registrar import Registrar
    from lwm2m.storage.memory import MemoryStore

    caplog.set_level(logging.INFO, LOG)
    clock = [1000.0]
    store = MemoryStore.create()
    registrar = Registrar(
        store.registrations,
        store.observations,
        lambda event: None,
        limits=RegistrationLimits(max_endpoint_length=16, rate=None),
        monotonic=lambda: clock[0],
    )
    for i in range(10_000):
        clock[0] = 1000.0 + i * 0.0005
        peer = (f"192.0.2.{i % 250}", 5683)
        gone = await registrar.handle(update(("rd", f"nowhere{i}")), peer)
        assert gone.code == Code.NOT_FOUND
        long = await registrar.handle(raw_register("x" * 17, "lt=60"), peer)
        assert long.code == Code.BAD_REQUEST
    lines = refusals(caplog)
    assert len(lines) == 40  # 20 of each kind
    assert sum("4.04 Not Found" in line for line in lines) == 20
    clock[0] = 1011.0
    await registrar.expire()
    counts = [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]
    assert sorted(line.split(" in 10 s ")[0] for line in counts) == [
        "9980 more Registration Interface requests refused with 4.00 Bad Request",
        "9980 more Registration Interface requests refused with 4.04 Not Found",
    ]
    assert len(caplog.records) <= 45
