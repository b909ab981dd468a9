"""The console's Firmware and Campaigns pages in Debian's Chromium driven by Playwright: a package
uploaded (and an empty one refused with the server's message), a campaign started from the form
(the JSON it posts checked) against two simulated devices, paused and resumed from its page, and
a campaign made through the API followed live to its end, its failed device shown with its
Update Result (/5/0/5)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
from typing import Any

import httpx
import pytest
from tests.helpers.browser import SHOTS, browser_page
from tests.helpers.web import served

from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.web.app import create_app

pytest.importorskip("playwright.async_api", reason="playwright is installed by `make test`")
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is installed by `make test`"
)


async def wait_for_text(page: Any, selector: str, pattern: str, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            text: str = await page.inner_text(selector)
            if re.search(pattern, text):
                return text
            await asyncio.sleep(0.1)


def closed_window() -> dict[str, str]:
    """Hours of the day (UTC) that are not now: a campaign with this window starts no device."""
    hour = time.gmtime().tm_hour
    return {"start": f"{(hour + 2) % 24:02d}:00", "end": f"{(hour + 3) % 24:02d}:00"}


async def test_firmware_and_campaign_pages() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server)
        config = FleetConfig(
            count=2, profile="ucifi-water-meter", rate=None, local_host="127.0.0.1", install_seconds=0.02
        )
        async with served(app) as base, Fleet(server.uri, config) as fleet:
            await fleet.wait_registered(timeout=10)
            bad, good = sorted(fleet.devices, key=lambda d: d.endpoint)
            bad.firmware.verify = lambda package: False  # its download fails the integrity check
            data = os.urandom(1500)
            async with browser_page(1280, 900) as (page, errors), httpx.AsyncClient(base_url=base) as api:
                posted: list[dict[str, Any]] = []

                def on_request(request: Any) -> None:
                    if request.method == "POST" and request.url.endswith("/api/campaigns"):
                        posted.append(json.loads(request.post_data))

                page.on("request", on_request)
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

                # Firmware: an empty file is refused with the server's message, a package stored.
                await page.goto(f"{base}/#/firmware")
                await wait_for_text(page, "#firmware-count", r"^0 packages$")
                await page.set_input_files(
                    "#firmware-file",
                    {"name": "wm.bin", "mimeType": "application/octet-stream", "buffer": b""},
                )
                assert await page.input_value("#firmware-name") == "wm"  # from the file's name
                await page.fill("#firmware-version", "9.1")
                await page.click("#firmware-upload")
                await wait_for_text(page, "#firmware-message", r"the package is empty")
                assert await page.get_attribute("#firmware-message", "class") == "error"
                await page.set_input_files(
                    "#firmware-file",
                    {"name": "wm.bin", "mimeType": "application/octet-stream", "buffer": data},
                )
                await page.fill("#firmware-version", "9.1")
                await page.click("#firmware-upload")
                await wait_for_text(page, "#firmware-count", r"^1 packages$")
                (package,) = (await api.get("/api/firmware")).json()
                assert package["sha256"] == hashlib.sha256(data).hexdigest() and package["size"] == 1500
                row = await page.inner_text(f'[data-package="{package["id"]}"]')
                assert "wm" in row and "9.1" in row and "1.5 KiB" in row and package["sha256"][:12] in row

                SHOTS.mkdir(parents=True, exist_ok=True)
                # Campaigns: the form posts the campaign; a closed window keeps it running.
                await page.click("a[data-nav=campaigns]")
                await wait_for_text(page, "#campaigns-count", r"^0 campaigns, 0 running$")
                await page.wait_for_selector(
                    f'#campaign-package option[value="{package["id"]}"]', state="attached"
                )
                window = closed_window()
                await page.fill("#campaign-endpoints", "sim*")
                await page.fill("#campaign-version-not", "9.1")
                await page.select_option("#campaign-delivery", "pull")
                await page.fill("#campaign-canary", "50%")
                await page.fill("#campaign-batch", "2")
                await page.fill("#campaign-in-flight", "2")
                await page.fill("#campaign-halt", "x")
                await page.click("#campaign-start")
                await wait_for_text(page, "#campaign-message", r"halt after: a count")
                await page.fill("#campaign-halt", "1")
                await page.fill("#campaign-window-start", window["start"])
                await page.fill("#campaign-window-end", window["end"])
                await page.screenshot(path=str(SHOTS / "campaigns.png"), full_page=True)
                await page.click("#campaign-start")
                await page.wait_for_url(re.compile(r"#/campaign/"))
                assert posted == [
                    {
                        "packageId": package["id"],
                        "target": {"endpoints": "sim*", "versionNotEqual": "9.1"},
                        "delivery": "pull",
                        "waves": {"canary": "50%", "batch": 2, "inFlight": 2},
                        "haltAfter": 1,
                        "window": window,
                    }
                ]
                (made,) = (await api.get("/api/campaigns")).json()
                await wait_for_text(page, "#campaign-state", r"^running$")
                await wait_for_text(page, "#campaign-counts", r"pending\s+2")
                assert await page.get_attribute("a[data-nav=campaigns]", "class") == "active"
                assert "wm 9.1 · 2 devices · canary of 2" in await page.inner_text("#campaign-status")
                waves = await page.locator("#campaign-waves tr").evaluate_all(
                    "rs => rs.map((r) => [r.cells[0].textContent, r.cells[5].textContent])"
                )
                assert waves == [["canary", "1"], ["wave 1", "1"]]  # each wave with one device pending
                assert await page.is_disabled("#campaign-resume")
                await page.click("#campaign-pause")
                await wait_for_text(page, "#campaign-state", r"^paused$")
                assert app.state.campaigns.get(made["id"]).status == "paused"
                await page.click("#campaign-resume")
                await wait_for_text(page, "#campaign-state", r"^running$")
                await page.click("#campaign-cancel")
                await wait_for_text(page, "#campaign-state", r"^cancelled$")
                await wait_for_text(page, "#campaign-counts", r"cancelled\s+2")

                # A campaign made through the API, followed live: one device succeeds, one fails.
                await page.click("a[data-nav=campaigns]")
                await wait_for_text(page, "#campaigns-count", r"^1 campaigns, 0 running$")
                body = {"packageId": package["id"], "waves": {"canary": 0}, "retries": {"attempts": 0}}
                created = (await api.post("/api/campaigns", json=body)).json()
                await wait_for_text(page, "#campaigns-count", r"^2 campaigns")  # from the CAMPAIGN_* events
                await page.click(f'[data-campaign="{created["id"]}"] a')
                await wait_for_text(page, "#campaign-state", r"^done$", timeout=15)
                assert await page.inner_text("#campaign-waves td:first-child") == "wave 1"  # no canary
                counts = await page.inner_text("#campaign-counts")
                assert re.search(r"succeeded\s+1", counts) and re.search(r"failed\s+1", counts)
                failed = await page.inner_text(f'[data-failed="{bad.endpoint}"]')
                assert "5" in failed.split() and "integrity check failure" in failed
                assert await page.locator("[data-failed]").count() == 1
                for action in ("pause", "resume", "cancel"):
                    assert await page.is_disabled(f"#campaign-{action}"), action
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "campaign.png"), full_page=True)

                # Deleting the package from the Firmware page.
                await page.click("a[data-nav=firmware]")
                await wait_for_text(page, "#firmware-count", r"^1 packages$")
                await page.click(f'[data-package="{package["id"]}"] button')
                await wait_for_text(page, "#firmware-count", r"^0 packages$")
                assert (await api.get("/api/firmware")).json() == []
                assert errors == []
            assert good.endpoint != bad.endpoint


# A page of the console's origin with only what the shared modules may look for in the DOM.
BARE = '<!doctype html><title>modules</title><span id="live"></span><main id="view"></main>'


async def test_the_pages_helpers_alone() -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        served(create_app(server)) as base,
        browser_page(1280, 700) as (page, errors),
    ):
        await page.route(f"{base}/bare", lambda route: route.fulfill(content_type="text/html", body=BARE))
        await page.goto(f"{base}/bare")
        got = await page.evaluate(
            """async () => {
                const router = await import("/console/lib/router.js");
                const firmware = await import("/console/pages/firmware.js");
                const campaigns = await import("/console/pages/campaigns.js");
                const share = (t) => {
                    try { return campaigns.shareOf(t, "x"); } catch (e) { return e.message; }
                };
                return {
                    pages: ["#/firmware", "#/campaigns", "#/campaign/a%20b", "#/campaign"]
                        .map(router.pageOf),
                    sizes: [0, 1023, 1536, 3 * 1024 * 1024].map(firmware.sizeText),
                    errors: [firmware.errorText({ status: 413, data: { error: "too big" } }),
                             firmware.errorText({ status: 502, data: null })],
                    shares: ["", " 5 ", "12.5%", "5 %", "-1", "1.5"].map(share),
                    done: [campaigns.doneShare({ succeeded: 1, failed: 1, pending: 2 }, 4),
                           campaigns.doneShare({}, 0)],
                    waves: [[0, { canary: 1 }], [1, { canary: 1 }], [0, { canary: 0, canaryPercent: 5 }],
                            [0, { canary: 0, canaryPercent: null }], [2, { canary: 0 }]]
                        .map(([i, w]) => campaigns.waveName(i, w)),
                    view: document.getElementById("view").textContent,
                };
            }"""
        )
        assert errors == []
    assert got == {
        "pages": [
            {"name": "firmware", "arg": None},
            {"name": "campaigns", "arg": None},
            {"name": "campaign", "arg": "a%20b"},  # decoded by the page
            {"name": "fleet", "arg": None},
        ],
        "sizes": ["0 B", "1023 B", "1.5 KiB", "3.0 MiB"],
        "errors": ["too big", "HTTP 502"],
        "shares": [
            None,
            5,
            "12.5%",
            "x: a count (5) or a percentage (5%)",
            "x: a count (5) or a percentage (5%)",
            "x: a count (5) or a percentage (5%)",
        ],
        "done": [0.5, 1],
        "waves": ["canary", "wave 1", "canary", "wave 1", "wave 3"],
        "view": "",
    }
