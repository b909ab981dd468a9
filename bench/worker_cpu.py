"""CPU seconds of another process (the export worker), read from Linux's /proc."""

from __future__ import annotations

import os

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (0.0 when None or gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def keep_subscribed(server, every: float = 0.03):  # type: ignore[no-untyped-def]
    """A subscriber of ``server``'s events that takes them every ``every`` seconds and does
    nothing with them: with it, the server makes each event whether or not the export wants
    it, as ``lwm2m server`` does for the REST API's event stream. Answers the task (cancel it)."""
    import asyncio

    stream = server.events(backlog=1_000_000)

    async def drain() -> None:
        try:
            while True:
                await asyncio.sleep(every)
                stream.take_all()
        finally:
            stream.close()

    return asyncio.ensure_future(drain())
