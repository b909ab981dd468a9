"""A process holding a SQLite store is killed with SIGKILL mid-write: nothing it acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path as FsPath

import pytest

from lwm2m.model.path import Path
from lwm2m.storage.sqlite import SqliteStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

# Writes without end, printing "ack <n>" only after write n returned: every line the
# parent reads stands for a write the store acknowledged.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from lwm2m.model.path import Path
    from lwm2m.model.record import Record
    from lwm2m.protocol.registration import Registration
    from lwm2m.storage.base import Observation
    from lwm2m.storage.sqlite import SqliteStore

    async def main() -> None:
        store = SqliteStore(sys.argv[1])
        n = 0
        while True:
            ep = f"ep-{n}"
            await store.registrations.add(Registration(ep, f"id-{n}", ("127.0.0.1", 5683), registered_at=n))
            await store.observations.add(Observation(n.to_bytes(4, "big"), ep, f"id-{n}", (Path.of(3, 0),)))
            await store.history.append("dev", [Record(Path.of(3303, 0, 5700), float(n))], received_at=n)
            if n % 2:
                await store.registrations.remove(f"ep-{n - 1}")
            print("ack", n, flush=True)
            n += 1

    asyncio.run(main())
    """
)


def test_sigkill_loses_no_acknowledged_write(tmp_path: FsPath) -> None:
    db = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    acked = -1
    try:
        assert child.stdout is not None
        while acked < 300:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child ended early: {child.stderr.read().decode() if child.stderr else ''}")
            acked = int(line.split()[1])
        child.send_signal(signal.SIGKILL)  # mid-stream: the child is writing as fast as it can
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    async def check() -> None:
        with SqliteStore(db) as store:
            endpoints = {r.endpoint for r in await store.registrations.all()}
            for n in range(acked + 1):
                if n < acked:  # the unacknowledged write after the last ack may have removed ep-<acked>
                    kept = n % 2 == 1  # each odd write removed the even one before it
                    assert (f"ep-{n}" in endpoints) == kept, n
                assert await store.observations.get(n.to_bytes(4, "big")) is not None, n
            values = [
                e.record.value for e in await store.history.query("dev", Path.of(3303), newest_first=False)
            ]
            # Writes after the last ack may or may not have landed; everything up to it must have.
            assert values[: acked + 1] == [float(n) for n in range(acked + 1)]

    asyncio.run(check())
