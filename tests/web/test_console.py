"""The web console in a real browser: Debian's Chromium driven by Playwright, against
the server, its HTTP app and a simulated fleet, all on loopback in this process.

Screenshots of the fleet, device and street light pages go to ``test-output/console/``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator

import pytest
from tests.helpers.browser import SHOTS, browser_page

from lwm2m.cli.server_cmd import http_server, start_http
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.registrar import RegistrationLimits
from lwm2m.server.role import Server
from lwm2m.simulator.fleet import Fleet, FleetConfig
from lwm2m.web.app import create_app

pytest.importorskip("playwright.async_api", reason="playwright is installed by `make test`")
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is installed by `make test`"
)


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        # Every device steps its values every 0.2 s, so that the console sees them move.
        fleets = [
            Fleet(
                server.uri,
                FleetConfig(count=2, profile=name, prefix=prefix, seed=7, tick=0.2, update_interval=0.2),
            )
            for name, prefix in (("ipso-weather", "weather"), ("ucifi-streetlight", "light"))
        ]
        try:
            for fleet in fleets:
                await fleet.__aenter__()
            yield base
        finally:
            for fleet in fleets:
                await fleet.__aexit__(None, None, None)
            http.should_exit = True
            await task


async def text_of(page: object, selector: str) -> str:
    return await page.inner_text(selector)  # type: ignore[attr-defined,no-any-return]


async def wait_for_text(page: object, selector: str, pattern: str, timeout: float = 10.0) -> str:
    """Wait until the text of ``selector`` matches ``pattern``; return it."""
    async with asyncio.timeout(timeout):
        while True:
            text = await text_of(page, selector)
            if re.search(pattern, text):
                return text
            await asyncio.sleep(0.1)


async def test_console_fleet_device_observe_and_switch_a_light_off(site: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp_path = SHOTS
    async with browser_page(1280, 900) as (page, errors):
        # The fleet page lists the devices as they register (SSE keeps it live).
        await page.goto(f"{site}/")
        await wait_for_text(page, "#fleet-count", r"^4 clients$")
        fleet_text = await text_of(page, "#fleet")
        assert "weather-" in fleet_text and "light-" in fleet_text and "online" in fleet_text
        await page.select_option("#filter-object", "3416")  # the street lights only
        await wait_for_text(page, "#fleet-count", r"^2 clients$")
        await page.select_option("#filter-object", "")
        await wait_for_text(page, "#fleet-count", r"^4 clients$")
        await page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)

        # A temperature device: Read shows a number and its unit.
        await page.click("tr.client[data-endpoint^='weather'] a")
        row = page.locator('[data-path="/3303/0/5700"]')
        await row.wait_for()
        cell = '[data-value="/3303/0/5700"]'
        await row.locator('[data-op="read"]').click()
        await wait_for_text(page, "#result", r"Read /3303/0/5700 2\.05")
        first = await wait_for_text(page, cell, r"^-?\d+(\.\d+)? Cel$")
        # Observe: the value changes on the page with the device's notifications.
        await row.locator('[data-op="observe"]').click()
        await wait_for_text(page, "#result", r"Observe /3303/0/5700/observe 2\.05")
        await wait_for_text(page, cell, rf"^(?!{re.escape(first)}$)-?\d+(\.\d+)? Cel$", timeout=15)
        await page.wait_for_selector('[data-chart="/3303/0/5700"] svg path')
        await page.screenshot(path=str(tmp_path / "device.png"), full_page=True)

        # A street light: command it to 40 %, then off, and watch its dimming level follow.
        await page.goto(f"{site}/#/")
        await page.click("tr.client[data-endpoint^='light'] a")
        level = page.locator('[data-path="/3416/0/3"]')
        await level.wait_for()
        await level.locator('[data-op="observe"]').click()
        await wait_for_text(page, "#result", r"Observe /3416/0/3/observe 2\.05")
        command = page.locator('[data-path="/3416/0/1"]')
        for target in ("40", "0"):
            await command.locator("input[type=number]").fill(target)
            await command.locator('[data-op="write"]').click()
            await wait_for_text(page, "#result", r"Write /3416/0/1 2\.04")
            await wait_for_text(page, '[data-value="/3416/0/3"]', rf"^{target} /100$", timeout=10)
        await page.screenshot(path=str(tmp_path / "streetlight.png"), full_page=True)

        # The event log shows what happened.
        await page.goto(f"{site}/#/events")
        await page.wait_for_selector("#event-log li")
        assert errors == []
    assert (tmp_path / "fleet.png").stat().st_size > 10_000
    assert (tmp_path / "device.png").stat().st_size > 10_000


async def test_console_bootstrap_page_adds_a_configuration_and_shows_the_session() -> None:
    from lwm2m.bootstrap import BootstrapServer
    from lwm2m.bootstrap.config import BootstrapServerConfig
    from lwm2m.client import Client
    from lwm2m.storage.memory import MemoryStore

    store = MemoryStore.create()
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0), store) as server,
        BootstrapServer(BootstrapServerConfig(host="127.0.0.1", port=0), store) as bootstrap,
    ):
        http = http_server(create_app(server, bootstrap=bootstrap), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            async with browser_page(1280, 900) as (page, errors):
                await page.goto(f"{base}/#/bootstrap")
                await wait_for_text(page, "#view", r"0 configurations")
                server_account = {"uri": server.uri, "shortServerId": 7, "lifetime": 60}
                config = json.dumps({"servers": [{**server_account, "security": {"mode": "nosec"}}]})
                await page.fill("input[placeholder^=endpoint]", "fresh-device")
                await page.fill("textarea", config)
                await page.click("text=Save")
                await page.wait_for_selector('[data-config="fresh-device"]')
                # A device with only a bootstrap account gets the configuration and registers.
                async with Client("fresh-device", bootstrap=bootstrap.uri) as client:
                    await client.wait_registered(10)
                    await wait_for_text(page, "#bootstrap-sessions", r"fresh-device.*finished")
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "bootstrap.png"), full_page=True)
                assert errors == []
        finally:
            http.should_exit = True
            await task


async def test_console_fleet_loads_pages_and_filters_on_the_server() -> None:
    from lwm2m.protocol.registration import ObjectLink, Registration

    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        for n in range(250):
            links = (ObjectLink(3, 0), *((ObjectLink(3303, 0),) if n % 10 == 0 else ()))
            name = f"node-{n:03d}"
            now = time.time()  # not expired: the server drops registrations past their lifetime
            added = Registration(
                name, f"r{n}", ("192.0.2.1", 5683), objects=links, registered_at=now, last_update=now
            )
            await server.store.registrations.add(added)
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            # A short window: the end of the table is out of view, so only "More" loads more.
            async with browser_page(1280, 600) as (page, errors):
                asked: list[str] = []
                page.on("request", lambda r: asked.append(r.url) if "/api/clients" in r.url else None)
                await page.goto(f"{base}/")
                await wait_for_text(page, "#fleet-count", r"^100 clients shown, more to load$")
                assert await page.locator("tr.client").count() == 100
                # "More", clicked where it is: Playwright's click would scroll to it, and the
                # end of the table coming into view loads pages on its own.
                await page.eval_on_selector("#fleet-more", "button => button.click()")
                await wait_for_text(page, "#fleet-count", r"^200 clients shown, more to load$")
                # Infinite scroll: the end of the table in view loads the next page.
                await page.locator("#fleet-end").scroll_into_view_if_needed()
                await wait_for_text(page, "#fleet-count", r"^250 clients$")
                assert await page.locator("#fleet-more").is_hidden()
                # The filter goes to the server (once typing stops), as a prefix or a glob.
                await page.fill("#filter-name", "node-24")
                await wait_for_text(page, "#fleet-count", r"^10 clients$")
                await page.fill("#filter-name", "node-?[05]0")
                await wait_for_text(page, "#fleet-count", r"^5 clients$")
                shown = await page.eval_on_selector_all(
                    "#fleet tr.client", "rows => rows.map((r) => r.dataset.endpoint)"
                )
                assert shown == ["node-000", "node-050", "node-100", "node-150", "node-200"]
                await page.fill("#filter-name", "")
                await page.select_option("#filter-object", "3303")
                await wait_for_text(page, "#fleet-count", r"^25 clients$")
                assert any("endpoint=node-24" in url for url in asked)
                assert any("object=3303" in url for url in asked)
                assert all("limit=100" in url for url in asked)
                assert errors == []
        finally:
            http.should_exit = True
            await task


async def test_console_device_results_beside_rows_typed_writes_and_units(site: str) -> None:
    """Results under the row they belong to with the code by name; an empty number or an
    unchosen boolean is not written; a Time shows as a local date and is written through a
    date-time input; numbers carry their units."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with browser_page(1280, 900) as (page, errors):
        writes: list[tuple[str, str | None]] = []
        page.on("request", lambda r: writes.append((r.url, r.post_data)) if r.method == "PUT" else None)
        await page.goto(f"{site}/")
        await wait_for_text(page, "#fleet-count", r"^4 clients$")
        await page.click("tr.client[data-endpoint^='weather'] a")
        row = page.locator('[data-path="/3303/0/5700"]')
        await row.wait_for()

        # Read: the result sits in a row right under the resource's, code by name.
        await row.locator('[data-op="read"]').click()
        beside = '[data-path="/3303/0/5700"] + tr.inline-result[data-result-for="/3303/0/5700"]'
        text = await wait_for_text(page, beside, r"Read /3303/0/5700 2\.05 Content")
        assert re.search(r"/3303/0/5700 = -?\d+(\.\d+)? Cel", text)
        await wait_for_text(page, '[data-value="/3303/0/5700"]', r"^-?\d+(\.\d+)? Cel$")
        # An instance's operation: under the instance's header.
        await page.locator('[data-instance="/3303/0"] [data-op="read-instance"]').click()
        instance = '[data-instance="/3303/0"] > .inline-result'
        await wait_for_text(page, instance, r"Read /3303/0 2\.05 Content")
        await page.locator('[data-instance="/3303/0"] > .toolbar [data-op="discover"]').click()
        await wait_for_text(page, instance, r"Discover /3303/0/discover 2\.05")

        # The Server object (folded): an empty number cannot be written, units in the input.
        await page.click('details[data-object="1"] > summary h2')
        lifetime = page.locator('[data-path="/1/0/1"]')
        await lifetime.wait_for()
        number = lifetime.locator("input[type=number]")
        write = lifetime.locator('[data-op="write"]')
        assert await number.get_attribute("placeholder") == "Integer (s)"
        await wait_for_text(page, '[data-value="/1/0/1"]', r"^\d+ s$")  # the catalogue's units
        assert await write.is_disabled()
        assert await write.get_attribute("title") == "enter a number"
        await page.eval_on_selector('[data-path="/1/0/1"] [data-op="write"]', "b => b.click()")
        await number.fill("120")
        assert await write.is_enabled()
        await number.fill("")
        assert await write.is_disabled()
        # A boolean: nothing chosen in advance, so nothing to write until true or false is.
        storing = page.locator('[data-path="/1/0/6"]')
        choice = storing.locator("select")
        assert await choice.input_value() == ""
        assert await storing.locator('[data-op="write"]').is_disabled()
        await choice.select_option("true")
        await storing.locator('[data-op="write"]').click()
        await wait_for_text(page, '[data-path="/1/0/6"] + tr.inline-result', r"Write /1/0/6 2\.04 Changed")
        assert [body for url, body in writes if url.endswith("/1/0/6")] == ['{"value":true}']
        assert not [url for url, _ in writes if url.endswith("/1/0/1")]

        # Current Time: a local date, written through a date-time input as Unix seconds.
        clock = page.locator('[data-path="/3/0/13"]')
        shown = await wait_for_text(page, '[data-value="/3/0/13"]', r"\d{4}")
        assert not re.fullmatch(r"\d+", shown.strip())  # not the bare Unix seconds
        picker = clock.locator('input[type="datetime-local"]')
        await picker.fill("2031-05-17T10:20:30")
        await clock.locator('[data-op="write"]').click()
        under = '[data-path="/3/0/13"] + tr.inline-result'
        await wait_for_text(page, under, r"Write /3/0/13 2\.04 Changed")
        sent = await page.evaluate("Math.round(new Date('2031-05-17T10:20:30').getTime() / 1000)")
        assert [json.loads(b or "{}") for u, b in writes if u.endswith("/3/0/13")] == [{"value": sent}]
        await clock.locator('[data-op="read"]').click()
        await wait_for_text(page, under, r"Read /3/0/13 2\.05 Content")
        expected = await page.evaluate(
            f"[0, 1, 2, 3, 4, 5].map((d) => new Date(({sent} + d) * 1000).toLocaleString())"
        )
        value = await text_of(page, '[data-value="/3/0/13"]')
        assert value in expected, (value, expected)
        await page.locator('[data-path="/3/0/13"]').scroll_into_view_if_needed()
        await page.screenshot(path=str(SHOTS / "device-results.png"))
        assert errors == []


