"""The registrar's expiry sweep: in batches from the store's expiry index, letting the event loop
run between them, and reading afresh after each pause (LwM2M-TS-Core 1.2 §6.2.1)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path as FsPath

import pytest
from tests.helpers.server import register

from lwm2m.coap.numbers import Code
from lwm2m.model.path import Path
from lwm2m.protocol.registration import Registration
from lwm2m.server import registrar as registrar_module
from lwm2m.server.events import RegistrationExpired, ServerEvent
from lwm2m.server.registrar import EXPIRY_BATCH, Registrar
from lwm2m.storage.base import Observation
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore

Store = MemoryStore | SqliteStore
NOW = 10_000.0
REBOOT = Path.parse("/3/0/4")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[Store]:
    s: Store = MemoryStore.create() if request.param == "memory" else SqliteStore(tmp_path / "lwm2m.db")
    yield s
    s.close()


def reg(i: int, *, at: float) -> Registration:
    return Registration(
        endpoint=f"dev-{i:05d}",
        registration_id=f"r{i}",
        address=("192.0.2.1", 10_000 + i),
        lifetime=60,
        registered_at=at,
        last_update=at,
    )


async def _fill(store: Store, count: int, expired: int) -> tuple[Registrar, list[ServerEvent]]:
    events: list[ServerEvent] = []
    registrar = Registrar(store.registrations, store.observations, events.append, clock=lambda: NOW)
    for i in range(count):
        # The first ``expired`` ran out, newest last; the rest still live.
        at = NOW - 1000.0 + i if i < expired else NOW
        r = reg(i, at=at)
        await store.registrations.add(r)
        await store.observations.add(
            Observation(f"t{i}".encode(), r.endpoint, r.registration_id, (Path.parse("/3/0/9"),))
        )
        registrar.remember(r.endpoint, r.address)
    return registrar, events


async def test_every_expired_registration_goes_in_batches(store: Store) -> None:
    count, expired = EXPIRY_BATCH * 5 + 7, EXPIRY_BATCH * 3 + 5
    registrar, events = await _fill(store, count, expired)
    gone = await registrar.expire()
    assert gone == [f"dev-{i:05d}" for i in range(expired)]  # soonest first
    assert [e.registration.endpoint for e in events if isinstance(e, RegistrationExpired)] == gone
    assert len(await store.registrations.all()) == count - expired
    assert len(await store.observations.all()) == count - expired
    assert len(registrar.peers) == count - expired
    assert await registrar.expire() == []


async def test_the_loop_runs_between_slices_and_an_update_meanwhile_counts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registrar_module, "EXPIRY_BATCH", 1)
    monkeypatch.setattr(registrar_module, "EXPIRY_SLICE", 0.0)  # a pause after each registration
    expired = 20
    registrar, _ = await _fill(store, 30, expired)
    ticks = 0
    saved = f"dev-{expired - 1:05d}"  # the last to expire: the sweep reaches it after pauses

    async def meanwhile() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1
            if ticks == 3:  # the device's Update arrives while the sweep is under way
                old = await store.registrations.get(saved)
                assert old is not None
                await store.registrations.update(dataclasses.replace(old, last_update=NOW))

    task = asyncio.create_task(meanwhile())
    await asyncio.sleep(0)
    gone = await registrar.expire()
    task.cancel()
    assert ticks >= len(gone) - 1  # the loop ran between registrations
    assert saved not in gone
    assert len(gone) == expired - 1
    assert await store.registrations.get(saved) is not None


class _RegisteredMeanwhile:
    """The store's registrations, where the device of ``endpoint`` registers again right after
    a sweep took its expired registration (before the sweep handles it)."""

    def __init__(self, store: Store, endpoint: str) -> None:
        self._store = store
        self._endpoint = endpoint
        self.registrar: Registrar | None = None
        self.again = ""  # the new registration's ID

    def __getattr__(self, name: str) -> object:
        return getattr(self._store.registrations, name)

    async def remove_expired(self, now: float, grace: float = 0.0, *, limit: int) -> list[Registration]:
        taken = await self._store.registrations.remove_expired(now, grace, limit=limit)
        if any(r.endpoint == self._endpoint for r in taken):
            assert self.registrar is not None
            created = await self.registrar.handle(register(self._endpoint), reg(0, at=NOW).address)
            assert created.code == Code.CREATED
            self.again = created.location_path[-1]
            await self._store.observations.add(Observation(b"new", self._endpoint, self.again, (REBOOT,)))
        return taken


async def test_a_registration_made_while_the_sweep_takes_the_old_one_is_left_alone(store: Store) -> None:
    _, events = await _fill(store, 3, 1)  # dev-00000 expired, with observation t0
    registrations = _RegisteredMeanwhile(store, "dev-00000")
    sweeping = Registrar(registrations, store.observations, events.append, clock=lambda: NOW)  # type: ignore[arg-type]
    registrations.registrar = sweeping
    for i in range(3):
        sweeping.remember(f"dev-{i:05d}", reg(i, at=NOW).address)
    assert await sweeping.expire() == ["dev-00000"]
    expired = [e.registration for e in events if isinstance(e, RegistrationExpired)]
    assert [r.registration_id for r in expired] == ["r0"]
    assert (await store.registrations.get("dev-00000")).registration_id == registrations.again  # type: ignore[union-attr]
    assert [o.token for o in await store.observations.for_endpoint("dev-00000")] == [b"new"]
    assert "dev-00000" in sweeping.peers
    assert [type(e).__name__ for e in events] == ["ClientRegistered", "RegistrationExpired"]
