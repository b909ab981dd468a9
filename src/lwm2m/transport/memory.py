"""Giving memory back to the operating system after a large expiry.

State that a flood left behind (block-wise bodies, DTLS handshakes, duplicate
detection) is freed by the endpoints' timers, but the C library keeps freed heap
pages mapped: glibc returns only the top of its heap on its own, so RSS would stay
at the flood's peak. Measured with 2,000 stalled Mbed TLS handshakes ended by the
timer: 80 MiB stayed resident after they were freed; ``malloc_trim(0)`` gave back
all but 1 MiB. So after a large release (``TRIM_AFTER`` bytes, estimated by the
endpoints' ``released`` counters) the driver asks glibc to trim, at most once per
``TRIM_INTERVAL`` seconds. Elsewhere than glibc this does nothing.

CPython's own small-object arenas are not the C library's to trim: after a flood of
small objects (20,000 registrations that expired, a Block1 flood's duplicate-detection
entries) a few MiB stay in arenas that some survivor keeps, though the bytes allocated
are back to their level before the flood.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import Callable

__all__ = ["TRIM_AFTER", "TRIM_INTERVAL", "Trimmer", "malloc_trim"]

log = logging.getLogger(__name__)

TRIM_AFTER = 8 << 20
TRIM_INTERVAL = 2.0


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
    400 MB heap with half of it free in 1 KB holes)."""

    __slots__ = ("_after", "_at", "_interval", "_mark", "trims")

    def __init__(self, after: int = TRIM_AFTER, interval: float = TRIM_INTERVAL) -> None:
        self._after = after
        self._interval = interval
        self._mark = 0
        self._at = -float("inf")
        self.trims = 0

    def check(self, released: int, now: float) -> float | None:
        """Trim if due; else the seconds until a trim that is owed may run (None: none owed)."""
        if released - self._mark < self._after:
            return None
        if now - self._at < self._interval:
            return self._at + self._interval - now
        self._mark = released
        self._at = now
        start = time.perf_counter()
        if malloc_trim():
            self.trims += 1
            log.debug(
                "malloc_trim after %d MiB released: %.1f ms",
                released >> 20,
                (time.perf_counter() - start) * 1e3,
            )
        return None
