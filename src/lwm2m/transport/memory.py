"""Giving memory back to the operating system after a large expiry.

State that a flood left behind (block-wise bodies, DTLS handshakes, duplicate
detection) is freed by the endpoints' timers, but the C library keeps freed heap
pages mapped: glibc returns only the top of its heap on its own, so RSS would stay
at the flood's peak. Measured with 2,000 stalled Mbed TLS handshakes ended by the
timer: 80 MiB stayed resident after they were freed; ``malloc_trim(0)`` gave back
all but 1 MiB. So after a large release (``TRIM_AFTER`` bytes, estimated by the
endpoints' ``released`` counters) the driver asks glibc to trim, at most once per
``TRIM_INTERVAL`` seconds. Elsewhere than glibc this does nothing.

CPython's own small-object arenas (1 MiB each) are not the C library's to trim: one goes
back to the system when the last object in it is freed. After a flood of small objects
(20,000 registrations that expired, a Block1 flood's duplicate-detection entries) the
objects CPython keeps in its free lists for reuse (tuples, floats, lists, dicts: the last
ones freed, so the flood's) held 4 of 11 such arenas in the Block1 flood of
``bench/floods.py``. So the trim first runs a full garbage collection, which empties those
free lists (and collects any cycle the flood left). A full collection stops the loop
for a while on a large heap (about 80 ms per million objects here), so it runs at most
once per ``COLLECT_INTERVAL``; one owed meanwhile runs when the interval has passed, so
the last release of a flood always gets one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
import time
from collections.abc import Callable

__all__ = ["COLLECT_INTERVAL", "TRIM_AFTER", "TRIM_INTERVAL", "Trimmer", "malloc_trim"]

log = logging.getLogger(__name__)

TRIM_AFTER = 8 << 20
TRIM_INTERVAL = 2.0
COLLECT_INTERVAL = 5.0


def _load_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl has no such function)
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _load_trim()


def malloc_trim() -> bool:
    """Return free heap pages to the system (glibc); False where that cannot be done."""
    if _trim is None:
        return False
    _trim(0)
    return True


class Trimmer:
    """Calls ``malloc_trim`` once ``released`` has grown by ``after`` bytes since the last call,
    at most once per ``interval`` seconds (a trim walks the whole heap: 12 ms measured on a
    400 MB heap with half of it free in 1 KB holes), with a full garbage collection first, at
    most once per ``collect_interval`` seconds (owed until then)."""

    __slots__ = (
        "_after",
        "_at",
        "_collect_interval",
        "_collected",
        "_interval",
        "_mark",
        "_owed",
        "collections",
        "trims",
    )

    def __init__(
        self,
        after: int = TRIM_AFTER,
        interval: float = TRIM_INTERVAL,
        collect_interval: float = COLLECT_INTERVAL,
    ) -> None:
        self._after = after
        self._interval = interval
        self._collect_interval = collect_interval
        self._mark = 0
        self._at = -float("inf")
        self._collected = -float("inf")
        self._owed = False  # a collection, after a release
        self.trims = 0
        self.collections = 0

    def check(self, released: int, now: float) -> float | None:
        """Trim (and collect) if due; else the seconds until what is owed may run (None: nothing
        owed)."""
        due = released - self._mark >= self._after
        if due:
            if now - self._at < self._interval:
                return self._at + self._interval - now
            self._mark = released
            self._at = now
            self._owed = True
        elif not self._owed:
            return None
        collect = now - self._collected >= self._collect_interval
        if not (due or collect):
            return self._collected + self._collect_interval - now
        start = time.perf_counter()
        if collect:
            gc.collect()  # empties the free lists, so that the arenas only they held can go
            self._collected = now
            self._owed = False
            self.collections += 1
        if malloc_trim():
            self.trims += 1
            log.debug(
                "%smalloc_trim after %d MiB released: %.1f ms",
                "garbage collection and " if collect else "",
                released >> 20,
                (time.perf_counter() - start) * 1e3,
            )
        return None if not self._owed else self._collected + self._collect_interval - now
