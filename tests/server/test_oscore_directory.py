"""OSCORE entries written elsewhere (``lwm2m.server.oscore``): a context the server does not
hold is read from the store by the identity a request names (its kid and ID Context), then the
request is tried again; a miss is remembered, so a flood of unknown kids reads the store once
per kid and ``ttl``; an entry removed or changed elsewhere drops or replaces its context. Two
nodes on one Redis: an entry PUT at node A, the device registers at node B."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from tests.helpers.oscore import CLIENT
from tests.helpers.web import client_for

from lwm2m.client import Client, ClientConfig
from lwm2m.server import oscore as server_oscore
from lwm2m.server.config import ServerConfig
from lwm2m.server.oscore import ServerOscore
from lwm2m.server.role import Server
from lwm2m.storage.base import OscoreSecrets, SecurityInfo
from lwm2m.storage.memory import MemorySecurityStore
from lwm2m.storage.redis import RedisStore

pytestmark = pytest.mark.timeout(60)

SECRETS = OscoreSecrets(CLIENT.master_secret, CLIENT.sender_id, CLIENT.recipient_id, CLIENT.master_salt)


def entry(endpoint: str, secrets: OscoreSecrets = SECRETS) -> SecurityInfo:
    return SecurityInfo(endpoint, oscore=secrets)


class CountingStore(MemorySecurityStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def get_by_oscore(self, identity: str) -> SecurityInfo | None:
        self.reads.append(identity)
        await asyncio.sleep(0)
        return await super().get_by_oscore(identity)


async def test_unknown_kids_are_looked_up_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    store = CountingStore()
    oscore = ServerOscore(store, ttl=10.0)
    # Many requests with one unknown kid at once: one read, which all of them wait for.
    waits = [oscore.lookup(b"\x09", None, 100.0) for _ in range(50)]
    assert all(w is not None for w in waits)
    await asyncio.gather(*waits)  # type: ignore[arg-type]
    assert store.reads == ["09"]
    # Known missing for ttl: answered at once (4.01), no read; after ttl, read again.
    assert oscore.lookup(b"\x09", None, 105.0) is None
    await oscore.lookup(b"\x09", None, 111.0)  # type: ignore[misc]
    assert store.reads == ["09", "09"]
    # The misses remembered are bounded: the oldest are forgotten first.
    monkeypatch.setattr(server_oscore, "MAX_MISSES", 4)
    for kid in range(10):
        await oscore.lookup(bytes([kid]), b"\xaa", 200.0)  # type: ignore[misc]
    assert len(oscore._misses) == 4
    assert oscore.lookup(bytes([9]), b"\xaa", 201.0) is None
    assert oscore.lookup(bytes([0]), b"\xaa", 201.0) is not None
    assert "aa:00" in store.reads
    oscore.close()


async def test_an_entry_found_later_is_used_and_one_changed_replaces_its_context() -> None:
    store = CountingStore()
    oscore = ServerOscore(store, ttl=10.0)
    await store.put(entry("osc-1"))
    await oscore.lookup(CLIENT.sender_id, None, 0.0)  # type: ignore[misc]
    ctx = oscore.context("osc-1")
    assert ctx is not None and not ctx.window.initialized  # as after a restart: Echo first
    assert oscore.layer.find(CLIENT.sender_id, None) is ctx
    # A request that did not verify with the context as its entry stands: nothing new, a miss.
    assert oscore.lookup(CLIENT.sender_id, None, 1.0) is not None
    await asyncio.sleep(0.01)
    assert oscore.context("osc-1") is ctx and oscore.lookup(CLIENT.sender_id, None, 2.0) is None
    # Changed elsewhere: a context in use is checked after ttl and replaced.
    changed = dataclasses.replace(SECRETS, master_secret=b"another secret")
    await store.put(entry("osc-1", changed))
    oscore.verified(ctx, 5.0)  # within ttl: nothing read
    await asyncio.sleep(0.01)
    assert oscore.context("osc-1") is ctx
    oscore.verified(ctx, 20.0)
    await asyncio.sleep(0.01)
    new = oscore.context("osc-1")
    assert new is not None and new is not ctx and new.config.master_secret == b"another secret"
    # Removed elsewhere: dropped at the next check.
    await store.remove("osc-1")
    oscore.verified(new, 40.0)
    await asyncio.sleep(0.01)
    assert oscore.context("osc-1") is None and oscore.layer.find(CLIENT.sender_id, None) is None
    oscore.close()


async def test_a_device_whose_entry_was_written_in_the_store_registers() -> None:
    async with Server(ServerConfig(port=0)) as server:
        oscore = server.security.oscore
        assert oscore is not None
        await server.store.security.put(entry("osc-late"))  # not through the server: unknown to it
        assert oscore.context("osc-late") is None
        client = Client("osc-late", f"coap://127.0.0.1:{server.port}", config=ClientConfig(oscore=CLIENT))
        async with client:
            await client.wait_registered(10)
            assert client.registrations == 1 and client.errors == 0  # the first Register went through
            read = await server.read("osc-late", "/3/0/0", timeout=5)
            assert read.records[0].value == "lwm2m"
            # The entry removed in the store: within ttl the context goes, the Update is refused.
            oscore.ttl = 0.0
            await server.store.security.remove("osc-late")
            client.trigger_update()
            for _ in range(100):
                if oscore.context("osc-late") is None:
                    break
                await asyncio.sleep(0.05)
            assert oscore.context("osc-late") is None


async def test_a_changed_secret_takes_effect_without_a_restart() -> None:
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(entry("osc-new"))
        old = server.security.oscore.context("osc-new")  # type: ignore[union-attr]
        new_config = dataclasses.replace(CLIENT, master_secret=b"the new secret")
        await server.store.security.put(
            entry("osc-new", dataclasses.replace(SECRETS, master_secret=b"the new secret"))
        )
        # The device with the new secret: its Register fails to verify with the old context,
        # which sends the server to the store, where the new entry is.
        client = Client("osc-new", f"coap://127.0.0.1:{server.port}", config=ClientConfig(oscore=new_config))
        async with client:
            await client.wait_registered(10)
            assert client.errors == 0
        ctx = server.security.oscore.context("osc-new")  # type: ignore[union-attr]
        assert ctx is not None and ctx is not old and ctx.config.master_secret == b"the new secret"


async def test_an_entry_put_at_one_node_serves_the_device_at_another(redis_url: str) -> None:
    config = ServerConfig(port=0, shared_store=True)
    with RedisStore(redis_url) as store_a, RedisStore(redis_url) as store_b:
        async with Server(config, store_a) as a, Server(config, store_b) as b, client_for(a) as api:
            body = {
                "oscore": {
                    "masterSecret": CLIENT.master_secret.hex(),
                    "masterSalt": CLIENT.master_salt.hex(),
                    "senderId": CLIENT.sender_id.hex(),
                    "recipientId": CLIENT.recipient_id.hex(),
                }
            }
            assert (await api.put("/api/security/clients/osc-far", json=body)).status_code == 201
            assert b.security.oscore is not None and b.security.oscore.context("osc-far") is None
            client = Client("osc-far", f"coap://127.0.0.1:{b.port}", config=ClientConfig(oscore=CLIENT))
            async with client:
                await client.wait_registered(10)
                read = await b.read("osc-far", "/3/0/0", timeout=5)
                assert read.records[0].value == "lwm2m"
            # The same identity cannot be given to another endpoint at node B: the store says so.
            other = SecurityInfo("osc-other", oscore=SECRETS)
            with pytest.raises(ValueError, match="OSCORE identity '01' is in use"):
                await b.security.put(other)


async def test_two_nodes_holding_one_context_never_use_the_same_sequence_number() -> None:
    # Each range reserved in the store in one step (RFC 8613 Appendix B.1.1): a REST put of the
    # same parameters meanwhile neither lowers the stored limit nor hands a range out twice.
    store = MemorySecurityStore()
    await store.put(entry("osc-1"))
    a, b = ServerOscore(store, step=8), ServerOscore(store, step=8)
    a.load(await store.all())
    b.load(await store.all())
    used: dict[str, list[int]] = {"a": [], "b": []}
    for _ in range(40):
        for name, node in (("a", a), ("b", b)):
            ctx = node.context("osc-1")
            assert ctx is not None
            for _ in range(3):
                try:
                    used[name].append(ctx.sequence.take())
                except Exception:
                    break  # the next range is not stored yet
        await store.put(entry("osc-1"))  # an operator's update at the same moment
        await asyncio.sleep(0)
    assert len(used["a"]) > 40 and len(used["b"]) > 40
    assert not set(used["a"]) & set(used["b"])
    stored = (await store.get("osc-1")).oscore.sequence  # type: ignore[union-attr]
    assert stored > max(used["a"] + used["b"])
    a.close()
    b.close()


async def test_a_request_without_the_id_context_drops_no_context_that_has_one() -> None:
    # RFC 8613 §6.1: a request may leave the ID Context out; its look-up under the kid alone
    # finds nothing, which says nothing of the entry under the ID Context.
    store = CountingStore()
    info = entry("osc-ctx", dataclasses.replace(SECRETS, id_context=b"\xab"))
    await store.put(info)
    oscore = ServerOscore(store)
    oscore.load([info])
    await oscore.lookup(CLIENT.sender_id, None, 0.0)  # type: ignore[misc]
    assert store.reads == ["01"] and oscore.context("osc-ctx") is not None
    # A store that fails: nothing dropped, not asked again at once.
    await store.remove("osc-ctx")

    async def down(identity: str) -> SecurityInfo | None:
        raise ConnectionError("store away")

    store.get_by_oscore = down  # type: ignore[method-assign]
    await oscore.lookup(CLIENT.sender_id, b"\xab", 0.0)  # type: ignore[misc]
    assert oscore.context("osc-ctx") is not None and oscore.lookup(CLIENT.sender_id, b"\xab", 1.0) is None
    oscore.close()
