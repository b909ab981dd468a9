"""Firmware Update (object 5): the state machine of §E.6, push through our server, pull over CoAP and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from tests.helpers.client import until
from tests.helpers.client_core import record, running, values

from lwm2m.client.core.device import Device
from lwm2m.client.core.firmware import DeliveryMethod, FirmwareUpdate, Protocol, State, UpdateResult
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import FirmwareError, MethodNotAllowed
from lwm2m.server.observation import ServerObservation
from lwm2m.transport.udp import open_udp_endpoint

PACKAGE = b"FW" + os.urandom(2998)  # 3000 bytes: block-wise at 1024-byte blocks


async def settle(fw: FirmwareUpdate, *states: State, timeout: float = 2.0) -> None:
    """Wait until ``fw`` is in one of ``states`` and its work is done."""
    await until(lambda: fw.state in states and not fw._tasks, timeout, every=0.005)


class Installer:
    """An ``on_update`` hook that records what it installed and answers ``ok``."""

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.installed: list[bytes] = []

    async def __call__(self, package: bytes) -> bool:
        await asyncio.sleep(0)
        self.installed.append(package)
        return self.ok


# --- the state machine -------------------------------------------------------------------------


async def test_push_update_success_propagates_the_version() -> None:
    device = Device(firmware_version="1.0")
    installer = Installer()
    fw = FirmwareUpdate(on_update=installer, device=device, verify=lambda p: p.startswith(b"FW"))
    assert (fw.state, fw.result) == (State.IDLE, UpdateResult.INITIAL)
    with pytest.raises(MethodNotAllowed):
        fw.execute(FirmwareUpdate.UPDATE, "")  # nothing downloaded
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    assert (fw.state, fw.package) == (State.DOWNLOADED, PACKAGE)
    with pytest.raises(MethodNotAllowed):
        fw.write(FirmwareUpdate.PACKAGE, b"FW another")  # reset first
    fw.describe_package("app", "2.0")
    fw.execute(FirmwareUpdate.UPDATE, "")
    assert fw.state == State.UPDATING
    with pytest.raises(MethodNotAllowed):
        fw.execute(FirmwareUpdate.CANCEL, "")  # §E.6: too late to cancel
    with pytest.raises(MethodNotAllowed):
        fw.write(FirmwareUpdate.PACKAGE_URI, "")  # nor to reset
    await settle(fw, State.IDLE)
    assert fw.result == UpdateResult.SUCCESS
    assert installer.installed == [PACKAGE]
    assert device.firmware_version == "2.0"
    assert fw.package is None
    assert fw.get(FirmwareUpdate.LAST_STATE_CHANGE) > 0


async def test_failed_update_returns_to_downloaded_for_another_try() -> None:
    installer = Installer(ok=False)
    fw = FirmwareUpdate(on_update=installer)
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    fw.execute(FirmwareUpdate.UPDATE, "")
    await settle(fw, State.DOWNLOADED)
    assert fw.result == UpdateResult.UPDATE_FAILED and fw.package == PACKAGE
    installer.ok = True
    fw.execute(FirmwareUpdate.UPDATE, "")
    await settle(fw, State.IDLE)
    assert fw.result == UpdateResult.SUCCESS and len(installer.installed) == 2


async def test_a_hook_chooses_the_result_with_firmware_error() -> None:
    def refuse(package: bytes) -> bool:
        raise FirmwareError(UpdateResult.UNSUPPORTED_PACKAGE_TYPE)

    fw = FirmwareUpdate(on_update=refuse)
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    fw.execute(FirmwareUpdate.UPDATE, "")
    await settle(fw, State.IDLE)
    assert fw.result == UpdateResult.UNSUPPORTED_PACKAGE_TYPE and fw.package is None


async def test_integrity_check_failure_sync_and_async() -> None:
    fw = FirmwareUpdate(verify=lambda p: False)
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    assert (fw.state, fw.result) == (State.IDLE, UpdateResult.INTEGRITY_CHECK_FAILURE)

    async def slow_check(package: bytes) -> bool:
        await asyncio.sleep(0.01)
        return package.startswith(b"FW")

    fw = FirmwareUpdate(verify=slow_check)
    fw.write(FirmwareUpdate.PACKAGE, b"XX" + PACKAGE)
    assert fw.state == State.DOWNLOADING
    await settle(fw, State.IDLE)
    assert fw.result == UpdateResult.INTEGRITY_CHECK_FAILURE
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)  # a new download after a failure
    assert (fw.state, fw.result) == (State.DOWNLOADING, UpdateResult.INITIAL)
    await settle(fw, State.DOWNLOADED)


async def test_empty_package_or_uri_resets_and_cancel_reports_10() -> None:
    fw = FirmwareUpdate()
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    fw.write(FirmwareUpdate.PACKAGE, b"\0")
    assert (fw.state, fw.result, fw.package) == (State.IDLE, UpdateResult.INITIAL, None)
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    fw.write(FirmwareUpdate.PACKAGE_URI, "")
    assert (fw.state, fw.result) == (State.IDLE, UpdateResult.INITIAL)
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    fw.execute(FirmwareUpdate.CANCEL, "")
    assert (fw.state, fw.result, fw.package) == (State.IDLE, UpdateResult.CANCELLED, None)
    with pytest.raises(MethodNotAllowed):
        fw.execute(FirmwareUpdate.CANCEL, "")  # nothing to cancel


async def test_bad_uris_are_reported_in_update_result() -> None:
    fw = FirmwareUpdate()
    for uri, result in [
        ("not a uri", UpdateResult.INVALID_URI),
        ("coap://", UpdateResult.INVALID_URI),
        ("http://host:99999/x", UpdateResult.INVALID_URI),
        ("coap://h/" + "x" * 300, UpdateResult.INVALID_URI),
        ("http://example.org/fw 1.bin", UpdateResult.INVALID_URI),
        ("http://example.org/fw\r\nX-Injected: 1", UpdateResult.INVALID_URI),
        ("http://example.org/prog\u00e9.bin", UpdateResult.INVALID_URI),
        ("ftp://example.org/fw.bin", UpdateResult.UNSUPPORTED_PROTOCOL),
        ("coaps://example.org/fw.bin", UpdateResult.UNSUPPORTED_PROTOCOL),
    ]:
        fw.write(FirmwareUpdate.PACKAGE_URI, uri)  # the Write itself succeeds
        assert (fw.state, fw.result) == (State.IDLE, result), uri
        assert fw.get(FirmwareUpdate.PACKAGE_URI) == uri
    only_coap = FirmwareUpdate(protocols=[Protocol.COAP])
    only_coap.write(FirmwareUpdate.PACKAGE_URI, "http://example.org/fw.bin")
    assert only_coap.result == UpdateResult.UNSUPPORTED_PROTOCOL
    assert only_coap.get(FirmwareUpdate.PROTOCOL_SUPPORT) == {0: 0}
    with pytest.raises(ValueError, match="COAPS"):
        FirmwareUpdate(protocols=[Protocol.COAPS])


async def test_delivery_method_and_size_limit() -> None:
    pull_only = FirmwareUpdate(delivery=DeliveryMethod.PULL)
    with pytest.raises(MethodNotAllowed):
        pull_only.write(FirmwareUpdate.PACKAGE, PACKAGE)
    push_only = FirmwareUpdate(delivery=DeliveryMethod.PUSH)
    with pytest.raises(MethodNotAllowed):
        push_only.write(FirmwareUpdate.PACKAGE_URI, "coap://127.0.0.1/fw")
    assert push_only.get(FirmwareUpdate.PROTOCOL_SUPPORT) is None
    small = FirmwareUpdate(max_package_size=1000)
    small.write(FirmwareUpdate.PACKAGE, PACKAGE)
    assert (small.state, small.result) == (State.IDLE, UpdateResult.NOT_ENOUGH_STORAGE)


async def test_automatic_update_at_download() -> None:
    installer = Installer()
    fw = FirmwareUpdate(on_update=installer, auto_update=True)
    fw.write(FirmwareUpdate.PACKAGE, PACKAGE)
    assert fw.state == State.UPDATING
    await settle(fw, State.IDLE)
    assert fw.result == UpdateResult.SUCCESS and installer.installed == [PACKAGE]


# --- through our server ---------------------------------------------------------------------------


async def states(observation: ServerObservation, count: int) -> list[int]:
    out = []
    for _ in range(count):
        out.append(values(await observation.next(2))["/5/0/3"])
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("fmt", ["opaque", "tlv"])
async def test_push_through_the_server(fmt: str) -> None:
    device = Device(firmware_version="1.0")
    installer = Installer()
    fw = FirmwareUpdate(on_update=installer, device=device, package_version="1.1")
    blocks: list[int] = []

    def heard(event: RequestReceived, answer: Message) -> None:
        if event.message.uri_path == ("5", "0", "0") and event.block1 is not None:
            blocks.append(event.block1.num)

    async with running(device, fw, on_request=heard) as (server, _):
        observation = await server.observe("core-test", "/5/0/3")
        assert observation.response is not None and values(observation.response) == {"/5/0/3": 0}
        written = await server.write("core-test", "/5/0/0", [record("/5/0/0", PACKAGE)], format=fmt)
        assert written.code == Code.CHANGED
        assert blocks == [2]  # three Block1 blocks, reassembled before the object saw them
        # Downloading and Downloaded happen in one step of the loop: one notification.
        assert await states(observation, 1) == [State.DOWNLOADED]
        assert (await server.execute("core-test", "/5/0/2")).code == Code.CHANGED
        assert await states(observation, 2) == [State.UPDATING, State.IDLE]
        got = values(await server.read("core-test", "/5/0"))
        assert got["/5/0/5"] == UpdateResult.SUCCESS
        assert values(await server.read("core-test", "/3/0/3")) == {"/3/0/3": "1.1"}
        refused = await server.execute("core-test", "/5/0/2")
        assert refused.code == Code.METHOD_NOT_ALLOWED
    assert installer.installed == [PACKAGE]


@contextlib.asynccontextmanager
async def coap_file_server(files: dict[str, bytes]) -> AsyncIterator[str]:
    """A CoAP server of ``files`` by path; yields its base URI."""

    def serve(event: RequestReceived) -> Message:
        body = files.get("/".join(event.message.uri_path))
        if event.message.code != Code.GET or body is None:
            return Message.build(Type.ACK, Code.NOT_FOUND)
        return Message.build(Type.ACK, Code.CONTENT, content_format=42, payload=body)

    async with open_udp_endpoint("127.0.0.1", 0, handler=serve) as endpoint:
        yield f"coap://127.0.0.1:{endpoint.port}"


async def test_pull_over_coap_through_the_server() -> None:
    installer = Installer()
    fw = FirmwareUpdate(on_update=installer)
    async with coap_file_server({"fw/app.bin": PACKAGE}) as base, running(fw) as (server, _):
        observation = await server.observe("core-test", "/5/0/3")
        uri = f"{base}/fw/app.bin"
        written = await server.write("core-test", "/5/0/1", [record("/5/0/1", uri)])
        assert written.code == Code.CHANGED
        assert await states(observation, 2) == [State.DOWNLOADING, State.DOWNLOADED]
        assert values(await server.read("core-test", "/5/0/1")) == {"/5/0/1": uri}
        assert (await server.execute("core-test", "/5/0/2")).code == Code.CHANGED
        assert await states(observation, 2) == [State.UPDATING, State.IDLE]
        # A URI the file server does not have: 4.04 is an invalid URI.
        missing = f"{base}/fw/none.bin"
        await server.write("core-test", "/5/0/1", [record("/5/0/1", missing)])
        assert await states(observation, 2) == [State.DOWNLOADING, State.IDLE]
        assert fw.result == UpdateResult.INVALID_URI
    assert installer.installed == [PACKAGE]


@contextlib.asynccontextmanager
async def http_file_server(files: dict[str, bytes]) -> AsyncIterator[str]:
    """A minimal HTTP/1.1 server: ``/chunked/<name>`` sends chunks, ``/moved/<name>`` redirects,
    ``/close/<name>`` sends no length and closes; yields its base URI."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        path = request.split()[1]
        kind, _, name = path.lstrip("/").partition("/")
        body = files.get(name)
        if kind == "moved":
            moved = f"HTTP/1.1 302 Found\r\nLocation: /plain/{name}\r\nContent-Length: 0\r\n\r\n"
            writer.write(moved.encode())
        elif body is None:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        elif kind == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 700):
                chunk = body[i : i + 700]
                writer.write(f"{len(chunk):x};ext=1\r\n".encode() + chunk + b"\r\n")
            writer.write(b"0\r\n\r\n")
        elif kind == "close":
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + body)
        else:
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("kind", ["plain", "chunked", "moved", "close"])
async def test_pull_over_http(kind: str) -> None:
    fw = FirmwareUpdate()
    async with http_file_server({"app.bin": PACKAGE}) as base:
        fw.write(FirmwareUpdate.PACKAGE_URI, f"{base}/{kind}/app.bin")
        assert fw.state == State.DOWNLOADING
        await settle(fw, State.DOWNLOADED, State.IDLE)
    assert (fw.state, fw.result, fw.package) == (State.DOWNLOADED, UpdateResult.INITIAL, PACKAGE)


