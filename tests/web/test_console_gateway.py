"""The console's device page of a gateway (LwM2M Gateway, object 25): its end devices listed
under it, each read through /api/clients/{gateway}/devices/{prefix}/, in a real browser."""

from __future__ import annotations

import pytest
from tests.helpers.browser import SHOTS, browser_page
from tests.helpers.polling import eventually

from lwm2m.cli.server_cmd import http_server, start_http
from lwm2m.client.gateway import Gateway
from lwm2m.client.instance import ObjectInstance
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app

pytest.importorskip("playwright.async_api", reason="playwright is installed by `make test`")


async def test_the_device_page_lists_a_gateways_end_devices() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        gateway = Gateway("gw-console", server.uri)
        gateway.add("dev1", [ObjectInstance(0, {5700: 21.5}, object_id=3303)], device_id="urn:dev:0001")
        gateway.add("lora-0a1b", [ObjectInstance(0, {1: 12.5}, object_id=3424)])
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            async with gateway:
                await gateway.wait_registered(5)

                async def known() -> int:
                    return len((await server.registration("gw-console")).end_devices)

                await eventually(known, lambda n: n == 2)
                async with browser_page(1280, 900) as (page, errors):
                    await page.goto(f"{base}/#/device/gw-console")
                    await page.wait_for_selector("#end-devices tr.end-device")
                    prefixes = await page.eval_on_selector_all(
                        "#end-devices tr.end-device", "rows => rows.map((r) => r.dataset.prefix)"
                    )
                    assert prefixes == ["dev1", "lora-0a1b"]
                    row = await page.inner_text('#end-devices tr[data-prefix="dev1"]')
                    assert "urn:dev:0001" in row and "</3303/0>" in row
                    await page.click('#end-devices tr[data-prefix="dev1"] button')
                    answered = "/devices\\/dev1\\/3\\/0 2\\.05/"
                    await page.wait_for_function(
                        f"() => {answered}.test(document.querySelector('#result').innerText)"
                    )
                    await page.screenshot(path=str(SHOTS / "gateway-end-devices.png"))
                    assert errors == []
        finally:
            http.should_exit = True
            await task
