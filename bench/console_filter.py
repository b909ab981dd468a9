"""The console's fleet page over 10,000 devices: time from the last key of a name filter to
the table showing the filtered rows.

The server (``Server`` with the memory store, the registration rate limit lifted, and its
REST API on uvicorn) runs in this process; another process registers ``--clients`` endpoints
``client-000000``… with raw CoAP Registers from ``--sockets`` source ports (the storm of
``bench/server_load.py``). Debian's Chromium, driven by Playwright, opens the fleet page and
types each filter a key at a time (``--key-delay`` ms apart, as a person types); the page
itself times, with ``performance.now()``, the span from the last key's ``input`` event to the
moment its table holds exactly the matching rows and its count says so (a MutationObserver,
so no polling delay is counted). Each filter is typed ``--rounds`` times, starting from an
empty field.

Printed: per filter, the rows expected and the p50 / max of that span. Target: under 200 ms.

    python bench/console_filter.py [--clients 10000] [--rounds 5] [--sockets 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_listing import registering_main
from coap_loop import HOST, free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TARGET = 0.200  # seconds from the last key to the filtered table

# Installed in the page before a filter is typed: the time of the last key, and the first
# moment the table shows exactly ``expected`` rows that all satisfy ``ok``.
WATCH = """([expected, pattern]) => {
  const re = new RegExp(pattern);
  window.__done = null;
  const input = document.getElementById("filter-name");
  input.addEventListener("input", () => { window.__key = performance.now(); window.__done = null; });
  const check = () => {
    if (window.__done !== null) return;
    const rows = [...document.querySelectorAll("#fleet tr.client")];
    const count = document.getElementById("fleet-count").textContent;
    if (rows.length === expected && rows.every((r) => re.test(r.dataset.endpoint))
        && /^\\d+ clients( shown, more to load)?$/.test(count)) {
      window.__done = performance.now();
    }
  };
  if (window.__observer) window.__observer.disconnect();
  window.__observer = new MutationObserver(check);
  const watched = { childList: true, subtree: true, characterData: true };
  window.__observer.observe(document.getElementById("view"), watched);
}"""


def expected_rows(names: list[str], glob: str) -> tuple[int, str]:
    """How many rows the first page shows (at most 100) and a regex (for Python and JavaScript
    alike) of the names that match ``glob``, a prefix or a glob of ``*`` and ``?``."""
    import re

    parts = {"*": ".*", "?": "."}
    if any(c in glob for c in "*?"):
        pattern = "".join(parts.get(c, re.escape(c)) for c in glob)
    else:
        pattern = re.escape(glob) + ".*"
    matching = [n for n in names if re.fullmatch(pattern, n)]
    return min(100, len(matching)), f"^(?:{pattern})$"


async def measure(
    base: str, names: list[str], filters: list[str], rounds: int, key_delay: float
) -> dict[str, list[float]]:
    from playwright.async_api import async_playwright

    spans: dict[str, list[float]] = {f: [] for f in filters}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(f"{base}/")
        await page.wait_for_function("document.querySelectorAll('#fleet tr.client').length === 100")
        for _ in range(rounds):
            for glob in filters:
                await page.fill("#filter-name", "")
                # The whole fleet again (a page or more: a short table brings the next one in view).
                await page.wait_for_function(
                    "/^\\d+ clients shown, more to load$/"
                    ".test(document.getElementById('fleet-count').textContent)"
                )
                expected, pattern = expected_rows(names, glob)
                await page.evaluate(WATCH, [expected, pattern])
                await page.type("#filter-name", glob, delay=key_delay)
                try:
                    await page.wait_for_function("window.__done !== null", timeout=10_000)
                except Exception:
                    state = await page.evaluate(
                        "[document.getElementById('fleet-count').textContent,"
                        " document.querySelectorAll('#fleet tr.client').length, window.__key]"
                    )
                    raise RuntimeError(
                        f"{glob!r}: expected {expected} rows, the page shows {state}"
                    ) from None
                span = await page.evaluate("window.__done - window.__key")
                spans[glob].append(span / 1000)
        await browser.close()
    return spans


async def run_all(args: argparse.Namespace) -> tuple[int, float, dict[str, list[float]]]:
    from lwm2m.cli.server_cmd import http_server, start_http
    from lwm2m.server.config import ServerConfig
    from lwm2m.server.registrar import RegistrationLimits
    from lwm2m.server.role import Server
    from lwm2m.web.app import create_app

    loop = asyncio.get_running_loop()
    ctx = mp.get_context("spawn")
    server = Server(
        ServerConfig(host=HOST, port=free_port(), registration_limits=RegistrationLimits(rate=None))
    )
    await server.start()
    http = http_server(create_app(server), HOST, 0)
    http_task, base = await start_http(http, HOST, 0)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=registering_main, args=(server.port, args.sockets, child), daemon=True)
    proc.start()
    child.close()

    async def recv(timeout: float) -> tuple:  # type: ignore[type-arg]
        if not await loop.run_in_executor(None, parent.poll, timeout):
            raise TimeoutError("the registering process did not answer")
        return parent.recv()  # type: ignore[no-any-return]

    try:
        await recv(30)
        started = time.perf_counter()
        parent.send(("register", args.clients, 64, "client-"))
        _, storm = await recv(max(120.0, args.clients / 50))
        seconds = time.perf_counter() - started
        names = [f"client-{i:06d}" for i in range(args.clients)]
        filters = ["client-00421", "client-0099", "client-*77"]
        spans = await measure(base, names, filters, args.rounds, args.key_delay)
        return storm.created, seconds, spans
    finally:
        parent.send(("quit",))
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        http.should_exit = True
        await http_task
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000, help="registrations in the fleet")
    parser.add_argument("--rounds", type=int, default=5, help="times each filter is typed")
    parser.add_argument("--sockets", type=int, default=8, help="source ports the Registers come from")
    parser.add_argument("--key-delay", type=float, default=60.0, help="ms between two keys")
    args = parser.parse_args(argv)
    created, seconds, spans = asyncio.run(run_all(args))
    print(f"registered {created:,} of {args.clients:,} endpoints over CoAP in {seconds:.1f} s")
    print(f"{'name filter typed':24} {'rows':>5} {'p50 ms':>8} {'max ms':>8}")
    ok = created == args.clients
    for glob, values in spans.items():
        rows, _ = expected_rows([f"client-{i:06d}" for i in range(args.clients)], glob)
        worst = max(values)
        ok = ok and worst < TARGET
        print(f"{glob:24} {rows:5d} {statistics.median(values) * 1e3:8.1f} {worst * 1e3:8.1f}")
    print(f"last key to filtered table < {TARGET * 1e3:.0f} ms: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
