"""``lwm2m server --cluster-link HOST:PORT``: a cluster node that serves DTLS opens its link for
DTLS Connection ID forwarding (by default on ``--host``, a free port), says where, and publishes
it with its heartbeat; the option is refused where it has no use and when it does not read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.helpers.cluster_nodes import NodeProcess
from tests.helpers.ports import free_udp_port

from lwm2m.cli import main
from lwm2m.cluster.node import heartbeat_key
from lwm2m.storage.redisconn import connect

LINK = re.compile(r"DTLS forwarding link on 127\.0\.0\.1:(\d+) \(keep it from devices\)")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--cluster-link", "127.0.0.1:7000"], "--cluster-link: the link carries DTLS between cluster nodes"),
        (["--store", "redis://127.0.0.1:1/0", "--cluster-link", "127.0.0.1:7000"], "give --store redis"),
        (["--cluster-link", "7000"], "give HOST:PORT"),
        (["--cluster-link", "127.0.0.1:99999"], "give HOST:PORT"),
    ],
)
def test_a_link_where_it_has_no_use_or_that_does_not_read_is_refused(args: list[str], said: str) -> None:
    result = CliRunner().invoke(main, ["server", *args])
    assert result.exit_code != 0 and said in result.output


async def test_nodes_publish_their_links_with_their_heartbeats(redis_url: str, tmp_path: Path) -> None:
    given = free_udp_port()
    nodes = [
        NodeProcess(tmp_path, redis_url, "n1", ["--coaps-port", "0"]),
        NodeProcess(tmp_path, redis_url, "n2", ["--coaps-port", "0", "--cluster-link", f"127.0.0.1:{given}"]),
    ]
    redis = connect(redis_url)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        links = []
        for node in nodes:
            found = LINK.search(node.output())
            assert found is not None, node.output()
            links.append(int(found[1]))
        assert links[1] == given and links[0] not in (0, given)
        for node, port in zip(nodes, links, strict=True):
            beat = await redis.get(heartbeat_key(node.node_id))
            assert beat is not None and beat.decode().endswith(f" 127.0.0.1:{port}")
    finally:
        for node in nodes:
            node.stop()
        await redis.aclose()
