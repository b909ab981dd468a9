"""A process writing webhook events to a SQLite outbox is killed with SIGKILL mid-write: every
batch it acknowledged is there after, and the store opens clean."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path as FsPath

import pytest

from lwm2m.storage.sqlite import SqliteStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

# Batches of 10 events without end, "ack <n>"
# printed only after batch n was written: every line read stands for a batch the store took.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from lwm2m.storage.sqlite import SqliteStore
    from lwm2m.storage.webhooks import OutboxEntry, Webhook

    async def main() -> None:
        store = SqliteStore(sys.argv[1])
        await store.webhooks.put_hook(Webhook("h", "http://127.0.0.1:9/", ("SEND",), "k", 0.0))
        n = 0
        while True:
            batch = [OutboxEntry("h", f"e{n}-{i}", 1.0, b'{"n": %d}' % n, next_at=1e12) for i in range(10)]
            await store.webhooks.enqueue(batch)
            print("ack", n, flush=True)
            n += 1

    asyncio.run(main())
    """
)


def test_sigkill_loses_no_written_event(tmp_path: FsPath) -> None:
    db = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    acked = -1
    try:
        assert child.stdout is not None
        while acked < 200:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child ended early: {child.stderr.read().decode() if child.stderr else ''}")
            acked = int(line.split()[1])
        child.send_signal(signal.SIGKILL)
        # What it acknowledged before it died: the lines still in the pipe count too.
        for line in child.stdout.read().splitlines():
            acked = int(line.split()[1])
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    async def check() -> None:
        with SqliteStore(db) as store:
            size = await store.webhooks.size()
            assert (acked + 1) * 10 <= size <= (acked + 2) * 10  # the batch after the last ack, maybe
            got = await store.webhooks.claim(2e12, size, 1.0)
            ids = {e.event_id for e in got}
            assert all(f"e{n}-{i}" in ids for n in range(acked + 1) for i in range(10))
            assert await store.webhooks.get_hook("h") is not None

    asyncio.run(check())
