"""The console as native ES modules: index.html loads only modules that exist, every module is
reached from the entry and served as JavaScript, each loads in Chromium without a script error,
and the shared helpers work alone (on a bare page of the same origin, with no console around
them)."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shutil
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from tests.helpers.browser import browser_page
from tests.helpers.web import served

from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app
from lwm2m.web.listing import encode_cursor
from lwm2m.web.views.console import CONSOLE_DIR

# Where the app serves the console's files (web/app.py's Mount).
PREFIX = "/console/"
# Static imports and re-exports: `import {a} from "./x.js"`, `import "./x.js"`, `export {a} from "./x.js"`.
IMPORT = re.compile(
    r"""^\s*(?:import\s*["']([^"']+)["']|(?:import|export)\b[^"';]*?\bfrom\s*["']([^"']+)["'])""", re.M
)
# A page of the console's origin with only what the shared modules may look for in the DOM.
BARE = '<!doctype html><title>modules</title><span id="live"></span><main id="view"></main>'

in_browser = pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None or shutil.which("chromium") is None,
    reason="playwright and Debian's chromium are installed by `make test`",
)


class _References(HTMLParser):
    """The scripts and style sheets an HTML page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            self.scripts.append(named)
        elif tag == "link" and named.get("rel") == "stylesheet" and named.get("href"):
            self.links.append(named["href"] or "")


def references() -> _References:
    parser = _References()
    parser.feed((CONSOLE_DIR / "index.html").read_text())
    return parser


def served_file(url: str) -> Path:
    """The file under the console's folder that ``url`` (``/console/...``) stands for."""
    assert url.startswith(PREFIX), url
    return CONSOLE_DIR / url.removeprefix(PREFIX)


def modules() -> list[Path]:
    return sorted(CONSOLE_DIR.rglob("*.js"))


def url_of(module: Path) -> str:
    return PREFIX + module.relative_to(CONSOLE_DIR).as_posix()


def imports_of(module: Path) -> list[Path]:
    """The modules ``module`` imports, as files (relative specifiers only: no bare names, no URLs)."""
    found = []
    for bare, named in IMPORT.findall(module.read_text()):
        specifier = bare or named
        assert specifier.startswith(("./", "../")), (
            f"{module.name} imports {specifier!r}: not a console module"
        )
        found.append((module.parent / specifier).resolve())
    return found


def test_index_loads_only_modules_that_exist_and_every_module_is_reached() -> None:
    page = references()
    assert page.scripts, "index.html loads no script"
    for script in page.scripts:
        # A classic script would share one global scope again; modules are deferred and strict.
        assert script.get("type") == "module", script
        src = script.get("src")
        assert src and served_file(src).is_file(), script
    for href in page.links:
        assert served_file(href).is_file(), href
    entries = [served_file(script["src"] or "").resolve() for script in page.scripts]
    reached: set[Path] = set()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in reached:
            continue
        assert module.is_file(), f"{module} is imported but does not exist"
        reached.add(module)
        todo.extend(imports_of(module))
    assert reached == {m.resolve() for m in modules()}, "modules that nothing imports"
    # One module a page, shared helpers beside them.
    assert {m.stem for m in (CONSOLE_DIR / "pages").glob("*.js")} >= {
        "fleet",
        "device",
        "map",
        "events",
        "bootstrap",
    }


def test_the_import_pattern_finds_each_form_of_import() -> None:
    text = 'import { a } from "./a.js";\nimport "./b.js";\n'
    text += 'export { c } from "../c.js";\nexport const d = "./d.js";\n'
    assert [bare or named for bare, named in IMPORT.findall(text)] == ["./a.js", "./b.js", "../c.js"]


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        served(create_app(server)) as url,
    ):
        yield url


async def test_the_modules_are_served_as_javascript(base: str) -> None:
    """Browsers refuse a module script of any other media type (HTML's "fetch a single module
    script" checks for a JavaScript MIME type)."""
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/")
        assert page.status_code == 200 and 'type="module"' in page.text
        for module in modules():
            answer = await http.get(url_of(module))
            assert answer.status_code == 200, module
            kind = answer.headers["content-type"].split(";")[0].strip()
            assert kind in ("text/javascript", "application/javascript"), (module, kind)
            assert answer.content == module.read_bytes()
        style = await http.get(f"{PREFIX}console.css")
        assert style.headers["content-type"].startswith("text/css")


