"""Event-loop choice: uvloop where it is installed, stock asyncio otherwise.

uvloop ran 4 to 5 times faster than stock asyncio in the UDP echo test (DESIGN.md,
"event loop"); it is an optional dependency (the ``speed`` extra), so every
helper here falls back to asyncio when it cannot be imported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(use_uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """A callable making new loops: uvloop's if ``use_uvloop`` (None: when installed)."""
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def new_event_loop(use_uvloop: bool | None = None) -> asyncio.AbstractEventLoop:
    return loop_factory(use_uvloop)()


def install(use_uvloop: bool | None = None) -> bool:
    """Make ``asyncio.run`` and friends use uvloop; True if it did."""
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    if not use_uvloop:
        return False
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None, debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop, without touching the global policy."""
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop), debug=debug) as runner:
        return runner.run(main)


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")
