"""The server hosts firmware packages at ``coap[s]://server/fw/{id}`` (Block2) and, with the web app, at
``http://…/fw/{id}``: our client's Firmware Update object pulls them by Package URI (/5/0/1) and
installs them; libcoap's client fetches one block-wise; unknown ids get 4.04."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.client import until
from tests.helpers.client_core import ENDPOINT, record
from tests.helpers.libcoap import run_process
from tests.helpers.web import served

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.device import Device
from lwm2m.client.core.firmware import FirmwareUpdate, State, UpdateResult
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import StoreError
from lwm2m.fleet.packages import Packages
from lwm2m.server.config import ServerConfig
from lwm2m.server.hosting import HostedPackage
from lwm2m.server.role import Server
from lwm2m.simulator.objects import named_package
from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.firmware import FirmwarePackage
from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials, open_dtls_endpoint
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web.app import create_app

DATA = b"FW" + os.urandom(20_000)  # 20 blocks of 1024 bytes


class Counting:
    """A package source that counts the look-ups (a Packages underneath)."""

    def __init__(self, packages: Packages) -> None:
        self.packages = packages
        self.asked = 0

    async def hosted(self, package_id: str) -> HostedPackage | None:
        self.asked += 1
        return await self.packages.hosted(package_id)


@contextlib.asynccontextmanager
async def device_with_firmware(server: Server) -> AsyncIterator[tuple[FirmwareUpdate, Device]]:
    """Our client, registered, with Device and Firmware Update objects that describe a pulled
    package by its URI's NAME@VERSION and check its SHA-256 against the one uploaded."""
    device = Device(firmware_version="1.0.0")
    firmware: FirmwareUpdate

    def verify(package: bytes) -> bool:
        named = named_package(str(firmware.get(FirmwareUpdate.PACKAGE_URI)))
        if named is not None:
            firmware.describe_package(*named)
        return hashlib.sha256(package).hexdigest() == hashlib.sha256(DATA).hexdigest()

    firmware = FirmwareUpdate(verify=verify, device=device)
    client = Client(ENDPOINT, server.uri, objects=[device, firmware], config=ClientConfig(lifetime=30))
    async with client:
        await client.wait_registered(5)
        yield firmware, device


async def pull_and_update(server: Server, uri: str) -> None:
    async with device_with_firmware(server) as (firmware, device):
        answer = await server.write(ENDPOINT, "/5/0/1", [record("/5/0/1", uri)])
        assert answer.success, answer
        await until(lambda: firmware.state != State.DOWNLOADING, 10)
        assert (firmware.state, firmware.result) == (State.DOWNLOADED, UpdateResult.INITIAL)
        assert firmware.package == DATA
        assert (await server.read(ENDPOINT, "/5/0/3")).records[0].value == State.DOWNLOADED
        assert (await server.execute(ENDPOINT, "/5/0/2")).success
        await until(lambda: firmware.state == State.IDLE, 5)
        assert firmware.result == UpdateResult.SUCCESS
        assert device.firmware_version == "2.1.0"
        assert (await server.read(ENDPOINT, "/3/0/3")).records[0].value == "2.1.0"
        assert (await server.read(ENDPOINT, "/5/0/7")).records[0].value == "2.1.0"


async def test_our_client_pulls_over_coap_block_wise_and_updates() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        packages = Packages(server.store.firmware)
        counting = Counting(packages)
        server.host_packages(counting)
        stored = await packages.add("lamp", "2.1.0", DATA)
        uri = packages.uris(stored, coap=server.uri)["coap"]
        assert uri == f"{server.uri}/fw/{stored.id}/lamp@2.1.0"
        await pull_and_update(server, uri)
        # The endpoint kept the body for the later blocks: the source was asked once.
        assert counting.asked == 1


async def test_our_client_pulls_over_http_and_updates() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server)
        stored = await app.state.packages.add("lamp", "2.1.0", DATA)
        async with served(app) as base:
            uri = Packages.uris(stored, http=base)["http"]
            await pull_and_update(server, uri)


async def _get(port: int, path: list[str], code: Code = Code.GET, *, block2: int | None = None) -> Message:
    options: list[tuple[int, bytes]] = []
    if block2 is not None:
        options.append((OptionNumber.BLOCK2, bytes([block2])))
    async with open_udp_endpoint("127.0.0.1", 0) as peer:
        request = Message.build(Type.CON, code, uri_path=path, options=options)
        return await peer.request(request, ("127.0.0.1", port), timeout=5)


