"""Simulator test helpers: an ASGI app served on a free port, the profiles' clock and models, the
firmware installs of a fleet's devices counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from tests.helpers.ports import free_tcp_port

from lwm2m.model.catalogue import load_catalogue
from lwm2m.simulator import Fleet


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` on uvicorn at a free loopback port, in this process; yields its base URL."""
    port = free_tcp_port()
    http = uvicorn.Server(uvicorn.Config(app, "127.0.0.1", port, log_level="warning"))
    http.config.timeout_graceful_shutdown = 1
    task = asyncio.create_task(http.serve())
    try:
        while not http.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        http.should_exit = True
        await asyncio.wait_for(task, 10)


MODELS = load_catalogue()
MIDNIGHT = 1_700_006_400.0  # a UTC midnight


def count_installs(fleets: list[Fleet]) -> Counter[str]:
    """Installs per endpoint, counted as each device's firmware update runs one."""
    installs: Counter[str] = Counter()
    for one in fleets:
        for endpoint in one.endpoint_names():
            firmware = one.device(endpoint).firmware
            install = firmware.on_update
            assert install is not None

            def counted(package: bytes, endpoint: str = endpoint, install: Any = install) -> Any:
                installs[endpoint] += 1
                return install(package)

            firmware.on_update = counted
    return installs
