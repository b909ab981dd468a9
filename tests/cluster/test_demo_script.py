"""deploy/cluster_demo.py (``make cluster``): Redis, three ``lwm2m server`` nodes and nginx on
free ports; a device registered through the balancer is read through every node's API, the
owner's and two others' (their requests go to the owner over Redis); Ctrl-C stops every
process the script started."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path as FsPath
from typing import Any

import httpx
import pytest
from tests.helpers.procs import descendants
from tests.helpers.server import Device, register

from lwm2m.cluster.ownership import owner_key
from lwm2m.coap.numbers import Code
from lwm2m.storage.redisconn import connect
from lwm2m.transport.udp import open_udp_endpoint

SCRIPT = FsPath(__file__).resolve().parents[2] / "deploy" / "cluster_demo.py"
SRC = FsPath(__file__).resolve().parents[2] / "src"
EP = "demo-device"
READY = "Ctrl-C stops everything."


def running(pid: int) -> bool:
    try:
        stat = FsPath(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """The pids still running after ``timeout`` (none, when all ended in time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := {pid for pid in pids if running(pid)}) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return left


@pytest.fixture
async def demo(tmp_path: FsPath) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    """The script running (no simulated devices) until the test ends; its cluster.json."""
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--devices",
        "0",
        "--state",
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    output: list[str] = []
    seen: set[int] = set()
    try:
        async with asyncio.timeout(60):
            while not output or output[-1] != READY:
                line = await proc.stdout.readline()
                assert line, "the script ended before it was ready:\n" + "".join(output)
                output.append(line.decode().rstrip("\n"))
        description = json.loads((state / "cluster.json").read_text())
        seen = descendants(proc.pid)
        yield proc, description
    finally:
        # After a failure: what the script started goes too (it runs in sessions of its own).
        for pid in {pid for pid in seen if running(pid)}:
            os.kill(pid, signal.SIGKILL)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_device_registered_through_nginx_is_served_by_every_node_and_ctrl_c_stops_all(
    demo: tuple[asyncio.subprocess.Process, dict[str, Any]],
) -> None:
    proc, description = demo
    ports = description["ports"]
    assert 5683 not in ports.values() and 8080 not in ports.values()
    nodes = {node["id"]: node for node in description["nodes"]}
    assert set(nodes) == {"n1", "n2", "n3"}
    assert len({node["coap_port"] for node in nodes.values()} | {ports["coap"]}) == 4
    started = descendants(proc.pid)
    # Three nodes, nginx (master and workers) and Redis, all below the script.
    assert {node["pid"] for node in nodes.values()} | {description["pids"]["redis"]} <= started
    assert description["pids"]["nginx"] in started and len(started) >= 6

    device = Device()
    redis = connect(description["store"])
    try:
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as endpoint:
            created = await endpoint.request(register(EP), ("127.0.0.1", ports["coap"]), timeout=10)
            assert created.code == Code.CREATED
            # The node that received the Register through nginx claims the device.
            async with asyncio.timeout(10):
                while not (owner := await redis.hget(owner_key(EP), "node")):
                    await asyncio.sleep(0.05)
            owner_id = owner.decode()
            assert owner_id in nodes
            others = sorted(set(nodes) - {owner_id})
            async with httpx.AsyncClient(timeout=20) as http:
                # The registration is in the shared store: the balanced API lists it.
                listed = await http.get(f"{description['console']}api/clients")
                assert [c["endpoint"] for c in listed.json()["clients"]] == [EP]
                for node_id in [*others, owner_id]:
                    answer = await http.get(f"{nodes[node_id]['api']}/api/clients/{EP}/3/0/0")
                    assert answer.status_code == 200, (node_id, answer.text)
                    assert answer.json()["code"] == "2.05", (node_id, answer.text)
                    assert "Open Mobile Alliance" in answer.text
            # Each read reached the device (two of them through their owner).
            assert len(device.requests) == 3
    finally:
        await redis.aclose()

    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert await wait_gone(started, 10) == set()


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("cluster_demo_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_ports_taken_between_their_choice_and_their_binding_are_chosen_again(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script chooses free ports, and its processes bind them a moment later: a port
    another process binds meanwhile makes that process (Redis, a node, nginx) start again on
    another port, instead of ending the try-out."""
    script = load_script()
    held_tcp = socket.socket()
    held_tcp.bind(("127.0.0.1", 0))  # bound, not listening: a connection to it is refused
    held_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    held_udp.bind(("127.0.0.1", 0))
    taken = {socket.SOCK_STREAM: held_tcp.getsockname()[1], socket.SOCK_DGRAM: held_udp.getsockname()[1]}
    chosen = script.free_port
    handed: list[int] = []

    def free_port(kind: int, host: str = "127.0.0.1") -> int:
        # The held ports are handed out first: to Redis (TCP), the CoAP port of nginx (UDP).
        port = taken.pop(kind, None) or chosen(kind, host)
        handed.append(port)
        return port

    monkeypatch.setattr(script, "free_port", free_port)
    env_path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", env_path)
    demo = script.ClusterDemo(script.DemoConfig(state=tmp_path))
    real_node_ports = script.ClusterDemo._node_ports
    first = [True]  # n1's first CoAP port is the held UDP port (nginx's CoAP port has moved)

    def node_ports() -> tuple[int, int, int]:
        if first[0]:
            first[0] = False
            return held_udp.getsockname()[1], *real_node_ports()[1:]
        return real_node_ports()  # type: ignore[no-any-return]

    monkeypatch.setattr(script.ClusterDemo, "_node_ports", staticmethod(node_ports))
    try:
        demo.start()
        assert demo.ports["redis"] != held_tcp.getsockname()[1]
        assert demo.ports["coap"] != held_udp.getsockname()[1]
        assert held_udp.getsockname()[1] not in {node.coap_port for node in demo.nodes}
        assert demo.dead() == []
        # Each of the three was started twice: its log holds the first start's error.
        assert "already in use" in (tmp_path / "logs" / "redis.log").read_text()
        assert "already in use" in (tmp_path / "logs" / "n1.log").read_text()
        assert "already in use" in (tmp_path / "logs" / "nginx.log").read_text()
        with urllib.request.urlopen(f"{demo.console}api/clients", timeout=10) as answer:
            assert answer.status == 200
    finally:
        demo.stop()
        held_tcp.close()
        held_udp.close()
