"""Our Client against an LwM2M server written here on aiocoap (a CoAP stack we did not write).

The aiocoap side keeps a small registration directory (POST /rd, then POST and
DELETE on /rd/{id}) and sends its device-management requests to the address the
Register came from. Payloads are built by hand and decoded here by hand (TLV) or
with cbor2 (SenML-CBOR), never with our codecs, so the client's encoding is
checked against independent bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import aiocoap.resource as aioresource
import cbor2
import pytest
from tests.helpers.ports import free_udp_port

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig

TEXT, LINK, SENML_CBOR, TLV = 0, 40, 112, 11542
TOLERANCE = 0.3  # seconds of scheduling slack allowed around pmin and pmax


# --- the aiocoap LwM2M server ----------------------------------------------------------------------


@dataclass
class Registration:
    location: str
    query: dict[str, str]
    links: str
    remote: Any  # aiocoap's address of the client, where requests go


@dataclass
class Directory:
    """What the registration interface saw: (operation, location, query, payload) in order."""

    site: aioresource.Site
    registrations: dict[str, Registration] = field(default_factory=dict)
    seen: asyncio.Queue[tuple[str, str, dict[str, str], str]] = field(default_factory=asyncio.Queue)

    async def next(self, operation: str, timeout: float = 5) -> tuple[str, dict[str, str], str]:
        async with asyncio.timeout(timeout):
            while True:
                op, location, query, links = await self.seen.get()
                if op == operation:
                    return location, query, links


def _query(request: aiocoap.Message) -> dict[str, str]:
    return dict(q.partition("=")[::2] for q in request.opt.uri_query)


class RegisterResource(aioresource.Resource):
    """POST /rd: a Register; answers 2.01 with Location-Path rd/{id} (LwM2M-TS-Transport 1.2 §6.2)."""

    def __init__(self, directory: Directory) -> None:
        super().__init__()
        self.directory = directory

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        query = _query(request)
        if "ep" not in query:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST)
        location = str(len(self.directory.registrations) + 1)
        links = request.payload.decode()
        self.directory.registrations[location] = Registration(location, query, links, request.remote)
        self.directory.site.add_resource(["rd", location], RegistrationResource(self.directory, location))
        self.directory.seen.put_nowait(("register", location, query, links))
        return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", location))


class RegistrationResource(aioresource.Resource):
    """/rd/{id}: POST is an Update, DELETE a De-register."""

    def __init__(self, directory: Directory, location: str) -> None:
        super().__init__()
        self.directory = directory
        self.location = location

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        links = request.payload.decode()
        self.directory.seen.put_nowait(("update", self.location, _query(request), links))
        return aiocoap.Message(code=aiocoap.CHANGED)

    async def render_delete(self, request: aiocoap.Message) -> aiocoap.Message:
        self.directory.registrations.pop(self.location, None)
        self.directory.site.remove_resource(["rd", self.location])
        self.directory.seen.put_nowait(("deregister", self.location, {}, ""))
        return aiocoap.Message(code=aiocoap.DELETED)


@dataclass
class World:
    ctx: aiocoap.Context
    directory: Directory
    client: Client
    device: Device
    remote: Any = None

    async def request(self, code: aiocoap.numbers.codes.Code, path: str, **options: Any) -> aiocoap.Message:
        """Send a request to the client and wait for its answer (options as for :meth:`start`)."""
        return await asyncio.wait_for(self.start(code, path, **options).response, 5)

    def start(
        self,
        code: aiocoap.numbers.codes.Code,
        path: str,
        *,
        accept: int | None = None,
        content_format: int | None = None,
        payload: bytes = b"",
        query: tuple[str, ...] = (),
        observe: int | None = None,
    ) -> Any:
        message = aiocoap.Message(code=code, payload=payload)
        message.opt.uri_path = tuple(s for s in path.split("/") if s)
        if query:
            message.opt.uri_query = query
        if accept is not None:
            message.opt.accept = accept
        if content_format is not None:
            message.opt.content_format = content_format
        if observe is not None:
            message.opt.observe = observe
        message.remote = self.remote  # LwM2M's role reversal: to where the Register came from
        return self.ctx.request(message)


class Device(ObjectInstance):
    """The Device object, recording what the server executes."""

    object_id = 3

    def __init__(self) -> None:
        super().__init__(0, {0: "aiocoap-interop", 16: "U"})
        self.executed: list[tuple[int, str]] = []

    def execute(self, resource_id: int, arguments: str) -> None:
        self.executed.append((resource_id, arguments))


async def aiocoap_server() -> tuple[aiocoap.Context, Directory, int]:
    """The aiocoap LwM2M server on a free loopback port."""
    site = aioresource.Site()
    directory = Directory(site)
    site.add_resource(["rd"], RegisterResource(directory))
    port = free_udp_port()
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    return ctx, directory, port


@pytest.fixture
async def world() -> AsyncIterator[World]:
    ctx, directory, port = await aiocoap_server()
    device = Device()
    temperature = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
    client = Client(
        "aio-dev", f"coap://127.0.0.1:{port}", objects=[device, temperature], config=ClientConfig(lifetime=60)
    )
    try:
        await client.start()
        await client.wait_registered(5)
        location, _, _ = await directory.next("register")
        w = World(ctx, directory, client, device, directory.registrations[location].remote)
        yield w
    finally:
        await client.stop()
        await ctx.shutdown()


# --- independent decoders ----------------------------------------------------------------------------


def tlv_items(data: bytes) -> list[tuple[int, int, bytes]]:
    """(kind bits 7-6, identifier, value bytes) of each top-level TLV (LwM2M-TS-Core 1.2 §7.4.3)."""
    out: list[tuple[int, int, bytes]] = []
    i = 0
    while i < len(data):
        t = data[i]
        i += 1
        if t & 0x20:
            ident = int.from_bytes(data[i : i + 2], "big")
            i += 2
        else:
            ident = data[i]
            i += 1
        size_bytes = (t >> 3) & 0x03
        if size_bytes:
            length = int.from_bytes(data[i : i + size_bytes], "big")
            i += size_bytes
        else:
            length = t & 0x07
        out.append((t & 0xC0, ident, data[i : i + length]))
        i += length
    assert i == len(data), "TLV items overran the payload"
    return out


def tlv_float(value: bytes) -> float:
    return struct.unpack(">f" if len(value) == 4 else ">d", value)[0]


def tlv(kind: int, ident: int, value: bytes) -> bytes:
    """One TLV, encoded by hand."""
    head = kind
    ident_bytes = bytes([ident]) if ident <= 0xFF else ident.to_bytes(2, "big")
    if ident > 0xFF:
        head |= 0x20
    if len(value) < 8:
        return bytes([head | len(value)]) + ident_bytes + value
    assert len(value) <= 0xFF
    return bytes([head | 0x08]) + ident_bytes + bytes([len(value)]) + value


def senml_values(payload: bytes) -> dict[str, Any]:
    """SenML-CBOR (RFC 8428 labels -2 bn, 0 n, 2 v, 3 vs) as {full name: value}."""
    out: dict[str, Any] = {}
    base = ""
    for record in cbor2.loads(payload):
        base = record.get(-2, base)
        name = base + record.get(0, "")
        value = next(record[k] for k in (2, 3, 4, 8) if k in record)
        out[name] = value
    return out


# --- tests ---------------------------------------------------------------------------------------


async def test_registers_with_the_aiocoap_server_and_deregisters_on_stop() -> None:
    ctx, directory, port = await aiocoap_server()
    try:
        objects = [ObjectInstance(0, {5700: 21.5}, object_id=3303)]
        client = Client(
            "aio-reg", f"coap://127.0.0.1:{port}", objects=objects, config=ClientConfig(lifetime=90)
        )
        async with client:
            await client.wait_registered(5)
            location, query, links = await directory.next("register")
            assert query["ep"] == "aio-reg" and query["lt"] == "90" and query["lwm2m"] == "1.2"
            assert query.get("b", "U") == "U"
            assert client.location == location
            listed = {link.split(";")[0] for link in links.split(",")}
            assert {"</3/0>", "</3303/0>", "</1/0>"} <= listed
            assert "</0/0>" not in listed  # Security is for the bootstrap server only
        assert (await directory.next("deregister"))[0] == location
        assert directory.registrations == {}
    finally:
        await ctx.shutdown()


async def test_read_instance_in_tlv_and_senml_cbor(world: World) -> None:
    answer = await world.request(aiocoap.GET, "/3303/0", accept=TLV)
    assert answer.code == aiocoap.CONTENT and answer.opt.content_format == TLV
    items = tlv_items(answer.payload)
    assert all(kind == 0xC0 for kind, _, _ in items)  # resources with a value
    values = {ident: value for _, ident, value in items}
    assert set(values) == {5700, 5701}
    assert tlv_float(values[5700]) == 21.5 and values[5701] == b"Cel"

    answer = await world.request(aiocoap.GET, "/3303/0", accept=SENML_CBOR)
    assert answer.code == aiocoap.CONTENT and answer.opt.content_format == SENML_CBOR
    assert senml_values(answer.payload) == {"/3303/0/5700": 21.5, "/3303/0/5701": "Cel"}

    # Without Accept a 1.2 client answers in SenML-CBOR.
    answer = await world.request(aiocoap.GET, "/3303/0")
    assert answer.opt.content_format == SENML_CBOR
    assert senml_values(answer.payload)["/3303/0/5700"] == 21.5

    # The object: one object instance TLV wrapping the resources.
    answer = await world.request(aiocoap.GET, "/3303", accept=TLV)
    ((kind, ident, inner),) = tlv_items(answer.payload)
    assert (kind, ident) == (0x00, 0)
    assert {i for _, i, _ in tlv_items(inner)} == {5700, 5701}


async def test_read_single_resource_as_text(world: World) -> None:
    answer = await world.request(aiocoap.GET, "/3303/0/5700", accept=TEXT)
    assert answer.code == aiocoap.CONTENT and answer.opt.content_format == TEXT
    assert float(answer.payload.decode()) == 21.5
    answer = await world.request(aiocoap.GET, "/3/0/0", accept=TEXT)
    assert answer.payload == b"aiocoap-interop"


async def test_write_text_and_tlv_then_read_back(world: World) -> None:
    # 5701 (Sensor Units) is read-only in Temperature 1.1; 5750 (Application Type) is writable.
    answer = await world.request(
        aiocoap.PUT, "/3303/0/5750", content_format=TEXT, payload="Indoor ✓".encode()
    )
    assert answer.code == aiocoap.CHANGED
    answer = await world.request(aiocoap.GET, "/3303/0/5750", accept=TEXT)
    assert answer.payload.decode() == "Indoor ✓"

    # Replace the instance: resource TLV 0xE7 = value, 16-bit ID, 7-byte length; 0x1676 = 5750.
    payload = b"\xe7\x16\x76Outdoor"
    assert payload == tlv(0xC0, 5750, b"Outdoor")
    answer = await world.request(aiocoap.PUT, "/3303/0", content_format=TLV, payload=payload)
    assert answer.code == aiocoap.CHANGED
    answer = await world.request(aiocoap.GET, "/3303/0", accept=TLV)
    values = {ident: value for _, ident, value in tlv_items(answer.payload)}
    assert values[5750] == b"Outdoor" and tlv_float(values[5700]) == 21.5

    # A partial update (POST) of the Device's writable UTC Offset, in TLV.
    answer = await world.request(aiocoap.POST, "/3/0", content_format=TLV, payload=tlv(0xC0, 14, b"+02:00"))
    assert answer.code == aiocoap.CHANGED
    assert world.device.get(14) == "+02:00"


async def test_execute(world: World) -> None:
    answer = await world.request(aiocoap.POST, "/3/0/4")
    assert answer.code == aiocoap.CHANGED
    answer = await world.request(aiocoap.POST, "/3/0/4", payload=b"0='now',1")
    assert answer.code == aiocoap.CHANGED
    assert world.device.executed == [(4, ""), (4, "0='now',1")]
    answer = await world.request(aiocoap.POST, "/3/0/4", payload=b"x=1")
    assert answer.code == aiocoap.BAD_REQUEST  # not the argument syntax of §5.4.5
    answer = await world.request(aiocoap.POST, "/3/0/0")
    assert answer.code == aiocoap.METHOD_NOT_ALLOWED  # Manufacturer is not executable
    assert len(world.device.executed) == 2


async def test_observe_follows_pmin_and_pmax(world: World) -> None:
    answer = await world.request(aiocoap.PUT, "/3303/0/5700", query=("pmin=1", "pmax=2"))
    assert answer.code == aiocoap.CHANGED
    answer = await world.request(aiocoap.GET, "/3303/0", accept=LINK)
    assert answer.code == aiocoap.CONTENT and answer.opt.content_format == LINK
    links = answer.payload.decode().split(",")
    assert "</3303/0/5700>;pmin=1;pmax=2" in links, links
    assert "</3303/0>" in links and "</3303/0/5701>" in links

    loop = asyncio.get_running_loop()
    seen: list[tuple[float, float]] = []  # (arrival, value), the first answer included

    pending = world.start(aiocoap.GET, "/3303/0/5700", accept=TEXT, observe=0)
    first = await asyncio.wait_for(pending.response, 5)
    assert first.code == aiocoap.CONTENT and first.opt.observe is not None
    seen.append((loop.time(), float(first.payload.decode())))

    async def listen() -> None:
        async for message in pending.observation:
            seen.append((loop.time(), float(message.payload.decode())))

    listener = asyncio.create_task(listen())
    temperature = world.client.tree.instance(3303, 0)
    assert temperature is not None
    value = 21.5
    start = loop.time()
    while loop.time() - start < 1.5:  # a change every 0.1 s for 1.5 s
        await asyncio.sleep(0.1)
        value += 0.5
        temperature.set(5700, value)
    await asyncio.sleep(4.8)  # then none: pmax keeps notifications coming
    end = loop.time()
    pending.observation.cancel()
    listener.cancel()

    times = [t for t, _ in seen]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 1 - TOLERANCE for g in gaps), gaps  # never two closer than pmin
    last_change = next(i for i, (_, v) in enumerate(seen) if v == value)
    # Fifteen changes in 1.5 s come out as about one notification per pmin, not fifteen.
    assert 2 <= last_change <= 3, seen
    assert all(v > 21.5 for _, v in seen[1:])
    # Then, without change, the same value at least every pmax until the end of the watch.
    idle = times[last_change:]
    assert len(idle) >= 3, seen
    assert all(v == value for _, v in seen[last_change:]), seen
    checkpoints = [*idle, end]
    assert all(b - a <= 2 + TOLERANCE for a, b in itertools.pairwise(checkpoints)), seen


async def test_error_codes(world: World) -> None:
    async def code(method: aiocoap.numbers.codes.Code, path: str, **kw: Any) -> Any:
        return (await world.request(method, path, **kw)).code

    assert await code(aiocoap.GET, "/3303/7", accept=TLV) == aiocoap.NOT_FOUND  # no such instance
    assert await code(aiocoap.GET, "/3304/0", accept=TLV) == aiocoap.NOT_FOUND  # object not served
    assert await code(aiocoap.GET, "/9999/0") == aiocoap.NOT_FOUND  # object unknown to the catalogue
    assert await code(aiocoap.GET, "/3303/0/5601", accept=TEXT) == aiocoap.NOT_FOUND  # resource absent
    assert await code(aiocoap.GET, "/0/0") == aiocoap.NOT_FOUND  # Security is hidden from servers
    # Sensor Value and Sensor Units are read-only.
    for path in ("/3303/0/5700", "/3303/0/5701"):
        assert await code(aiocoap.PUT, path, content_format=TEXT, payload=b"1") == aiocoap.METHOD_NOT_ALLOWED
    # application/json (50) and an unassigned number are no LwM2M formats.
    for accept in (50, 65000):
        assert await code(aiocoap.GET, "/3303/0", accept=accept) == aiocoap.NOT_ACCEPTABLE
    assert await code(aiocoap.GET, "/3303/0", accept=TEXT) == aiocoap.NOT_ACCEPTABLE  # text: one value only
    for fmt in (50, 65000, LINK):
        answer = await code(aiocoap.PUT, "/3303/0/5750", content_format=fmt, payload=b"x")
        assert answer == aiocoap.UNSUPPORTED_CONTENT_FORMAT, fmt
    # Bad payloads: a TLV whose length overruns, a non-time text for Current Time (/3/0/13).
    assert await code(aiocoap.PUT, "/3303/0", content_format=TLV, payload=b"\xe8\x16\x76\x09ab") == (
        aiocoap.BAD_REQUEST
    )
    assert await code(aiocoap.PUT, "/3/0/13", content_format=TEXT, payload=b"noon") == aiocoap.BAD_REQUEST
    assert await code(aiocoap.PUT, "/3303/0", query=("pmin=5", "pmax=2")) == aiocoap.BAD_REQUEST


async def test_create_and_delete(world: World) -> None:
    # Create /3303/1: an object instance TLV (id 1) wrapping Sensor Value 30.25 (a 64-bit float)
    # and Application Type.
    body = tlv(0xC0, 5700, struct.pack(">d", 30.25)) + tlv(0xC0, 5750, b"Attic")
    answer = await world.request(aiocoap.POST, "/3303", content_format=TLV, payload=tlv(0x00, 1, body))
    assert answer.code == aiocoap.CREATED
    assert tuple(answer.opt.location_path) == ("3303", "1")
    _, _, links = await world.directory.next("update")  # the new instance is announced
    assert "</3303/1>" in links.split(",")
    answer = await world.request(aiocoap.GET, "/3303/1", accept=SENML_CBOR)
    assert senml_values(answer.payload) == {"/3303/1/5700": 30.25, "/3303/1/5750": "Attic"}
    again = await world.request(aiocoap.POST, "/3303", content_format=TLV, payload=tlv(0x00, 1, body))
    assert again.code == aiocoap.BAD_REQUEST

    answer = await world.request(aiocoap.DELETE, "/3303/1")
    assert answer.code == aiocoap.DELETED
    _, _, links = await world.directory.next("update")
    assert "</3303/1>" not in links.split(",")
    assert (await world.request(aiocoap.GET, "/3303/1", accept=TLV)).code == aiocoap.NOT_FOUND
    assert (await world.request(aiocoap.DELETE, "/3303/1")).code == aiocoap.NOT_FOUND