async def test_console_events_page_shows_the_backlog_and_says_when_it_waits(site: str) -> None:
    """The four devices registered before the page opened: their events show at once, from
    the server's backlog; the page says when it waits or reconnects."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with browser_page(1280, 900) as (page, errors):
        # The stream refused: the page says it reconnects, and shows no event.
        await page.route("**/api/events*", lambda route: route.abort())
        await page.goto(f"{site}/#/events")
        await wait_for_text(page, "#event-status", r"^reconnecting…")
        await wait_for_text(page, "#event-log", r"reconnecting…")
        assert await page.locator("#event-log li[data-event]").count() == 0
        await page.screenshot(path=str(SHOTS / "events-reconnecting.png"))
        # Back: the registrations of the four devices come from the backlog, not live.
        await page.unroute("**/api/events*")
        await page.wait_for_selector("#event-log li[data-event=REGISTRATION]", timeout=10_000)
        registered = page.locator("#event-log li.backlog[data-event=REGISTRATION]")
        assert await registered.count() == 4
        await wait_for_text(page, "#event-status", r"^live · \d+ shown \(the server's last \d+ before")
        await page.screenshot(path=str(SHOTS / "events.png"))
        # A filter that matches nothing yet: the page says it is waiting for events.
        await page.fill("#event-endpoint", "nobody-yet")
        await wait_for_text(page, "#event-status", r"^connected: no event matches the filter yet")
        await wait_for_text(page, "#event-log", r"waiting for events…")
        assert errors == []


async def test_console_events_page_waits_on_a_quiet_server() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            async with browser_page(1280, 600) as (page, _errors):
                await page.goto(f"{base}/#/events")
                await wait_for_text(page, "#event-status", r"^connected, no events yet: waiting for")
                await page.screenshot(path=str(SHOTS / "events-waiting.png"))
                async with Fleet(
                    server.uri, FleetConfig(count=1, profile="ipso-weather", prefix="late", seed=3)
                ):
                    await page.wait_for_selector("#event-log li[data-event=REGISTRATION]:not(.backlog)")
                    await wait_for_text(page, "#event-status", r"^live · [1-9]")
        finally:
            http.should_exit = True
            await task


class _Registering(asyncio.DatagramProtocol):
    """Raw CoAP Registers from one socket, ``window`` in flight; ``done`` when all have 2.01."""

    def __init__(self, names: list[str], window: int) -> None:
        self.names = names
        self.window = window
        self.waiting: dict[int, bytes] = {}  # message ID -> the datagram, until answered
        self.next = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None

    def send_next(self) -> None:
        while self.next < len(self.names) and len(self.waiting) < self.window:
            mid = self.next
            datagram = Message.build(
                Type.CON,
                Code.POST,
                mid=mid,
                token=mid.to_bytes(2, "big"),
                uri_path="/rd",
                uri_query=[f"ep={self.names[mid]}", "lt=600", "lwm2m=1.1", "b=U"],
                content_format=40,  # application/link-format
                payload=b"</1/0>,</3/0>",
            ).encode()
            self.waiting[mid] = datagram
            self.next += 1
            assert self.transport is not None
            self.transport.sendto(datagram)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send_next()

    def datagram_received(self, data: bytes, addr: object) -> None:
        answer = Message.decode(data)
        if answer.code == Code.CREATED and self.waiting.pop(answer.mid, None) is not None:
            self.send_next()
            if not self.waiting and self.next == len(self.names) and not self.done.done():
                self.done.set_result(None)

    def resend(self) -> None:
        assert self.transport is not None
        for datagram in self.waiting.values():
            self.transport.sendto(datagram)


async def register_raw(port: int, names: list[str], sockets: int = 4, window: int = 32) -> None:
    """Register ``names`` with the server at ``port`` cheaply: raw CoAP from a few sockets."""
    loop = asyncio.get_running_loop()
    shares = [names[i::sockets] for i in range(sockets)]
    protocols = []
    for share in shares:
        _, protocol = await loop.create_datagram_endpoint(
            lambda share=share: _Registering(share, window), remote_addr=("127.0.0.1", port)
        )
        protocols.append(protocol)
    try:
        async with asyncio.timeout(120):
            for protocol in protocols:
                while True:
                    try:
                        await asyncio.wait_for(asyncio.shield(protocol.done), 2)
                        break
                    except TimeoutError:
                        protocol.resend()  # a datagram lost under load: CON again, same ID
    finally:
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.close()


async def test_console_fleet_of_ten_thousand_filters_by_name() -> None:
    """10,000 registrations: the fleet page shows its first page, and a name filter typed a key
    at a time shows exactly the matching rows (bench/console_filter.py times it)."""
    limits = RegistrationLimits(rate=None)  # 10,000 Registers from one address
    async with Server(ServerConfig(host="127.0.0.1", port=0, registration_limits=limits)) as server:
        await register_raw(server.port, [f"dev-{n:05d}" for n in range(10_000)])
        assert len((await server.store.registrations.page(None, 10_001)).registrations) == 10_000
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            async with browser_page(1280, 900) as (page, errors):
                await page.goto(f"{base}/")
                await wait_for_text(page, "#fleet-count", r"^100 clients shown, more to load$")
                await page.type("#filter-name", "dev-0421", delay=40)
                await wait_for_text(page, "#fleet-count", r"^10 clients$")
                shown = await page.eval_on_selector_all(
                    "#fleet tr.client", "rows => rows.map((r) => r.dataset.endpoint)"
                )
                assert shown == [f"dev-0421{n}" for n in range(10)]
                await page.fill("#filter-name", "")
                await page.type("#filter-name", "dev-*777", delay=40)
                await wait_for_text(page, "#fleet-count", r"^10 clients$")
                shown = await page.eval_on_selector_all(
                    "#fleet tr.client", "rows => rows.map((r) => r.dataset.endpoint)"
                )
                assert shown == [f"dev-0{n}777" for n in range(10)]
                await page.screenshot(path=str(SHOTS / "fleet-filtered.png"))
                assert errors == []
        finally:
            http.should_exit = True
            await task


async def test_console_says_how_to_add_the_model_of_an_unknown_object() -> None:
    from tests.helpers.unmodelled import VENDOR, vendor_device

    async with vendor_device() as (server, _):
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        try:
            async with browser_page(1280, 900) as (page, _errors):
                await page.goto(f"{base}/#/device/vendor-1")
                hint = f'details[data-object="{VENDOR}"] [data-hint=no-model]'
                await page.wait_for_selector(hint)
                text = await text_of(page, hint)
                assert f"no model of object {VENDOR}" in text and "lwm2m server --models" in text
                # A modelled object of the same device carries no such note.
                assert await page.query_selector('details[data-object="3"] [data-hint=no-model]') is None
                await page.screenshot(path=str(SHOTS / "unknown-object.png"))
        finally:
            http.should_exit = True
            await task
