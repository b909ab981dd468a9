"""What only the Redis store has: its key layout, the write order that survives a crash between
two writes, the expiry sweep of several nodes, a restart of Redis, a Redis that cannot be
reached, and its client over several event loops."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path as FsPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot
from tests.helpers.ports import free_tcp_port
from tests.helpers.redis import RedisServer, redis_server

from lwm2m.errors import StoreError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.attributes import Attributes
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.protocol.registration import ObjectLink, Registration
from lwm2m.storage.base import HistoryRetention, Observation, SavedDtlsSession, SecurityInfo
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.redisconn import endpoint_tag

RPK = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004" + "11" * 32 + "22" * 32)


def reg(endpoint: str = "dev", rid: str = "r1", *, at: float = 0.0, lifetime: int = 60) -> Registration:
    return Registration(
        endpoint=endpoint,
        registration_id=rid,
        address=("192.0.2.1", 5683),
        lifetime=lifetime,
        objects=(ObjectLink(1, 0), ObjectLink(3, 0), ObjectLink(3303, 0)),
        registered_at=at,
        last_update=at,
    )


def obs(token: bytes, endpoint: str = "dev") -> Observation:
    return Observation(token, endpoint, "r1", (Path.parse("/3303/0/5700"),), created_at=1.0)


def bootstrap_config() -> BootstrapConfig:
    return BootstrapConfig.from_json(
        {"servers": [{"uri": "coap://h:5683", "shortServerId": 1, "security": {"mode": "nosec"}}]}
    )


def keys(server: RedisServer) -> list[str]:
    return [k for k in server.cli("--scan").split("\n") if k]


async def test_every_key_has_the_prefix_and_one_endpoints_keys_share_a_slot(
    redis_server_session: RedisServer,
) -> None:
    redis_server_session.cli("flushall")
    store = RedisStore(redis_server_session.url)
    try:
        ep = "lamp{1}%"  # braces and % in the name: its tag still covers the whole name
        await store.registrations.add(reg(ep))
        await store.observations.add(obs(b"t1", ep))
        await store.history.append(ep, [Record(Path.parse("/3303/0/5700"), 21.5)], received_at=1.0)
        await store.security.put(SecurityInfo(ep, "id-1", b"k" * 16))
        await store.bootstrap_configs.put(ep, bootstrap_config())
        found = keys(redis_server_session)
        assert found and all(k.startswith("lwm2m:") for k in found)
        own = [k for k in found if k.endswith(endpoint_tag(ep))]
        assert {k.split(":")[1] for k in own} == {"reg", "obs", "hist", "sec", "bs"}
        assert len({key_slot(k.encode()) for k in own}) == 1
        assert key_slot(b"lwm2m:reg:" + endpoint_tag("lamp").encode()) != key_slot(own[0].encode())
    finally:
        store.close()


async def test_index_entries_a_crash_left_are_ignored(redis_url: str) -> None:
    """A crash between an index write and the record's: the index names a record that is not
    there, or not the one it says. Readers check the record."""
    store = RedisStore(redis_url)
    c = store.link.client()
    try:
        await c.set("lwm2m:regid:ghost", "nobody")  # the Register died before its record
        await c.zadd("lwm2m:endpoints", {"nobody": 0})
        await c.zadd("lwm2m:expiry", {"nobody": 5.0})
        assert await store.registrations.get_by_id("ghost") is None
        await store.registrations.add(reg("dev", "ghost"))  # the ID is free: its entry was stale
        assert (await store.registrations.get_by_id("ghost")) == reg("dev", "ghost")
        await c.set("lwm2m:regid:before", "dev")  # a Register of "dev" died after its index entry
        assert await store.registrations.get_by_id("before") is None
        page = await store.registrations.page()
        assert [r.endpoint for r in page.registrations] == ["dev"]
        assert await store.registrations.expired(10.0) == []
        assert await store.registrations.remove_expired(10.0, limit=5) == []
        assert await c.zscore("lwm2m:expiry", "nobody") is None  # the sweep cleaned it
        await c.set("lwm2m:token:" + b"zz".hex(), "dev")  # an observation that never landed
        assert await store.observations.get(b"zz") is None
        await c.set("lwm2m:psk:id-x", "dev")  # a security entry that never landed
        assert await store.security.get_by_identity("id-x") is None
        await store.security.put(SecurityInfo("other", "id-x", b"k" * 16))  # the identity is free
        assert (await store.security.get_by_identity("id-x")).endpoint == "other"  # type: ignore[union-attr]
    finally:
        store.close()


async def test_an_expiry_entry_earlier_than_its_record_is_moved_not_taken(redis_url: str) -> None:
    """An Update landed its record but died before moving the expiry entry: the sweep's script
    checks the record's own expiry, keeps it, and moves the entry."""
    store = RedisStore(redis_url)
    try:
        await store.registrations.add(reg("dev", at=0.0, lifetime=60))
        await store.registrations.add(reg("gone", "r2", at=0.0, lifetime=10))
        await store.link.client().zadd("lwm2m:expiry", {"dev": 5.0})  # as if the record said 5
        assert [r.endpoint for r in await store.registrations.expired(30.0)] == ["gone"]
        assert [r.endpoint for r in await store.registrations.remove_expired(30.0, limit=10)] == ["gone"]
        assert await store.registrations.get("dev") == reg("dev", at=0.0, lifetime=60)
        assert await store.link.client().zscore("lwm2m:expiry", "dev") == 60.0
    finally:
        store.close()