@in_browser
async def test_every_module_loads_in_the_browser_without_a_script_error(base: str) -> None:
    entry = {served_file(s["src"] or "").resolve() for s in references().scripts}
    others = [url_of(m) for m in modules() if m.resolve() not in entry]
    async with browser_page(1280, 700) as (page, errors):
        # Every module but the entry, alone on a bare page: loading one starts nothing and
        # needs none of the console's page around it.
        await page.route(f"{base}/bare", lambda route: route.fulfill(content_type="text/html", body=BARE))
        await page.goto(f"{base}/bare")
        failed = await page.evaluate(
            """async (urls) => {
                const failed = [];
                for (const url of urls) {
                    try { await import(url); } catch (e) { failed.push(`${url}: ${e}`); }
                }
                return failed;
            }""",
            others,
        )
        assert failed == [] and errors == []
        assert await page.inner_text("#view") == ""  # no page was drawn
        # The console itself: the entry module draws the fleet page and opens the stream.
        await page.goto(f"{base}/")
        await page.wait_for_selector("#fleet-count")
        await page.wait_for_function("document.getElementById('live').textContent === 'live'")
        assert errors == []


async def on_bare_page(base: str, script: str, arg: object = None) -> object:
    """The value of ``script`` (an async function of ``arg``) run on a bare page of the console's
    origin, with no script error on the page."""
    async with browser_page(1280, 700) as (page, errors):
        await page.route(f"{base}/bare", lambda route: route.fulfill(content_type="text/html", body=BARE))
        await page.route(f"{base}/api/events*", lambda route: route.fulfill(**STREAM))
        await page.goto(f"{base}/bare")
        value = await page.evaluate(script, arg)
        assert errors == []
        return value


# An event stream of two notifications: the first from the server's backlog (it carries
# receivedAt), the second live. The body then ends, as when the server goes away.
STREAM = {
    "status": 200,
    "content_type": "text/event-stream",
    "body": "".join(
        f"event: NOTIFICATION\ndata: {json.dumps(data)}\n\n"
        for data in (
            {"endpoint": "dev", "records": [{"path": "/3303/0/5700", "value": 20}], "receivedAt": 1.7e9},
            {"endpoint": "dev", "records": [{"path": "/3303/0/5700", "value": 21.5}]},
        )
    ),
}


@in_browser
async def test_the_stream_keeps_live_values_before_a_page_listener_runs(base: str) -> None:
    seen = await on_bare_page(
        base,
        """async () => {
            const stream = await import("/console/lib/stream.js");
            const values = await import("/console/lib/values.js");
            const seen = [];
            const links = [];
            stream.onLink((link) => links.push(link));
            stream.subscribe((e) => {
                const v = values.valueOf(e.data.endpoint, "/3303/0/5700");
                seen.push([e.name, e.earlier, v ? v.value : null]);
            });
            stream.streamEvents();
            while (!links.includes("reconnecting")) await new Promise((r) => setTimeout(r, 20));
            return {
                seen, links,
                kept: stream.events().length,
                shown: document.getElementById("live").textContent,
                text: values.display("dev", "/3303/0/5700", { type: "Float", units: "Cel" }),
            };
        }""",
    )
    assert seen == {
        # The backlog's value is older than what a Read may have shown: not kept.
        "seen": [["NOTIFICATION", True, None], ["NOTIFICATION", False, 21.5]],
        "links": ["live", "reconnecting"],
        "kept": 2,
        "shown": "reconnecting…",
        "text": "21.5 Cel",
    }


# Name globs and names, matched by the fleet page for clients that register while it is open:
# the same answers as the server's (``fnmatch.fnmatchcase``, storage/base.py glob_matcher).
GLOBS = ["node-?[05]0", "node-[!0]*", "*5*", "n[x]", "n[x", "a.b*", "[a-c]*", "node-0??", "*"]
NAMES = ["node-000", "node-050", "node-051", "node-150", "Node-100", "nx", "n[x", "n[x]", "a.b", "aab", "c"]


