"""The registrar on its own: the names it holds for registered clients."""

from __future__ import annotations

from tests.helpers.server import register

from lwm2m.coap.numbers import Code
from lwm2m.server.registrar import Registrar
from lwm2m.storage.memory import MemoryStore


async def test_name_hands_back_the_registrars_own_copy_of_a_registered_clients_name() -> None:
    store = MemoryStore.create()
    registrar = Registrar(store.registrations, store.observations, lambda event: None)
    for i, addr in enumerate((("10.0.0.1", 40001), ("10.0.0.2", 40002))):
        answer = await registrar.handle(register(f"dev-{i}"), addr)
        assert answer.code == Code.CREATED
    (held,) = [k for k in registrar.peers if k == "dev-0"]
    copy = "".join(["dev", "-0"])  # equal, another object (as a name read back from a store)
    assert copy == held and copy is not held
    assert registrar.name(copy) is held
    unknown = "".join(["dev", "-9"])
    assert registrar.name(unknown) is unknown
    # An address taken over by another client (its last Register came from there): the name
    # given is kept rather than another client's.
    await registrar.handle(register("dev-1"), ("10.0.0.1", 40001))
    assert registrar.name(copy) is copy


async def test_the_addresses_kept_share_their_port_objects() -> None:
    store = MemoryStore.create()
    registrar = Registrar(store.registrations, store.observations, lambda event: None)
    for i in range(3):  # the ports as a socket reports them: an int object each
        await registrar.handle(register(f"dev-{i}"), (f"10.0.0.{i}", int("40123")))
    ports = [registrar.peers[f"dev-{i}"][1] for i in range(3)]
    assert ports == [40123] * 3 and ports[0] is ports[1] is ports[2]
    stored = await store.registrations.get("dev-2")
    assert stored is not None and stored.address is registrar.peers["dev-2"]


async def test_clients_registered_within_a_millisecond_share_their_time_objects() -> None:
    store = MemoryStore.create()
    times = iter([1000.0, 1000.0004, 1000.0009, 1000.0012, 1000.0012, 999.5])

    def clock() -> float:
        return next(times) + 0.0  # a float object of its own each time, as time.time() gives

    registrar = Registrar(store.registrations, store.observations, lambda event: None, clock=clock)
    for i in range(6):
        await registrar.handle(register(f"dev-{i}"), (f"10.0.0.{i}", 40000 + i))
    stamps = [(await store.registrations.get(f"dev-{i}")) for i in range(6)]
    at = [r.registered_at for r in stamps if r is not None]
    assert at == [1000.0, 1000.0, 1000.0, 1000.0012, 1000.0012, 999.5]
    assert at[0] is at[1] is at[2] and at[3] is at[4]
    # A clock set back is taken as it is, not held at the later stamp.
    assert at[5] is not at[4]
    assert all(r is not None and r.last_update is r.registered_at for r in stamps)
