"""Simulated devices pull a package the server hosts (CoAP and HTTP Package URIs, /5/0/1), and after
the Update their Firmware Version (/3/0/3) and PkgVersion (/5/0/7) are the package's version."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tests.helpers.web import served

from lwm2m.fleet.packages import Packages
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.simulator.objects import named_package
from lwm2m.web.app import create_app

VERSION = "3.2.1-rc.1"  # not the first dotted number of anything: taken from the URI whole


def value(response: Any) -> Any:
    assert response.code >> 5 == 2, response
    (record,) = response.records
    return record.value


async def test_simulated_devices_pull_over_coap_and_http_and_show_the_version() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server)
        packages: Packages = app.state.packages
        stored = await packages.add("wm-15", VERSION, b"\x7fELF" + os.urandom(5000))
        config = FleetConfig(
            count=2, profile="ucifi-water-meter", rate=None, local_host="127.0.0.1", install_seconds=0.05
        )
        async with served(app) as base, Fleet(server.uri, config) as fleet:
            await fleet.wait_registered(timeout=10)
            uris = Packages.uris(stored, coap=server.uri, http=base)
            for device, scheme in zip(fleet.devices, ("coap", "http"), strict=True):
                ep = device.endpoint
                assert value(await server.read(ep, "/3/0/3")) == "1.0.0"
                answer = await server.write(ep, "/5/0/1", [Record(Path.parse("/5/0/1"), uris[scheme])])
                assert answer.code >> 5 == 2, answer
                await until_state(server, ep, 2)  # Downloaded
                assert (await server.execute(ep, "/5/0/2")).code >> 5 == 2
                await until_state(server, ep, 0)  # Idle again
                assert value(await server.read(ep, "/5/0/5")) == 1, scheme  # Update Result: success
                assert value(await server.read(ep, "/3/0/3")) == VERSION, scheme
                assert value(await server.read(ep, "/5/0/7")) == VERSION, scheme
                assert value(await server.read(ep, "/5/0/6")) == "wm-15", scheme


async def until_state(server: Server, ep: str, state: int, tries: int = 250) -> None:
    for _ in range(tries):
        if value(await server.read(ep, "/5/0/3")) == state:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{ep}: /5/0/3 never became {state}")


def test_named_package_reads_name_and_version_from_the_last_segment() -> None:
    assert named_package("coap://h/fw/ID/lamp@2.1.0") == ("lamp", "2.1.0")
    assert named_package("http://h:8/fw/ID/a%2Bb@1.0%2Bbuild") == ("a+b", "1.0+build")
    assert named_package("coap://h/fw/ID") is None
    assert named_package("coap://h/lamp-2.1.0.bin") is None
    assert named_package("coap://h/fw/ID/@1.0") is None
    assert named_package("") is None