async def test_nodes_sweeping_at_once_never_both_take_a_registration(redis_url: str) -> None:
    nodes = [RedisStore(redis_url) for _ in range(3)]
    try:
        for i in range(60):
            await nodes[0].registrations.add(reg(f"d{i:02d}", f"r{i}", at=float(i), lifetime=10))
        # An Update raced in for d05: it is no longer expired at 100, and stays.
        await nodes[1].registrations.update(
            Registration.from_dict({**reg("d05", "r5").to_dict(), "last_update": 95.0})
        )
        taken = await asyncio.gather(*(n.registrations.remove_expired(100.0, limit=25) for n in nodes))
        names = [r.endpoint for batch in taken for r in batch]
        assert len(names) == len(set(names)) == 59
        assert "d05" not in names
        assert [r.endpoint for r in await nodes[2].registrations.all()] == ["d05"]
    finally:
        for n in nodes:
            n.close()


async def test_an_unreachable_redis_is_a_store_error_naming_the_url() -> None:
    url = f"redis://:secret@127.0.0.1:{free_tcp_port()}/0"
    store = RedisStore(url)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"127.0.0.1:{url.rsplit(':', 1)[1]}") as caught:
            await store.registrations.get("dev")
        assert "secret" not in str(caught.value)
        for call in (
            store.observations.get(b"t"),
            store.history.query("dev"),
            store.security.all(),
            store.bootstrap_configs.all(),
            store.dtls_sessions.take(),
        ):
            with pytest.raises(StoreError):
                await call
        assert time.monotonic() - started < 20
    finally:
        store.close()


def test_a_store_serves_one_event_loop_after_another(redis_url: str) -> None:
    """Opened in plain code, used by several asyncio.run() calls in turn (as the CLI does)."""
    store = RedisStore(redis_url)
    try:
        asyncio.run(store.registrations.add(reg()))
        assert asyncio.run(store.registrations.get("dev")) == reg()
        assert asyncio.run(store.registrations.get_by_id("r1")) == reg()
    finally:
        store.close()
    with pytest.raises(StoreError, match="closed"):
        asyncio.run(store.registrations.get("dev"))


def test_close_writes_what_history_add_kept_back(redis_url: str) -> None:
    store = RedisStore(redis_url)

    async def add() -> None:
        await store.registrations.add(reg())  # the client now belongs to this loop
        store.history.add("dev", [Record(Path.parse("/3303/0/5700"), 1.5)], received_at=1.0)

    asyncio.run(add())
    store.close()  # no loop runs: a blocking client writes it
    again = RedisStore(redis_url)

    async def inside_a_loop() -> list[object]:
        again.history.add("dev", [Record(Path.parse("/3303/0/5700"), 2.5)], received_at=2.0)
        again.close()  # in a running loop, as a server's shutdown does
        third = RedisStore(redis_url)
        try:
            return [e.record.value for e in await third.history.query("dev")]
        finally:
            third.close()

    assert asyncio.run(inside_a_loop()) == [2.5, 1.5]


