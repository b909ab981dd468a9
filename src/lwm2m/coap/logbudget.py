"""Log lines that anyone on the network can cause, bounded under a flood.

A refused request, a failed handshake or a shortened lifetime is worth a line, but a
sender can cause them as fast as it sends datagrams: a flood of them must not become a flood
of log lines (disk, CPU, and memory in a slow log pipe). :class:`LogBudget` writes the first
``burst`` lines of a category in a ``window`` one by one and only counts the rest; the count,
with the latest line left out, is told in one WARNING line once the window has ended (at the
category's next line, at :meth:`tick`, or at :meth:`flush`). Each category has its own
window, so a flood of one kind of line does not hide the others.

Sans-IO like the rest of this package: the caller gives the time (any monotonic clock in
seconds); the budget never reads a clock.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["LogBudget"]

_INF = float("inf")


class _Window:
    """One category's current window: its end, lines written, lines counted, the latest."""

    __slots__ = ("args", "end", "fmt", "logged", "suppressed")

    def __init__(self, end: float) -> None:
        self.end = end
        self.logged = 0
        self.suppressed = 0
        self.fmt = ""
        self.args: tuple[Any, ...] = ()


class LogBudget:
    """At most ``burst`` lines per category and ``window`` seconds to ``logger``, and one
    WARNING line per window that counts the lines left out.

    A category is a short noun phrase that names the kind of line ("CoAP refusals (4.08
    Request Entity Incomplete)"): it appears in the count's line. Categories are meant to be
    few and fixed by the code, never taken from the network; past ``max_categories`` the
    new ones share one window, so the budget stays bounded whatever callers pass.
    """

    def __init__(
        self, logger: logging.Logger, window: float = 10.0, burst: int = 20, *, max_categories: int = 64
    ) -> None:
        if not window > 0:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if type(burst) is not int or burst < 0:
            raise ValueError(f"burst must be a non-negative integer, got {burst!r}")
        self.logger = logger
        self.window = window
        self.burst = burst
        self.max_categories = max_categories
        self._windows: dict[str, _Window] = {}
        # The earliest end of a window that holds lines not told yet: tick() is O(1) until then.
        self._due = _INF

    def log(self, category: str, now: float, level: int, fmt: str, *args: Any) -> bool:
        """Log ``fmt % args`` at ``level`` if the category's budget allows; else count it.
        Answers whether the line was written. The line is formatted only when written (or
        when it is told as the latest of a count), so a counted line costs little. A line the
        logger's level leaves out is neither written nor counted."""
        if not self.logger.isEnabledFor(level):
            return False
        if now >= self._due:
            self.tick(now)
        windows = self._windows
        w = windows.get(category)
        if w is None:
            if len(windows) >= self.max_categories:
                category = "other lines"
                w = windows.get(category)
            if w is None:
                w = windows[category] = _Window(now + self.window)
        elif now >= w.end:
            if w.suppressed:
                self._tell(category, w)
            w.end = now + self.window
            w.logged = 0
        if w.logged < self.burst:
            w.logged += 1
            self.logger.log(level, fmt, *args)
            return True
        if not w.suppressed and w.end < self._due:
            self._due = w.end
        w.suppressed += 1
        w.fmt = fmt
        w.args = args
        return False

    def next_due(self) -> float | None:
        """When :meth:`tick` next has a count to tell (a window with lines left out ends), or None."""
        return None if self._due == _INF else self._due

    def tick(self, now: float) -> None:
        """Tell the counts of the windows that have ended; forget categories gone quiet."""
        if now < self._due:
            return
        due = _INF
        windows = self._windows
        for category, w in list(windows.items()):
            if w.end <= now:
                if w.suppressed:
                    self._tell(category, w)
                del windows[category]  # a quiet category leaves: the table holds only live ones
            elif w.suppressed and w.end < due:
                due = w.end
        self._due = due

    def flush(self) -> None:
        """Tell every count not told yet (at close)."""
        for category, w in self._windows.items():
            if w.suppressed:
                self._tell(category, w)
        self._due = _INF

    def _tell(self, category: str, w: _Window) -> None:
        try:
            latest = w.fmt % w.args
        except (TypeError, ValueError):
            latest = f"{w.fmt} {w.args!r}"
        self.logger.warning(
            "%d more %s in %g s not logged one by one (the latest: %s)",
            w.suppressed,
            category,
            self.window,
            latest,
        )
        w.suppressed = 0
        w.fmt = ""
        w.args = ()
