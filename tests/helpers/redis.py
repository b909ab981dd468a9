"""Real Redis servers for tests: Debian's ``redis-server`` on a free loopback port.

A :class:`RedisServer` is one process with its own folder; :class:`RedisCluster` is three
masters (each with ``replicas`` replicas, if asked) joined into a Redis Cluster by
``redis-cli --cluster create``, with what a failover test needs: the masters and their
replicas as ``CLUSTER NODES`` lists them, a wait for the replicas to catch up, and a wait for
a replica's promotion once its master is gone. Both stop what they started; a test that
needs Redis fails (it is not skipped) when ``redis-server`` is missing, since ``make test``
installs it.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.ports import free_tcp_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def free_cluster_port() -> int:
    """A free TCP port whose cluster bus port (the port + 10000) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a Redis Cluster node")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server on port {port} did not start within {timeout} s")


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, data in ``folder``; ``appendonly`` turns AOF on
    (fsync every write) so that a restart keeps what was acknowledged."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        cluster: bool = False,
        node_timeout_ms: int = 2000,
    ) -> None:
        self.folder = folder
        self.port = port or (free_cluster_port() if cluster else free_tcp_port())
        self.appendonly = appendonly
        self.cluster = cluster
        self.node_timeout_ms = node_timeout_ms
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError("redis-server is missing: `make test` installs Debian's redis-server")
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.folder / "redis.log"),
            "--protected-mode",
            "no",
        ]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        if self.cluster:
            argv += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.folder / "nodes.conf"),
                # How long a master may be unreachable before the others fail it over.
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc)
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def name(self) -> str:
        """``127.0.0.1:PORT``, as ``CLUSTER NODES`` and redis-py's cluster client name a node."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [REDIS_CLI, "-p", str(self.port), *args], capture_output=True, check=True, timeout=10
        )
        return out.stdout.decode()


@dataclass(frozen=True)
class ClusterNodeLine:
    """One line of ``CLUSTER NODES`` (the Redis Cluster specification, "CLUSTER NODES" output
    format): the node's id, ``host:port``, flags, its master's id (``-`` for a master) and the
    slot ranges it serves."""

    node_id: str
    name: str
    flags: frozenset[str]
    master_id: str
    slots: tuple[tuple[int, int], ...]

    @property
    def master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags

    def serves(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)

    @classmethod
    def parse(cls, line: str) -> ClusterNodeLine:
        fields = line.split()
        slots: list[tuple[int, int]] = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated or imported
                continue
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        return cls(
            node_id=fields[0],
            name=fields[1].split("@", 1)[0],
            flags=frozenset(fields[2].split(",")),
            master_id=fields[3],
            slots=tuple(slots),
        )


def _info_field(info: str, name: str) -> str | None:
    for line in info.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


class RedisCluster:
    """Three masters on free ports joined into one Redis Cluster (no replicas unless asked).
    ``node_timeout_ms`` is each node's ``cluster-node-timeout``: a master unreachable that long
    is failed, and one of its replicas promoted, a moment later."""

    def __init__(
        self, folder: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000
    ) -> None:
        count = masters * (1 + replicas)
        self.replicas = replicas
        self.nodes = [
            RedisServer(folder / f"n{i}", cluster=True, node_timeout_ms=node_timeout_ms) for i in range(count)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = self.nodes[0].cli("cluster", "info")
            if "cluster_state:ok" in info and self._replicas_online():
                return self
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok (replicas online) within 20 s")

    def _replicas_online(self) -> bool:
        """Every master has its replicas attached and past the initial sync."""
        if not self.replicas:
            return True
        for master in self.masters():
            info = master.cli("info", "replication")
            online = [
                line for line in info.splitlines() if line.startswith("slave") and "state=online" in line
            ]
            if len(online) < self.replicas:
                return False
        return True

    def server(self, name: str) -> RedisServer:
        """The node called ``name`` (``127.0.0.1:PORT``)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise LookupError(f"no node {name} in this cluster")

    def topology(self, asked: RedisServer | None = None) -> list[ClusterNodeLine]:
        """``CLUSTER NODES`` as ``asked`` (by default the first running node) sees it."""
        asked = asked or next(n for n in self.nodes if n.running)
        return [ClusterNodeLine.parse(line) for line in asked.cli("cluster", "nodes").splitlines() if line]

    def masters(self) -> list[RedisServer]:
        """The running masters that serve slots."""
        return [
            self.server(n.name)
            for n in self.topology()
            if n.master and n.slots and not n.failed and self.server(n.name).running
        ]

    def master_of(self, slot: int) -> RedisServer:
        for n in self.topology():
            if n.master and not n.failed and n.serves(slot):
                return self.server(n.name)
        raise LookupError(f"no master serves slot {slot}")

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        lines = self.topology()
        master_id = next(n.node_id for n in lines if n.name == master.name)
        return [self.server(n.name) for n in lines if n.master_id == master_id]

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until every replica of every running master has applied all that its master had
        when this was called: the replica's ``slave_repl_offset`` reaches the master's
        ``master_repl_offset`` (INFO replication). Replication is asynchronous, so this is what
        makes a write survive the loss of its master."""
        targets = [
            (replica, int(_info_field(master.cli("info", "replication"), "master_repl_offset") or 0))
            for master in self.masters()
            for replica in self.replicas_of(master)
        ]
        deadline = time.monotonic() + timeout
        for replica, offset in targets:
            while True:
                info = replica.cli("info", "replication")
                applied = int(_info_field(info, "slave_repl_offset") or -1)
                if _info_field(info, "master_link_status") == "up" and applied >= offset:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"replica {replica.name} is at offset {applied}, its master at {offset}"
                    )
                time.sleep(0.01)

    def wait_failover(self, dead: RedisServer, timeout: float = 20.0) -> RedisServer:
        """After ``dead`` (a master) stopped: wait until every running node reports
        ``cluster_state:ok`` and lists ``dead`` as failed and one of its former replicas as the
        master of all its slots; answers that new master."""
        before = next(n for n in self.topology() if n.name == dead.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            promoted = self._promoted(dead, before)
            if promoted is not None:
                return promoted
            time.sleep(0.05)
        raise RuntimeError(f"no replica of {dead.name} took over its slots within {timeout} s")

    def _promoted(self, dead: RedisServer, before: ClusterNodeLine) -> RedisServer | None:
        found: set[str] = set()
        for node in self.nodes:
            if not node.running:
                continue
            if "cluster_state:ok" not in node.cli("cluster", "info"):
                return None
            lines = self.topology(node)
            if not any(n.name == dead.name and n.failed for n in lines):
                return None
            heirs = [n for n in lines if n.master and not n.failed and set(before.slots) <= set(n.slots)]
            if len(heirs) != 1 or heirs[0].name == dead.name:
                return None
            found.add(heirs[0].name)
        return self.server(found.pop()) if len(found) == 1 else None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextmanager
def redis_server(folder: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(folder, appendonly=appendonly).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_cluster(
    folder: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000
) -> Iterator[RedisCluster]:
    cluster = RedisCluster(folder, masters=masters, replicas=replicas, node_timeout_ms=node_timeout_ms)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