async def test_history_index_lets_age_retention_read_only_old_endpoints(redis_url: str) -> None:
    store = RedisStore(redis_url, history_retention=HistoryRetention(max_records=5, max_age=100.0))
    h = store.history
    try:
        for t in (0.0, 50.0, 150.0):
            await h.append("old", [Record(Path.parse("/1/0/1"), int(t))], received_at=t)
        await h.append("new", [Record(Path.parse("/1/0/1"), 1)], received_at=140.0)
        assert await h.prune(now=160.0) == 2
        c = store.link.client()
        assert await c.zscore("lwm2m:history", "old") == 150.0  # moved to its oldest value
        assert await h.prune(now=1000.0) == 2
        assert await c.zcard("lwm2m:history") == 0  # nothing left to index
        assert await h.query("old") == [] and await h.query("new") == []
    finally:
        store.close()


async def test_a_history_list_is_trimmed_beyond_its_slack_and_reads_show_the_limit(redis_url: str) -> None:
    limit = 40  # a slack of 5 (an eighth)
    store = RedisStore(redis_url, history_retention=HistoryRetention(max_records=limit))
    h = store.history
    c = store.link.client()
    lengths = []
    try:
        for i in range(100):
            await h.append("dev", [Record(Path.parse("/1/0/1"), i)], received_at=float(i))
            lengths.append(await c.llen("lwm2m:hist:{dev}"))
            assert [e.record.value for e in await h.query("dev")] == list(range(i, max(-1, i - limit), -1))
        assert max(lengths) == limit + 5  # never more
        assert lengths[limit + 5] == limit  # the write beyond the slack trimmed it
        assert lengths.count(limit) == 1 + len(range(45, 100, 6))  # trimmed once per six writes from then on
        assert await h.clear("dev") == limit  # what reads showed, not the slack
    finally:
        store.close()


async def test_a_restarted_redis_with_aof_keeps_everything(tmp_path: FsPath) -> None:
    with redis_server(tmp_path / "aof", appendonly=True) as server:
        store = RedisStore(server.url)
        await store.registrations.add(reg())
        await store.registrations.add(reg("b", "rb"))
        await store.registrations.update(Registration.from_dict({**reg().to_dict(), "lifetime": 5}))
        await store.registrations.remove("b")
        await store.observations.add(obs(b"a1"))
        await store.history.append("dev", [Record(Path.parse("/5/0/0"), b"\x01")], received_at=9.0)
        await store.security.put(SecurityInfo("dev", rpk=RPK))
        await store.bootstrap_configs.put("dev", bootstrap_config())
        await store.dtls_sessions.save([SavedDtlsSession(("127.0.0.1", 4000), b"\x01c", b"state")])
        await store.dtls_sessions.put_ticket_keys(b"k" * 40)
        store.close()
        server.restart()
        again = RedisStore(server.url)
        try:
            assert await again.registrations.all() == [
                Registration.from_dict({**reg().to_dict(), "lifetime": 5})
            ]
            assert await again.registrations.get_by_id("rb") is None
            assert [r.endpoint for r in await again.registrations.expired(1e9)] == ["dev"]
            assert await again.observations.get(b"a1") == obs(b"a1")
            assert await again.observations.all() == [obs(b"a1")]
            assert [e.record.value for e in await again.history.query("dev")] == [b"\x01"]
            assert (await again.security.get_by_public_key(RPK)) == SecurityInfo("dev", rpk=RPK)
            assert await again.bootstrap_configs.all() == {"dev": bootstrap_config()}
            assert await again.dtls_sessions.take() == [
                SavedDtlsSession(("127.0.0.1", 4000), b"\x01c", b"state")
            ]
            assert await again.dtls_sessions.ticket_keys() == b"k" * 40
        finally:
            again.close()


# --- fuzz: anything a store keeps comes back the same through the Redis encoding -------------------