async def test_pull_over_http_through_the_server_with_observation() -> None:
    fw = FirmwareUpdate(verify=lambda p: p.startswith(b"FW"))
    async with http_file_server({"app.bin": PACKAGE, "bad.bin": b"XX"}) as base, running(fw) as (server, _):
        observation = await server.observe("core-test", "/5/0/3")
        uri = f"{base}/plain/app.bin"
        await server.write("core-test", "/5/0/1", [record("/5/0/1", uri)])
        assert await states(observation, 2) == [State.DOWNLOADING, State.DOWNLOADED]
        # Reset with an empty URI, then a package that fails the integrity check, then a 404.
        await server.write("core-test", "/5/0/1", [record("/5/0/1", "")])
        assert await states(observation, 1) == [State.IDLE]
        failures = [("bad.bin", UpdateResult.INTEGRITY_CHECK_FAILURE), ("x", UpdateResult.INVALID_URI)]
        for name, result in failures:
            await server.write("core-test", "/5/0/1", [record("/5/0/1", f"{base}/plain/{name}")])
            assert await states(observation, 2) == [State.DOWNLOADING, State.IDLE]
            assert values(await server.read("core-test", "/5/0/5")) == {"/5/0/5": result}


async def test_lost_connections_are_reported() -> None:
    # Nothing listens there: HTTP is refused at once, CoAP never answers (the timeout ends it).
    async with open_udp_endpoint("127.0.0.1", 0) as silent:
        fw = FirmwareUpdate(download_timeout=0.3)
        fw.write(FirmwareUpdate.PACKAGE_URI, f"coap://127.0.0.1:{silent.port}/fw.bin")
        await settle(fw, State.IDLE)
        assert fw.result == UpdateResult.CONNECTION_LOST
    async with http_file_server({}) as base:
        closed = base  # the server is gone once the block ends
    fw = FirmwareUpdate()
    fw.write(FirmwareUpdate.PACKAGE_URI, f"{closed}/plain/app.bin")
    await settle(fw, State.IDLE)
    assert fw.result == UpdateResult.CONNECTION_LOST


async def test_cancel_stops_a_download() -> None:
    async with open_udp_endpoint("127.0.0.1", 0) as silent:
        fw = FirmwareUpdate(download_timeout=5.0)
        fw.write(FirmwareUpdate.PACKAGE_URI, f"coap://127.0.0.1:{silent.port}/fw.bin")
        await asyncio.sleep(0.02)
        fw.execute(FirmwareUpdate.CANCEL, "")
        await settle(fw, State.IDLE)
        assert fw.result == UpdateResult.CANCELLED
        await fw.close()