async def test_coap_answers_with_the_etag_and_refuses_unknown_ids_and_other_methods() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        packages = Packages(server.store.firmware)
        unknown = ["fw", "AAAAAAAAAAAAAAAAAAAAAA"]
        assert (await _get(server.port, unknown)).code == Code.NOT_FOUND  # nothing hosted yet
        server.host_packages(packages)
        stored = await packages.add("lamp", "2.1.0", DATA)
        whole = await _get(server.port, ["fw", stored.id])
        assert whole.code == Code.CONTENT and whole.payload == DATA
        assert whole.option(OptionNumber.ETAG) == bytes.fromhex(stored.sha256)[:8]
        assert whole.content_format == 42  # application/octet-stream
        small = await _get(server.port, ["fw", stored.id, "lamp@2.1.0"], block2=0x02)  # 64-byte blocks
        assert small.payload == DATA
        for path in (["fw", "AAAAAAAAAAAAAAAAAAAAAA"], ["fw", "../x"], ["fw"], ["fw", stored.id, "a", "b"]):
            assert (await _get(server.port, path)).code == Code.NOT_FOUND, path
        assert (await _get(server.port, ["fw", stored.id], Code.PUT)).code == Code.METHOD_NOT_ALLOWED
        await packages.remove(stored.id)
        assert (await _get(server.port, ["fw", stored.id])).code == Code.NOT_FOUND


async def test_coaps_serves_packages_on_the_dtls_endpoint() -> None:
    key = bytes(range(16))
    async with Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dev-1", psk_identity="dev-1-id", psk_key=key))
        packages = Packages(server.store.firmware)
        server.host_packages(packages)
        stored = await packages.add("lamp", "2.1.0", DATA)
        assert server.coaps_uri is not None
        assert packages.uris(stored, coaps=server.coaps_uri)["coaps"].startswith("coaps://127.0.0.1:")
        config = DtlsClientConfig(psk=PskCredentials("dev-1-id", key))
        async with open_dtls_endpoint(client=config) as device:
            request = Message.build(Type.CON, Code.GET, uri_path=["fw", stored.id])
            answer = await device.request(request, ("127.0.0.1", server.coaps_port), timeout=5)
        assert answer.code == Code.CONTENT and answer.payload == DATA


async def test_devices_downloading_together_load_the_package_once() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        packages = Packages(server.store.firmware)
        stored = await packages.add("lamp", "2.1.0", DATA)
        reads = 0
        original = server.store.firmware.read

        async def counted(package_id: str, start: int = 0, end: int | None = None) -> bytes | None:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.01)
            return await original(package_id, start, end)

        server.store.firmware.read = counted  # type: ignore[method-assign]
        got = await asyncio.gather(*(packages.hosted(stored.id) for _ in range(10)))
        assert reads == 1 and all(h is not None and h.body == DATA for h in got)
        assert await packages.hosted(stored.id) is got[0]  # kept in memory


async def test_libcoap_fetches_a_package_block_wise(tmp_path: FsPath) -> None:
    client_bin = shutil.which("coap-client-notls")
    if client_bin is None:
        pytest.fail("coap-client-notls is not installed: install Debian's libcoap3-bin (`make debs`)")
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        packages = Packages(server.store.firmware)
        server.host_packages(packages)
        stored: FirmwarePackage = await packages.add("lamp", "2.1.0", DATA)
        out = tmp_path / "package.bin"
        uri = f"coap://127.0.0.1:{server.port}/fw/{stored.id}"
        result = await run_process(client_bin, "-b", "256", "-o", str(out), uri)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == DATA


class Unreachable:
    async def hosted(self, package_id: str) -> HostedPackage | None:
        raise StoreError("the Redis store redis://192.0.2.1:6379/0: connection refused")


async def test_a_store_that_fails_is_503() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        server.host_packages(Unreachable())
        answer = await _get(server.port, ["fw", "AAAAAAAAAAAAAAAAAAAAAA"])
        assert answer.code == Code.SERVICE_UNAVAILABLE
        assert answer.payload == b"the package store cannot be reached"