names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
registrations = st.builds(
    Registration,
    endpoint=names,
    registration_id=names,
    address=st.tuples(st.sampled_from(["192.0.2.1", "::1", "host"]), st.integers(0, 65535)),
    lifetime=st.integers(1, 2**31),
    lwm2m_version=st.sampled_from(["1.0", "1.1", "1.2"]),
    binding=st.sampled_from(["U", "UQ", "T", "S"]),
    queue_mode=st.booleans(),
    sms=st.none() | names,
    objects=st.lists(
        st.builds(
            ObjectLink,
            st.integers(0, 65534),
            st.none() | st.integers(0, 65534),
            st.none() | st.sampled_from(["1.0", "1.1", "2.0"]),
        ),
        max_size=4,
    ).map(tuple),
    root_path=st.sampled_from(["/", "/lwm2m"]),
    content_formats=st.lists(st.integers(0, 65535), max_size=3).map(tuple),
    registered_at=st.floats(0, 2e9, allow_nan=False),
    last_update=st.floats(0, 2e9, allow_nan=False),
    extra=st.lists(st.tuples(names, st.none() | names), max_size=2).map(tuple),
)
security_infos = st.one_of(
    st.builds(SecurityInfo, endpoint=names, psk_identity=names, psk_key=st.binary(min_size=1, max_size=64)),
    st.builds(SecurityInfo, endpoint=names, x509=st.just(True)),
    st.builds(SecurityInfo, endpoint=names, nosec=st.just(True)),
    st.builds(SecurityInfo, endpoint=names, rpk=st.just(RPK)),
)
observations = st.builds(
    lambda token, endpoint, rid, paths, single, content_format, attributes, created_at: Observation(
        token,
        endpoint,
        rid,
        tuple(Path.parse(p) for p in paths[: 1 if single else None]),
        composite=not single,
        content_format=content_format,
        attributes=attributes,
        created_at=created_at,
    ),
    st.binary(min_size=1, max_size=8),
    names,
    names,
    st.lists(st.sampled_from(["/3303/0/5700", "/3/0", "/1", "/3442/0/110/2"]), min_size=1, max_size=3),
    st.booleans(),
    st.none() | st.sampled_from([60, 110, 112, 11542]),
    st.none()
    | st.builds(Attributes, pmin=st.none() | st.integers(0, 3600), gt=st.none() | st.floats(-1e6, 1e6)),
    st.floats(0, 2e9),
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    registration=registrations,
    observation=observations,
    info=security_infos,
    value=st.floats() | st.binary() | st.text(),
)
def test_values_round_trip_through_redis(
    redis_server_session: RedisServer,
    registration: Registration,
    observation: Observation,
    info: SecurityInfo,
    value: object,
) -> None:
    redis_server_session.cli("flushall")
    store = RedisStore(redis_server_session.url)

    async def check() -> None:
        await store.registrations.add(registration)
        assert await store.registrations.get(registration.endpoint) == registration
        assert await store.registrations.get_by_id(registration.registration_id) == registration
        page = await store.registrations.page(prefix=registration.endpoint)
        assert page.registrations[0] == registration
        await store.observations.add(observation)
        assert await store.observations.get(observation.token) == observation
        assert await store.observations.for_endpoint(observation.endpoint) == [observation]
        await store.security.put(info)
        assert await store.security.get(info.endpoint) == info
        if info.psk_identity is not None:
            assert await store.security.get_by_identity(info.psk_identity) == info
        record = Record(Path.parse("/3/0/1"), value)  # type: ignore[arg-type]
        await store.history.append(registration.endpoint, [record], received_at=1.0)
        [entry] = await store.history.query(registration.endpoint)
        got = entry.record.value
        assert type(got) is type(value)
        assert got == value or (isinstance(value, float) and math.isnan(value) and math.isnan(got))  # type: ignore[arg-type]

    try:
        asyncio.run(check())
    finally:
        store.close()


async def test_history_a_failed_write_keeps_for_the_next_and_stays_bounded(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lwm2m.storage import redis_roles

    monkeypatch.setattr(redis_roles, "MAX_KEPT", 5)
    value = Path.parse("/3303/0/5700")
    with redis_server(tmp_path / "down", appendonly=True) as server:
        store = RedisStore(server.url)
        try:
            await store.history.append("dev", [Record(value, 0.5)], received_at=0.0)
            server.stop()
            for i in range(8):
                store.history.add("dev", [Record(value, float(i))], received_at=float(i + 1))
            with pytest.raises(StoreError, match=str(server.port)):
                await store.history.flush()
            server.start()
            await store.history.flush()
            # The newest MAX_KEPT values waited, each written once; nothing the first write stored went.
            got = [e.record.value for e in await store.history.query("dev", newest_first=False)]
            assert got == [0.5, 3.0, 4.0, 5.0, 6.0, 7.0]
        finally:
            store.close()


def test_close_with_an_unreachable_redis_is_a_store_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_tcp_port()}/0")
    store.history.add("dev", [Record(Path.parse("/3303/0/5700"), 1.0)], received_at=1.0)
    with pytest.raises(StoreError, match="1 history values not written"):
        store.close()
