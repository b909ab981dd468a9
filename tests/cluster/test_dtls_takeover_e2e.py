"""DTLS session takeover end to end (docs/cluster.md, "DTLS session takeover"): one
``redis-server``, two ``lwm2m server`` processes on it with CoAP over DTLS, Debian's nginx in
front of their DTLS ports, and a PSK device (our DTLS client, Connection ID on) registered
through nginx. ``kill -9`` of the node that holds its session, nginx reloaded without it: the
device's next Update reaches the survivor, which takes the session over from Redis, so that
the device goes on without a ClientHello; the survivor owns and serves it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from tests.helpers.cluster_nodes import NodeProcess, cluster_nodes
from tests.helpers.nginx import NginxBalancer
from tests.helpers.pki import KEY
from tests.helpers.polling import eventually
from tests.helpers.redis import RedisServer
from tests.helpers.security import count_hellos, psk, update
from tests.helpers.server import Device, register

from lwm2m.cluster.ownership import owner_key
from lwm2m.coap.numbers import Code
from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.redis import RedisStore
from lwm2m.storage.redisconn import connect
from lwm2m.transport.dtls import open_dtls_endpoint

EP = "dtls-dev"
WAIT = 20.0
OPTIONS = ("--coaps-port", "0", "--registration-rate", "0", "--log-level", "warning")
COAPS = re.compile(r"CoAP over DTLS on coaps://127\.0\.0\.1:(\d+)")


def coaps_of(node: NodeProcess) -> tuple[str, int]:
    found = COAPS.search(node.output())
    assert found is not None, node.output()
    return ("127.0.0.1", int(found[1]))


async def test_a_device_survives_kill_9_of_its_node_without_a_handshake(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    db = connect(redis.url)
    try:
        store = RedisStore(redis.url)
        await store.security.put(SecurityInfo(EP, "dtls-dev-id", KEY))
        store.close()
        with cluster_nodes(tmp_path / "nodes", redis.url, 2, OPTIONS) as nodes:
            balancer = NginxBalancer(
                tmp_path / "nginx",
                udp_upstreams=[n.coap for n in nodes],
                coaps_upstreams=[coaps_of(n) for n in nodes],
            )
            with balancer:
                assert balancer.coaps_port is not None
                entry = ("127.0.0.1", balancer.coaps_port)
                async with open_dtls_endpoint(client=psk("dtls-dev-id", KEY), handler=Device()) as client:
                    created = await client.request(register(EP), entry, timeout=10)
                    assert created.code == Code.CREATED

                    async def owner() -> str | None:
                        node = await db.hget(owner_key(EP), "node")
                        return node.decode() if node else None

                    first = await eventually(owner, timeout=WAIT)
                    await eventually(lambda: _sessions(db), timeout=WAIT)  # published
                    victim = next(n for n in nodes if n.node_id == first)
                    survivor = next(n for n in nodes if n is not victim)
                    hellos = count_hellos(client)

                    victim.kill()
                    await asyncio.to_thread(
                        balancer.replace_upstreams,
                        udp_upstreams=[survivor.coap],
                        coaps_upstreams=[coaps_of(survivor)],
                    )
                    changed = await client.request(update(created.location_path), entry, timeout=10)
                    assert changed.code == Code.CHANGED
                    assert hellos == []  # no new handshake
                    await eventually(owner, lambda o: o == survivor.node_id, timeout=WAIT)
                    async with httpx.AsyncClient(base_url=survivor.base, timeout=WAIT) as api:
                        read = await api.get(f"/api/clients/{EP}/3/0/0", params={"timeout": "5"})
                    assert read.status_code == 200 and read.json()["code"] == "2.05", read.text
        said = survivor.log.read_text(errors="replace")
        assert "Traceback" not in said and " ERROR " not in said, said[-3000:]
    finally:
        await db.aclose()
        redis.stop()


async def _sessions(db: object) -> list[bytes]:
    return [k async for k in db.scan_iter("lwm2m:dtls:s:*")]  # type: ignore[attr-defined]
