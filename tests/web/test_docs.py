"""``/api/docs``: Swagger UI from the installed swagger-ui-py package, served by the app,
in Debian's Chromium driven by Playwright; no request may leave loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from tests.helpers.browser import browser_page

from lwm2m.cli.server_cmd import http_server, start_http
from lwm2m.client import Client
from lwm2m.client.instance import ObjectInstance
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app
from lwm2m.web.docs import swagger_ui_dir

needs_swagger = pytest.mark.skipif(swagger_ui_dir() is None, reason="swagger-ui-py comes with the web extra")


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        http = http_server(create_app(server, api_token="s3cret"), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        client = Client("docs-1", server.uri, [ObjectInstance(0, {5700: 21.5}, object_id=3303)])
        await client.start()
        try:
            async with asyncio.timeout(10):
                while not (await server.store.registrations.page(None, 10)).registrations:
                    await asyncio.sleep(0.05)
            yield base
        finally:
            await client.stop()
            http.should_exit = True
            await task


@needs_swagger
async def test_the_page_and_its_assets_are_served_here(site: str) -> None:
    async with httpx.AsyncClient(base_url=site) as http:
        page = await http.get("/api/docs")  # no token: the page and the document are public
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/api/docs/static/swagger-ui-bundle.js" in page.text and "http" not in page.text.lower()
        script = await http.get("/api/docs/static/swagger-ui-bundle.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        init = await http.get("/api/docs/init.js")
        assert "validatorUrl: null" in init.text and '"/api/openapi.json"' in init.text
        assert (await http.get("/api/openapi.json")).status_code == 200
        assert (await http.get("/api/clients")).status_code == 401  # the API itself is not
        missing = await http.get("/api/docs/static/nothing.js")
        assert missing.status_code == 404 and "error" in missing.json()


@needs_swagger
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is installed by `make test`")
async def test_swagger_ui_shows_the_operations_and_tries_one_out(site: str) -> None:
    pytest.importorskip("playwright.async_api", reason="playwright is installed by `make test`")
    local = urlsplit(site).netloc
    elsewhere: list[str] = []

    async def only_loopback(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urlsplit(url).netloc == local or url.startswith(("data:", "blob:")):
            await route.continue_()  # type: ignore[attr-defined]
        else:
            elsewhere.append(url)
            await route.abort()  # type: ignore[attr-defined]

    async with browser_page(1280, 900) as (page, errors):
        await page.route("**/*", only_loopback)
        await page.goto(f"{site}/api/docs")
        # Every operation of the document is listed.
        await page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        shown = await page.locator(".opblock-summary-path").all_inner_texts()
        doc = json.loads(await (await page.request.get(f"{site}/api/openapi.json")).text())
        operations = sum(len(ops) for ops in doc["paths"].values())
        assert len(shown) == operations and "/api/clients" in [s.strip() for s in shown]

        # Authorize with the token, then "Try it out" on GET /api/clients.
        await page.click("button.authorize")
        await page.fill(".auth-container input", "s3cret")
        await page.click(".auth-btn-wrapper button.authorize")
        await page.click("button.btn-done")
        block = page.locator(".opblock-get", has=page.locator('[data-path="/api/clients"]'))
        await block.locator(".opblock-summary").click()
        await block.locator("button.try-out__btn").click()
        await block.locator("button.execute").click()
        live = block.locator(".responses-inner .live-responses-table tbody")
        answer = live.locator(".response-col_status").first
        await answer.wait_for(timeout=20_000)
        assert (await answer.inner_text()).strip() == "200"
        body = await live.locator(".microlight").first.inner_text()
        assert "docs-1" in body
    assert not elsewhere, elsewhere
    assert not errors, errors


async def test_without_swagger_ui_the_page_lists_the_operations_and_says_how(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("lwm2m.web.app.swagger_ui_dir", lambda: None)
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            page = await http.get("/api/docs")
            assert page.status_code == 200 and "<code>GET /api/clients</code>" in page.text
            assert "pip install 'lwm2m[web]'" in page.text and "<script" not in page.text
            assert (await http.get("/api/docs/static/swagger-ui-bundle.js")).status_code == 404
