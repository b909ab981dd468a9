"""The console's Trace tab (switch a device's message trace on, see our client's messages come
in live, switch it off), a device's labels set on its page and the fleet's label filter, and
the Security page (add PSK, RPK and X.509
credentials, keys never shown back, remove one), in Debian's Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest
from tests.helpers.browser import SHOTS, browser_page
from tests.helpers.client import temperature

from lwm2m.cli.server_cmd import http_server, start_http
from lwm2m.client import Client
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app

pytest.importorskip("playwright.async_api", reason="playwright is installed by `make test`")
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is installed by `make test`"
)

PSK_KEY = "00112233445566778899aabbccddeeff"
# A P-256 public key as DER SubjectPublicKeyInfo (any valid key will do).
RPK = (
    "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
    "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
)


async def wait_for_text(page: object, selector: str, pattern: str, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            text: str = await page.inner_text(selector)  # type: ignore[attr-defined]
            if re.search(pattern, text):
                return text
            await asyncio.sleep(0.1)


async def test_console_trace_tab_and_label_filter() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        Client("lamp", server.uri, [temperature()]) as lamp,
        Client("meter", server.uri, [temperature()]) as meter,
    ):
        await lamp.wait_registered(5)
        await meter.wait_registered(5)
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            async with browser_page(1280, 900) as (page, errors):
                # Labels set on the device page.
                await page.goto(f"{base}/#/device/meter")
                await wait_for_text(page, "#device-labels", r"no labels")
                await page.click("#labels-edit")
                await page.fill("#labels-input", "site")
                await page.click("#labels-edit")
                await wait_for_text(page, "#labels-error", r"not key=value")
                await page.fill("#labels-input", "site=north hw=rev2")
                await page.click("#labels-edit")
                await wait_for_text(page, "#device-labels", r"site=north")
                assert await server.store.labels.get("meter") == {"site": "north", "hw": "rev2"}
                await page.goto(f"{base}/")
                await wait_for_text(page, "#fleet-count", r"^2 clients$")
                await page.fill("#filter-label", "site=north")
                await wait_for_text(page, "#fleet-count", r"^1 clients$")
                assert await page.locator("tr.client").evaluate_all(
                    "rs => rs.map((r) => r.dataset.endpoint)"
                ) == ["meter"]
                await page.goto(f"{base}/#/device/lamp")
                await page.click("button[data-tab=trace]")
                await wait_for_text(page, "#trace-state", r"^off$")
                await page.click("#trace-start")
                await wait_for_text(page, "#trace-state", r"^on until")
                await asyncio.sleep(0.3)  # the trace's event stream connects
                assert (await server.read("lamp", "/3303/0/5700", timeout=5)).success
                text = await wait_for_text(page, "#trace-entries", r"2\.05 Content")
                assert "GET" in text and "Uri-Path: 3303" in text
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "trace.png"), full_page=True)
                await page.click("#trace-stop")
                await wait_for_text(page, "#trace-state", r"^off$")
                assert not server.trace.state("lamp").on
                assert errors == []
        finally:
            http.should_exit = True
            await task


async def test_console_security_page_adds_and_removes_credentials() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            async with browser_page(1280, 900) as (page, errors):
                await page.goto(f"{base}/#/security")
                await wait_for_text(page, "#view", r"0 devices with credentials")
                await page.fill("#security-endpoint", "psk-dev")
                await page.fill("#security-identity", "psk-dev-id")
                await page.fill("#security-key", PSK_KEY)
                await page.click("#security-save")
                await page.wait_for_selector('[data-security="psk-dev"]')
                await page.fill("#security-endpoint", "rpk-dev")
                await page.select_option("#security-mode", "rpk")
                await page.fill("#security-rpk", RPK)
                await page.click("#security-save")
                await page.wait_for_selector('[data-security="rpk-dev"]')
                await page.fill("#security-endpoint", "x509-dev")
                await page.select_option("#security-mode", "x509")
                assert await page.locator('[data-fields="psk"]').is_hidden()
                await page.click("#security-save")
                await page.wait_for_selector('[data-security="x509-dev"]')
                await wait_for_text(page, "#view", r"3 devices with credentials")
                shown = await page.inner_text("#view")
                assert "psk-dev-id" in shown and PSK_KEY not in shown and RPK not in shown
                assert await page.input_value("#security-key") == ""
                assert {info.endpoint for info in await server.security.all()} == {
                    "psk-dev",
                    "rpk-dev",
                    "x509-dev",
                }
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await page.click('[data-security="rpk-dev"] button')
                await wait_for_text(page, "#view", r"2 devices with credentials")
                assert await server.security.get("rpk-dev") is None
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "security.png"), full_page=True)
                assert errors == []
        finally:
            http.should_exit = True
            await task