@in_browser
async def test_the_shared_helpers_alone(base: str) -> None:
    cursor = encode_cursor("dev-ü>>?~")  # base64url with "-" and "_", no padding
    got = await on_bare_page(
        base,
        """async ([globs, names, cursor, hashes]) => {
            const router = await import("/console/lib/router.js");
            const clients = await import("/console/lib/clients.js");
            const results = await import("/console/lib/results.js");
            const values = await import("/console/lib/values.js");
            const inputs = await import("/console/lib/inputs.js");
            const dom = await import("/console/lib/dom.js");
            const input = (type, value) => {
                const node = inputs.typedInput({ type });
                node.value = value;
                return node;
            };
            const objects = [{ path: "/3/0" }, { path: "/3303/0" }];
            const client = { endpoint: "a", sleeping: false, objects };
            return {
                pages: hashes.map(router.pageOf),
                globs: globs.map((g) => names.filter((n) => clients.globRegex(g).test(n))),
                prefix: names.filter((n) => clients.filterTest({ endpoint: "node-05" })({ endpoint: n })),
                globFilter: names.filter((n) => clients.filterTest({ endpoint: "node-*0" })({ endpoint: n })),
                object: [
                    clients.filterTest({ object: "3303", online: "true" })(client),
                    clients.filterTest({ object: "6" })(client),
                    clients.filterTest({ online: "false" })(client),
                ],
                ids: [...clients.objectIds(client)],
                cursor: clients.cursorName(cursor),
                sorted: ["b", "B", "a", "ä"].sort(clients.byName),
                codes: ["2.05", "4.04", "2.31", "7.77", "HTTP 500"].map(results.codeText),
                time: values.localTime(0) === new Date(0).toLocaleString(),
                numberText: values.valueText("x", "/1/0/1", { type: "Integer", units: "s" }, 60),
                problems: [
                    inputs.inputProblem({ type: "Integer" }, input("Integer", "")),
                    inputs.inputProblem({ type: "Integer" }, input("Integer", "1.5")),
                    inputs.inputProblem({ type: "Float" }, input("Float", "1.5")),
                    inputs.inputProblem({ type: "Boolean" }, input("Boolean", "")),
                ],
                written: [
                    inputs.typedValue({ type: "Boolean" }, input("Boolean", "false")),
                    inputs.typedValue({ type: "Float" }, input("Float", "2.5")),
                    inputs.typedValue({ type: "String" }, input("String", "hi")),
                ],
                ago: [dom.ago(0), dom.ago(Date.now() / 1000 - 5), dom.ago(Date.now() / 1000 - 600)],
                element: dom.el("a", { href: "#/", hidden: true, class: "x", title: null }, "go", [" ", 1])
                    .outerHTML,
            };
        }""",
        [GLOBS, NAMES, cursor, ["#/", "#/device/a%20b", "#/map", "#/events", "#/bootstrap", "#/nowhere"]],
    )
    assert got == {
        "pages": [
            {"name": "fleet", "arg": None},
            {"name": "device", "arg": "a%20b"},  # decoded by the page, where a bad escape is shown
            {"name": "map", "arg": None},
            {"name": "events", "arg": None},
            {"name": "bootstrap", "arg": None},
            {"name": "fleet", "arg": None},
        ],
        "globs": [[n for n in NAMES if fnmatch.fnmatchcase(n, g)] for g in GLOBS],
        "prefix": ["node-050", "node-051"],
        "globFilter": ["node-000", "node-050", "node-150"],
        "object": [True, False, False],
        "ids": [3, 3303],
        "cursor": "dev-ü>>?~",
        "sorted": ["B", "a", "b", "ä"],  # code points, as the server sorts
        "codes": ["2.05 Content", "4.04 Not Found", "2.31 Continue", "7.77", "HTTP 500"],
        "time": True,
        "numberText": "60 s",
        "problems": ["enter a number", "enter a whole number", "", "choose true or false"],
        "written": [False, 2.5, "hi"],
        "ago": ["\u2013", "5 s ago", "10 min ago"],
        "element": '<a href="#/" hidden="" class="x">go 1</a>',
    }
