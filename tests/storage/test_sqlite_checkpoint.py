"""The SQLite store's WAL is copied back into the database file by a thread of its own
(``_Checkpointer``), not by a commit on the event loop: with the store's own automatic checkpoint
turned off, what is written still reaches the database file, and closing the store stops the
thread."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path as FsPath

from lwm2m.protocol.registration import Registration
from lwm2m.storage.sqlite import SqliteStore

NAME = "lwm2m-sqlite-checkpoint"


def checkpointers() -> int:
    return sum(t.name == NAME for t in threading.enumerate())


async def test_the_wal_reaches_the_database_file_without_a_commit_checkpointing(tmp_path: FsPath) -> None:
    path = tmp_path / "lwm2m.db"
    before = checkpointers()
    store = SqliteStore(path)
    try:
        assert checkpointers() == before + 1
        store._conn.execute("PRAGMA wal_autocheckpoint=0")  # no commit checkpoints from here on
        size = os.path.getsize(path)
        for i in range(2000):
            await store.registrations.add(Registration(f"ep-{i:05d}", f"r{i:05d}", ("192.0.2.1", 5683)))
        deadline = time.monotonic() + 10
        while os.path.getsize(path) <= size:
            assert time.monotonic() < deadline, "the WAL was not checkpointed into the file"
            time.sleep(0.05)
    finally:
        store.close()
    assert checkpointers() == before
    with SqliteStore(path) as again:
        assert len(await again.registrations.all()) == 2000


def test_a_memory_database_has_no_checkpointer() -> None:
    before = checkpointers()
    with SqliteStore(":memory:"):
        assert checkpointers() == before
