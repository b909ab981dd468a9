"""One contract for every store backend: memory, SQLite and Redis behave the same."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path as FsPath

import pytest
from tests.helpers.stores import redis_store

from lwm2m.errors import StoreError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.value import ObjLink
from lwm2m.protocol.attributes import Attributes
from lwm2m.protocol.registration import EndDevice, ObjectLink, Registration
from lwm2m.storage.base import (
    AddressIndex,
    HistoryRetention,
    HistoryStore,
    Observation,
    ObservationBinding,
    ObservationStore,
    Reachable,
    RegistrationPage,
    RegistrationStore,
    prefix_upper,
)
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.sqlite import SqliteStore, sqlite_glob

Store = MemoryStore | SqliteStore | RedisStore
Factory = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: FsPath) -> Iterator[Factory]:
    opened: list[Store] = []

    def make(retention: HistoryRetention | None = None) -> Store:
        if request.param == "memory":
            store: Store = MemoryStore.create(history_retention=retention)
        elif request.param == "sqlite":
            store = SqliteStore(tmp_path / "lwm2m.db", history_retention=retention)
        else:
            store = redis_store(request, request.param, retention)
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: Factory) -> Store:
    return make_store()


def reg(endpoint: str = "dev", rid: str = "r1", *, at: float = 1000.0, lifetime: int = 60) -> Registration:
    return Registration(
        endpoint=endpoint,
        registration_id=rid,
        address=("192.0.2.1", 5683),
        lifetime=lifetime,
        lwm2m_version="1.1",
        binding="U",
        queue_mode=True,
        sms="+1",
        objects=(ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(3303, None, "1.1")),
        root_path="/",
        content_formats=(60, 110),
        registered_at=at,
        last_update=at,
        extra=(("apn", "x"), ("flag", None)),
    )


def obs(token: bytes, endpoint: str = "dev", *paths: str, at: float = 1.0) -> Observation:
    return Observation(
        token=token,
        endpoint=endpoint,
        registration_id="r1",
        paths=tuple(Path.parse(p, prefixed=True) for p in paths or ("/3303/0/5700",)),
        composite=len(paths) > 1,
        content_format=112,
        attributes=Attributes(pmin=1, gt=20.5) if token.startswith(b"a") else None,
        created_at=at,
    )


def test_backends_satisfy_the_protocols(store: Store) -> None:
    # Static conformance: these assignments are what a type checker verifies.
    registrations: RegistrationStore = store.registrations
    observations: ObservationStore = store.observations
    history: HistoryStore = store.history
    assert registrations and observations and history


# --- registrations ----------------------------------------------------------------------------


async def test_add_get(store: Store) -> None:
    rs = store.registrations
    assert await rs.add(reg()) is None
    assert await rs.get("dev") == reg()
    assert await rs.get_by_id("r1") == reg()
    assert await rs.get("other") is None
    assert await rs.get_by_id("nope") is None
    assert await rs.all() == [reg()]


async def test_a_gateway_keeps_its_end_devices(store: Store) -> None:
    # LwM2M-TS-Gateway 1.1, object 25: the end devices its /25 told, kept with the registration.
    devices = (
        EndDevice("dev1", "urn:dev:001234", 0, (ObjectLink(3, 0), ObjectLink(3303, None, "1.1"))),
        EndDevice("lora-0a1b", "urn:dev:556789", 4, ()),
    )
    gw = Registration("gw", "g1", ("192.0.2.9", 5683), objects=(ObjectLink(25, 0), ObjectLink(25, 4)))
    rs = store.registrations
    await rs.add(replace(gw, end_devices=devices))
    assert (await rs.get("gw")) == replace(gw, end_devices=devices)
    await rs.update(replace(gw, end_devices=devices[1:]))
    assert (await rs.get_by_id("g1")) == replace(gw, end_devices=devices[1:])
    await rs.update(gw)
    assert (await rs.get("gw")) == gw


async def test_history_keeps_each_end_device_apart(store: Store) -> None:
    # A gateway's Send holds its own values and its end devices' (LwM2M-TS-Gateway 1.1).
    own, dev1, dev10 = Path((3303, 0, 5700)), Path((3303, 0, 5700), "dev1"), Path((3303, 0, 5700), "dev10")
    history = store.history
    await history.append("gw", [Record(own, 1.0), Record(dev1, 2.0), Record(dev10, 3.0)], received_at=10.0)
    await history.append("gw", [Record(dev1, 4.5, time=11.0)], received_at=11.0)
    got = await history.query("gw", dev1)
    assert [(e.record.path, e.record.value) for e in got] == [(dev1, 4.5), (dev1, 2.0)]
    got = await history.query("gw", Path((), "dev1"))
    assert [e.record.value for e in got] == [4.5, 2.0]
    assert [e.record.value for e in await history.query("gw", Path((3303,)))] == [1.0]
    assert {e.record.path for e in await history.query("gw")} == {own, dev1, dev10}


async def test_new_registration_replaces_the_endpoints_old_one(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg(rid="r1"))
    await rs.add(reg("other", "o1"))
    replaced = await rs.add(reg(rid="r2", at=2000.0))
    assert replaced == reg(rid="r1")
    assert await rs.get_by_id("r1") is None
    assert await rs.get_by_id("r2") == reg(rid="r2", at=2000.0)
    assert await rs.get("dev") == reg(rid="r2", at=2000.0)
    assert sorted(r.endpoint for r in await rs.all()) == ["dev", "other"]


async def test_registration_id_of_another_endpoint_is_refused(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg("a", "same"))
    with pytest.raises(ValueError, match="in use"):
        await rs.add(reg("b", "same"))
    assert await rs.get_by_id("same") == reg("a", "same")
    assert await rs.get("b") is None


async def test_stores_that_nodes_share_find_a_registration_by_its_address(store: Store) -> None:
    rs = store.registrations
    if isinstance(store, SqliteStore):
        assert not isinstance(rs, AddressIndex)  # one node's file: its registrar knows every address
        return
    assert isinstance(rs, AddressIndex)

    async def endpoint_at(address: tuple[str, int]) -> str | None:
        found = await rs.registration_at(address)
        return None if found is None else found.endpoint

    now = time.time()
    first = replace(reg(at=now), address=("192.0.2.7", 56830))
    await rs.add(first)
    await rs.add(replace(reg("other", "r2", at=now), address=("192.0.2.8", 1)))
    assert await endpoint_at(("192.0.2.7", 56830)) == "dev"
    assert await endpoint_at(("192.0.2.7", 56831)) is None
    # An Update from a new address: found there, and no longer at the old one.
    await rs.update(replace(first, address=("198.51.100.2", 4000), last_update=now + 1))
    assert await endpoint_at(("198.51.100.2", 4000)) == "dev"
    assert await endpoint_at(("192.0.2.7", 56830)) is None
    await rs.remove("dev")
    assert await endpoint_at(("198.51.100.2", 4000)) is None
    assert await endpoint_at(("192.0.2.8", 1)) == "other"


async def test_update(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg())
    newer = reg(at=1000.0)
    newer = Registration.from_dict({**newer.to_dict(), "last_update": 1500.0, "address": ["10.0.0.1", 9]})
    assert await rs.update(newer) == reg()
    assert await rs.get("dev") == newer
    assert await rs.get_by_id("r1") == newer


async def test_update_of_a_gone_registration_stores_nothing(store: Store) -> None:
    rs = store.registrations
    assert await rs.update(reg()) is None
    assert await rs.get("dev") is None
    await rs.add(reg(rid="r2"))
    assert await rs.update(reg(rid="r1", at=5000.0)) is None  # replaced by a new Register meanwhile
    assert await rs.get("dev") == reg(rid="r2")


async def test_remove(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg())
    assert await rs.remove("dev", registration_id="other") is None
    assert await rs.get("dev") == reg()
    assert await rs.remove("dev", registration_id="r1") == reg()
    assert await rs.remove("dev") is None
    await rs.add(reg())
    assert await rs.remove("dev") == reg()
    assert await rs.get_by_id("r1") is None
    assert await rs.all() == []


async def test_expired(store: Store) -> None:
    rs = store.registrations
    await rs.add(reg("a", "1", at=0.0, lifetime=100))  # expires 100
    await rs.add(reg("b", "2", at=0.0, lifetime=50))  # expires 50
    await rs.add(reg("c", "3", at=80.0, lifetime=100))  # expires 180
    assert await rs.expired(49.0) == []
    assert [r.endpoint for r in await rs.expired(100.0)] == ["b", "a"]
    assert [r.endpoint for r in await rs.expired(100.0, grace=30.0)] == ["b"]
    # An Update moves the expiry.
    a = await rs.get("a")
    assert a is not None
    await rs.update(Registration.from_dict({**a.to_dict(), "last_update": 150.0}))
    assert [r.endpoint for r in await rs.expired(200.0)] == ["b", "c"]


async def _walk(rs: RegistrationStore, limit: int, **filters: object) -> tuple[list[str], int]:
    """Every page from the start: the endpoints in order and how many pages it took."""
    names: list[str] = []
    after, pages = None, 0
    while True:
        page = await rs.page(after, limit, **filters)  # type: ignore[arg-type]
        pages += 1
        names += [r.endpoint for r in page.registrations]
        if page.next is None:
            return names, pages
        assert page.next > (after or "")  # always moves on
        after = page.next


async def test_pages_in_endpoint_order(store: Store) -> None:
    rs = store.registrations
    assert await rs.page() == RegistrationPage([], None)
    names = [f"dev-{i:03d}" for i in range(250)] + ["a", "b-1", "b-2", "é", "Z", "dev-0999"]
    for i, name in enumerate(reversed(names)):
        await rs.add(reg(name, f"r{i}"))
    ordered = sorted(names)  # code-point order, the same as SQLite's BINARY collation
    first = await rs.page(None, 3)
    assert [r.endpoint for r in first.registrations] == ordered[:3] and first.next == ordered[2]
    assert first.registrations[0] == await rs.get(ordered[0])
    assert await _walk(rs, 7) == (ordered, -(-len(names) // 7))
    # An exact fit ends with next None: no empty page after the last.
    assert (await _walk(rs, len(names)))[1] == 1
    last = await rs.page(ordered[-2], 5)
    assert [r.endpoint for r in last.registrations] == ordered[-1:] and last.next is None
    # After an endpoint that is no longer there, or never was.
    assert [r.endpoint for r in (await rs.page("b-10", 2)).registrations] == ["b-2", "dev-000"]
    with pytest.raises(ValueError):
        await rs.page(None, 0)


async def test_pages_follow_adds_and_removes(store: Store) -> None:
    rs = store.registrations
    for i in range(40):
        await rs.add(reg(f"n{i:02d}", f"r{i}"))
    for i in range(0, 40, 2):
        await rs.remove(f"n{i:02d}")
    await rs.add(reg("n05", "r-new"))  # a new registration of a listed endpoint: still once
    await rs.add(reg("m", "r-m"))
    names, _ = await _walk(rs, 6)
    assert names == ["m"] + [f"n{i:02d}" for i in range(1, 40, 2)]


async def test_pages_with_a_prefix_and_a_filter(store: Store) -> None:
    rs = store.registrations
    for i in range(300):
        await rs.add(reg(f"{'lamp' if i % 3 else 'meter'}-{i:03d}", f"r{i}"))
    await rs.add(reg("lam", "r-lam"))
    await rs.add(reg("lamq", "r-lamq"))
    lamps = sorted(f"lamp-{i:03d}" for i in range(300) if i % 3)
    assert (await _walk(rs, 50, prefix="lamp"))[0] == lamps
    assert (await _walk(rs, 50, prefix="lamp-29"))[0] == [n for n in lamps if n.startswith("lamp-29")]
    assert await rs.page(None, 10, prefix="nothing") == RegistrationPage([], None)
    assert (await rs.page("lamp-200", 1, prefix="lamp")).registrations[0].endpoint == "lamp-202"
    # A filter that matches little: short pages with a next, never one walk of everything.
    rare = {"meter-150", "lamp-298"}
    names, pages = await _walk(rs, 10, match=lambda r: r.endpoint in rare, scan=40)
    assert names == sorted(rare) and pages >= 302 // 40
    empty = await rs.page(None, 10, match=lambda r: False, scan=40)
    assert empty.registrations == [] and empty.next is not None
    # The filter sees whole registrations.
    few = await rs.page(None, 5, match=lambda r: r.supports(3303) and r.endpoint.endswith("7"))
    expected = ["lamp-007", "lamp-017", "lamp-037", "lamp-047", "lamp-067"]
    assert [r.endpoint for r in few.registrations] == expected


GLOB_NAMES = ["a[b", "a[b]c", "ab", "abc", "ab-1", "ac-1", "b!c", "bxc", "x*y", "xay", "é-1", "É-1", "]z"]


@pytest.mark.parametrize(
    "glob",
    [
        "a*",
        "a?",
        "*-1",
        "a[b",
        "a[[]b]c",
        "[ab]*",
        "[!a]*",
        "b[!x]c",
        "x[*]y",
        "*[é]*",
        "[]]z",
        "*",
        "?",
        "[",
        "é*",
    ],
)
async def test_pages_by_glob_match_fnmatch(store: Store, glob: str) -> None:
    rs = store.registrations
    for i, name in enumerate(GLOB_NAMES):
        await rs.add(reg(name, f"r{i}"))
    expected = sorted(n for n in GLOB_NAMES if fnmatch.fnmatchcase(n, glob))
    assert (await _walk(rs, 2, glob=glob))[0] == expected
    # With a prefix too: both must hold.
    assert (await _walk(rs, 2, prefix="a", glob=glob))[0] == [n for n in expected if n.startswith("a")]


async def test_a_glob_walk_is_bounded_and_reads_only_its_names(store: Store) -> None:
    rs = store.registrations
    for i in range(500):
        await rs.add(reg(f"node-{i:03d}", f"r{i}"))
    names, pages = await _walk(rs, 100, glob="node-?7?", scan=64)
    assert names == [f"node-{i:03d}" for i in range(500) if (i // 10) % 10 == 7]
    assert pages >= 500 // 64
    assert await rs.page(None, 5, prefix="x", glob="node-*") == RegistrationPage([], None)
    assert (await _walk(rs, 100, prefix="node-4", glob="*9", match=lambda r: r.endpoint < "node-450"))[0] == [
        f"node-4{i}9" for i in range(5)
    ]


def test_sqlite_glob_is_a_superset_of_the_glob() -> None:
    assert sqlite_glob("a*b?c") == "a*b?c"
    assert sqlite_glob("a[!xy]b") == "a?b"
    assert sqlite_glob("[]]z") == "?z"
    assert sqlite_glob("a[b") == "a[[]b"
    assert sqlite_glob("a]b") == "a]b"


# --- observations -----------------------------------------------------------------------------


async def test_observations(store: Store) -> None:
    os_ = store.observations
    single = obs(b"a1", "dev", at=1.0)
    composite = obs(b"\x00\xff", "dev", "/3/0/9", "/3303/0/5700", "/1", at=2.0)
    other = obs(b"b2", "other", at=3.0)
    for o in (single, composite, other):
        assert await os_.add(o) is None
    assert await os_.get(b"a1") == single
    assert await os_.get(b"\x00\xff") == composite
    assert (await os_.get(b"\x00\xff")).composite  # type: ignore[union-attr]
    assert await os_.get(b"zz") is None
    assert await os_.for_endpoint("dev") == [single, composite]
    assert await os_.for_endpoint("nobody") == []
    assert await os_.all() == [single, composite, other]

    again = obs(b"a1", "dev", "/3/0", at=9.0)
    assert await os_.add(again) == single
    assert await os_.for_endpoint("dev") == [composite, again]
    assert await os_.all() == [composite, other, again]  # a replaced token counts as new
    assert [chunk async for chunk in os_.chunks(2)] == [[composite, other], [again]]
    assert [chunk async for chunk in os_.chunks(3)] == [[composite, other, again]]

    assert await os_.remove(b"\x00\xff") == composite
    assert await os_.remove(b"\x00\xff") is None
    # Only those of one registration: the client registered again (r2) before r1 went.
    newer = dataclasses.replace(obs(b"n1", "dev", at=10.0), registration_id="r2")
    assert await os_.add(newer) is None
    assert await os_.remove_endpoint("dev", registration_id="r1") == [again]
    assert await os_.remove_endpoint("dev", registration_id="r1") == []
    assert await os_.for_endpoint("dev") == [newer]
    assert await os_.get(b"n1") == newer
    assert await os_.remove_endpoint("dev") == [newer]
    assert await os_.remove_endpoint("dev") == []
    assert await os_.for_endpoint("other") == [other]
    assert await os_.all() == [other]
    await os_.remove(b"b2")
    assert [chunk async for chunk in os_.chunks(2)] == []


async def test_an_observation_made_over_oscore_keeps_its_binding(store: Store) -> None:
    # RFC 8613 §8.4: its notifications are verified against its request's kid and Partial IV.
    os_ = store.observations
    with_context = dataclasses.replace(
        obs(b"o1", "osc", at=1.0), oscore=ObservationBinding(b"\x02", b"\x05\x01", b"\xab")
    )
    without = dataclasses.replace(obs(b"o2", "osc", at=2.0), oscore=ObservationBinding(b"", b"\x00"))
    await os_.add(with_context)
    await os_.add(without)
    assert await os_.get(b"o1") == with_context and await os_.get(b"o2") == without
    assert await os_.for_endpoint("osc") == [with_context, without]
    assert await os_.all() == [with_context, without]
    assert Observation.from_dict(with_context.to_dict()) == with_context


async def test_observations_of_end_devices(store: Store) -> None:
    # An observation of an end device behind a gateway keeps its prefixed paths.
    os_ = store.observations
    single = obs(b"g1", "gw", "/dev1/3303/0/5700")
    composite = obs(b"g2", "gw", "/dev1/3303/0/5700", "/3/0/9", "/lora-0a1b/3424/0")
    for o in (single, composite):
        assert await os_.add(o) is None
    assert single.paths == (Path((3303, 0, 5700), "dev1"),)
    assert await os_.get(b"g1") == single
    assert await os_.for_endpoint("gw") == [single, composite]


async def test_observation_moving_to_another_endpoint(store: Store) -> None:
    os_ = store.observations
    await os_.add(obs(b"t", "a"))
    await os_.add(obs(b"t", "b"))
    assert await os_.for_endpoint("a") == []
    assert await os_.for_endpoint("b") == [obs(b"t", "b")]


def test_observation_checks_paths() -> None:
    with pytest.raises(ValueError, match="at least one path"):
        Observation(b"t", "e", "r", ())
    with pytest.raises(ValueError, match="composite=True"):
        Observation(b"t", "e", "r", (Path.parse("/1"), Path.parse("/2")))


# --- history ------------------------------------------------------------------------------------


def rec(path: str, value: object, time: float | None = None) -> Record:
    return Record(Path.parse(path), value, time)  # type: ignore[arg-type]


async def test_history_values_keep_their_types(store: Store) -> None:
    records = [
        rec("/3/0/0", "ACME"),
        rec("/3/0/9", 87),
        rec("/3/0/13", 1_700_000_000),
        rec("/3303/0/5700", 21.5),
        rec("/3303/0/5701", 20.0),
        rec("/3303/0/5702", math.inf),
        rec("/5/0/0", b"\x00\x01binary"),
        rec("/5/0/1", ""),
        rec("/3/0/11/0", 0),
        rec("/3/0/15", True),
        rec("/18/0/1", ObjLink(3, 0)),
        rec("/19/0/0", 2**64 - 1),
        rec("/19/0/1", -(2**63)),
        Record(Path.parse("/3/0")),  # no value: not history
    ]
    await store.history.append("dev", records, received_at=100.0)
    got = {str(e.record.path): e.record.value for e in await store.history.query("dev")}
    want = {str(r.path): r.value for r in records if r.value is not None}
    assert got == want
    for path, value in want.items():
        assert type(got[path]) is type(value), path
    nan = await store.history.append("dev", [rec("/1/0/1", math.nan)], received_at=101.0)
    assert nan is None
    [latest] = await store.history.query("dev", limit=1)
    assert math.isnan(latest.record.value)  # type: ignore[arg-type]


async def test_history_query_order_path_and_time(store: Store) -> None:
    h = store.history
    await h.append("dev", [rec("/3303/0/5700", 20.0)], received_at=10.0)
    await h.append("dev", [rec("/3303/0/5700", 21.0), rec("/3303/1/5700", 5.0)], received_at=20.0)
    await h.append("dev", [rec("/33/0/1", 1)], received_at=25.0)
    # Send with timestamped values (LwM2M-TS-Core 1.2 §6.4.2): ordered by their own time.
    await h.append(
        "dev",
        [rec("/3303/0/5700", 18.0, time=5.0), rec("/3303/0/5700", 19.0, time=7.0)],
        source="send",
        received_at=30.0,
    )
    await h.append("other", [rec("/3303/0/5700", 99.0)], received_at=15.0)

    values = [e.record.value for e in await h.query("dev", Path.parse("/3303/0/5700"))]
    assert values == [21.0, 20.0, 19.0, 18.0]
    oldest = await h.query("dev", Path.parse("/3303/0"), newest_first=False)
    assert [e.record.value for e in oldest] == [18.0, 19.0, 20.0, 21.0]
    assert [e.time for e in oldest] == [5.0, 7.0, 10.0, 20.0]
    assert [e.source for e in oldest] == ["send", "send", "notify", "notify"]
    assert [e.received_at for e in oldest] == [30.0, 30.0, 10.0, 20.0]

    # Equal times: arrival order, reversed when newest first.
    assert [e.record.value for e in await h.query("dev", Path.parse("/3303"))] == [
        5.0,
        21.0,
        20.0,
        19.0,
        18.0,
    ]
    assert [e.record.value for e in await h.query("dev", Path.parse("/33"))] == [1]  # not /3303
    assert len(await h.query("dev")) == 6
    assert [e.record.value for e in await h.query("dev", limit=2)] == [1, 5.0]
    assert [e.record.value for e in await h.query("dev", limit=2, newest_first=False)] == [18.0, 19.0]
    assert [e.record.value for e in await h.query("dev", since=10.0, until=25.0)] == [5.0, 21.0, 20.0]
    assert await h.query("dev", limit=0) == []
    assert await h.query("nobody") == []
    assert all(e.endpoint == "dev" for e in await h.query("dev"))


async def test_history_equal_times_keep_arrival_order(store: Store) -> None:
    h = store.history
    for i in range(5):
        await h.append("dev", [rec("/1/0/1", i)], received_at=10.0)
    assert [e.record.value for e in await h.query("dev")] == [4, 3, 2, 1, 0]
    assert [e.record.value for e in await h.query("dev", newest_first=False)] == [0, 1, 2, 3, 4]


async def test_history_bad_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="source"):
        await store.history.append("dev", [rec("/1/0/1", 1)], source="read", received_at=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        await store.history.query("dev", limit=-1)


async def test_history_count_retention(make_store: Factory) -> None:
    store = make_store(HistoryRetention(max_records=3))
    h = store.history
    for i in range(5):
        await h.append("dev", [rec("/1/0/1", i)], received_at=float(i))
    await h.append("other", [rec("/1/0/1", 100)], received_at=0.0)
    assert [e.record.value for e in await h.query("dev")] == [4, 3, 2]
    # A batch bigger than the limit keeps its newest records.
    await h.append("dev", [rec(f"/1/0/{i}", i) for i in range(10, 15)], received_at=9.0)
    assert sorted(e.record.value for e in await h.query("dev")) == [12, 13, 14]  # type: ignore[type-var]
    assert [e.record.value for e in await h.query("other")] == [100]
    assert await h.prune(1e9) == 0


async def test_history_age_retention(make_store: Factory) -> None:
    store = make_store(HistoryRetention(max_records=None, max_age=100.0))
    h = store.history
    for t in (0.0, 50.0, 120.0, 200.0):
        await h.append("dev", [rec("/1/0/1", int(t), time=1.0)], received_at=t)  # old device clock
    await h.append("b", [rec("/1/0/1", 7)], received_at=10.0)
    assert await h.prune(now=160.0) == 3  # received before 60
    assert sorted(e.record.value for e in await h.query("dev")) == [120, 200]  # type: ignore[type-var]
    assert await h.query("b") == []
    assert await h.prune(now=160.0) == 0


async def test_history_clear(store: Store) -> None:
    await store.history.append("dev", [rec("/1/0/1", 1), rec("/1/0/2", 2)], received_at=1.0)
    await store.history.append("x", [rec("/1/0/1", 1)], received_at=1.0)
    assert await store.history.clear("dev") == 2
    assert await store.history.query("dev") == []
    assert len(await store.history.query("x")) == 1


async def test_history_add_is_seen_at_once_and_keeps_arrival_order(make_store: Factory) -> None:
    store = make_store(HistoryRetention(max_records=4))
    h = store.history
    h.add("dev", [rec("/1/0/1", 0), rec("/1/0", None)], received_at=10.0)  # no value: not history
    await h.append("dev", [rec("/1/0/1", 1)], received_at=10.0)
    for i in range(2, 6):
        h.add("dev", [rec("/1/0/1", i)], received_at=10.0)
    assert [e.record.value for e in await h.query("dev")] == [5, 4, 3, 2]  # before any flush
    await h.flush()
    assert [e.record.value for e in await h.query("dev", newest_first=False)] == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="source"):
        h.add("dev", [rec("/1/0/1", 1)], source="read", received_at=1.0)  # type: ignore[arg-type]


def test_retention_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_records"):
        HistoryRetention(max_records=0)
    with pytest.raises(ValueError, match="max_age"):
        HistoryRetention(max_age=0)


# --- SQLite durability -------------------------------------------------------------------------


async def test_sqlite_reopened_without_close_keeps_everything(tmp_path: FsPath) -> None:
    db = tmp_path / "crash.db"
    first = SqliteStore(db)  # never closed: as if the process died here
    await first.registrations.add(reg())
    await first.registrations.add(reg("b", "rb"))
    await first.registrations.update(Registration.from_dict({**reg().to_dict(), "lifetime": 5}))
    await first.registrations.remove("b")
    await first.observations.add(obs(b"a1"))
    await first.observations.add(obs(b"c", "dev", "/1", "/3/0"))
    await first.history.append("dev", [rec("/5/0/0", b"\x01"), rec("/3/0/9", 50, time=3.0)], received_at=9.0)

    second = SqliteStore(db)
    try:
        assert await second.registrations.all() == [
            Registration.from_dict({**reg().to_dict(), "lifetime": 5})
        ]
        assert await second.observations.for_endpoint("dev") == [obs(b"a1"), obs(b"c", "dev", "/1", "/3/0")]
        assert await second.observations.all() == [obs(b"a1"), obs(b"c", "dev", "/1", "/3/0")]
        entries = await second.history.query("dev", newest_first=False)
        assert [(str(e.record.path), e.record.value, e.time) for e in entries] == [
            ("/3/0/9", 50, 3.0),
            ("/5/0/0", b"\x01", 9.0),
        ]
    finally:
        second.close()
        first.close()


def test_sqlite_file_is_wal(tmp_path: FsPath) -> None:
    with SqliteStore(tmp_path / "w.db"):
        conn = sqlite3.connect(tmp_path / "w.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


def test_sqlite_refuses_newer_schema(tmp_path: FsPath) -> None:
    conn = sqlite3.connect(tmp_path / "new.db")
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        SqliteStore(tmp_path / "new.db")


def test_sqlite_in_memory(tmp_path: FsPath) -> None:
    with SqliteStore(":memory:") as s:
        assert s.path == ":memory:"


async def test_sqlite_history_add_is_durable_at_flush_or_when_the_batch_is_full(tmp_path: FsPath) -> None:
    from lwm2m.storage.sqlite import MAX_PENDING

    db = tmp_path / "batched.db"
    first = SqliteStore(db)
    other = SqliteStore(db)  # another connection sees only what is committed
    try:
        first.history.add("dev", [rec("/3303/0/5700", 1.5)], received_at=1.0)
        assert await other.history.query("dev") == []
        await first.history.flush()
        assert [e.record.value for e in await other.history.query("dev")] == [1.5]
        for i in range(MAX_PENDING):
            first.history.add("big", [rec("/3303/0/5700", float(i))], received_at=2.0)
        assert len(await other.history.query("big")) == MAX_PENDING  # written without a flush
        first.history.add("dev", [rec("/3303/0/5700", 2.5)], received_at=3.0)
    finally:
        first.close()  # writes what add() kept back
    assert [e.record.value for e in await other.history.query("dev")] == [2.5, 1.5]
    other.close()


async def test_sqlite_history_add_keeps_what_a_failed_write_held(tmp_path: FsPath) -> None:
    store = SqliteStore(tmp_path / "locked.db")
    blocker = sqlite3.connect(tmp_path / "locked.db", timeout=0)
    try:
        store.history.add("dev", [rec("/3303/0/5700", 1.5)], received_at=1.0)
        store._conn.execute("PRAGMA busy_timeout=0")
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(StoreError, match="locked"):
            await store.history.flush()
        blocker.execute("ROLLBACK")
        await store.history.flush()
        assert [e.record.value for e in await store.history.query("dev")] == [1.5]
    finally:
        blocker.close()
        store.close()


def test_prefix_upper() -> None:
    assert prefix_upper("") is None
    assert prefix_upper("ab") == "ac"
    assert prefix_upper("a\U0010ffff") == "b"
    assert prefix_upper("\U0010ffff") is None


@pytest.mark.parametrize("transport", ["udp", "dtls", "tcp", "tls"])
async def test_the_transport_is_kept_with_the_registration(store: Store, transport: str) -> None:
    rs = store.registrations
    kept = dataclasses.replace(reg(), transport=transport)
    await rs.add(kept)
    assert (await rs.get("dev")) == kept and (await rs.get_by_id("r1")) == kept
    moved = dataclasses.replace(kept, transport="udp" if transport != "udp" else "tcp", last_update=1001.0)
    await rs.update(moved)
    assert (await rs.get("dev")) == moved


async def test_reachable_gives_each_registrations_address_transport_and_queue_mode(store: Store) -> None:
    # With its ID and root path: what taking up its stored observations after a restart needs.
    rs = store.registrations
    await rs.add(reg("a", "r1"))
    tls = dataclasses.replace(
        reg("b", "r2"), address=("2001:db8::1", 5684), transport="tls", queue_mode=False, root_path="/lwm2m"
    )
    await rs.add(tls)
    assert sorted(await rs.reachable(), key=lambda r: r.endpoint) == [
        Reachable("a", ("192.0.2.1", 5683), "udp", True, "r1", "/"),
        Reachable("b", ("2001:db8::1", 5684), "tls", False, "r2", "/lwm2m"),
    ]
    await rs.remove("a")
    assert [r.endpoint for r in await rs.reachable()] == ["b"]
