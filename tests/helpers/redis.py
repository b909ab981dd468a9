"""Real Redis servers for tests: Debian's ``redis-server`` on a free loopback port.

A :class:`RedisServer` is one process with its own folder; :class:`RedisCluster` is three
masters joined into a Redis Cluster by ``redis-cli --cluster create``. Both stop what they
started; a test that needs Redis fails (it is not skipped) when ``redis-server`` is missing,
since ``make test`` installs it.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
        self, folder: Path, *, port: int | None = None, appendonly: bool = False, cluster: bool = False
    ) -> None:
        self.folder = folder
        self.port = port or (free_cluster_port() if cluster else free_tcp_port())
        self.appendonly = appendonly
        self.cluster = cluster
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
                "--cluster-node-timeout",
                "2000",
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

    def restart(self) -> None:
        self.stop()
        self.start()

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [REDIS_CLI, "-p", str(self.port), *args], capture_output=True, check=True, timeout=10
        )
        return out.stdout.decode()


class RedisCluster:
    """Three masters on free ports joined into one Redis Cluster (no replicas unless asked)."""

    def __init__(self, folder: Path, *, masters: int = 3, replicas: int = 0) -> None:
        count = masters * (1 + replicas)
        self.replicas = replicas
        self.nodes = [RedisServer(folder / f"n{i}", cluster=True) for i in range(count)]

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
            if "cluster_state:ok" in info:
                return self
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok within 20 s")

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
def redis_cluster(folder: Path, *, masters: int = 3, replicas: int = 0) -> Iterator[RedisCluster]:
    cluster = RedisCluster(folder, masters=masters, replicas=replicas)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
