"""``lwm2m server`` processes as the nodes of a cluster on one Redis, for end-to-end tests.

Each :class:`NodeProcess` is ``python -m lwm2m server --store redis://… --node-id ID`` on
loopback ports the system picks (port 0: no other process can take them between a test's
choice and the node's bind) and that the node prints, its output in a file of its own folder
(read back when it fails, never a pipe that could fill up and stop it).
:meth:`NodeProcess.kill` is a ``kill -9``; ``stop`` ends it with SIGINT as an operator's Ctrl-C
does, and kills it if it lingers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

READY = "Ctrl-C stops it."
# The node's first line: "lwm2m server: CoAP on coap://H:P, REST API on http://H:P/api".
SERVING = re.compile(r"CoAP on coap://127\.0\.0\.1:(\d+), REST API on http://127\.0\.0\.1:(\d+)/api")


class NodeProcess:
    """One node: its id, its process once started, and its CoAP (UDP) and REST API ports once
    it serves."""

    def __init__(self, folder: Path, redis_url: str, node_id: str, options: Sequence[str] = ()) -> None:
        self.folder = folder
        self.redis_url = redis_url
        self.node_id = node_id
        self.options = tuple(options)
        self.coap_port = 0
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """The base URL of its REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def coap(self) -> tuple[str, int]:
        return ("127.0.0.1", self.coap_port)

    @property
    def log(self) -> Path:
        return self.folder / f"{self.node_id}.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def start(self) -> NodeProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "lwm2m",
            "server",
            "--store",
            self.redis_url,
            "--node-id",
            self.node_id,
            "--coap-port",
            "0",
            "--http-port",
            "0",
            *self.options,
        ]
        with self.log.open("wb") as out:
            # Unbuffered: the ready line reaches the file at once.
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Returns once the node said it serves (it has joined the cluster by then), with its
        ports read from what it said."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"node {self.node_id} exited: {self.output()}")
            said = self.output()
            if READY in said:
                serving = SERVING.search(said)
                assert serving is not None, said
                self.coap_port, self.http_port = int(serving[1]), int(serving[2])
                return
            time.sleep(0.05)
        raise AssertionError(f"node {self.node_id} did not start within {timeout} s: {self.output()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``: nothing of the node's shutdown runs."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def cluster_nodes(
    folder: Path, redis_url: str, count: int, options: Sequence[str] = ()
) -> Iterator[list[NodeProcess]]:
    """``count`` nodes ``n1``, ``n2``… on ``redis_url``, started together, stopped at the end."""
    nodes = [NodeProcess(folder, redis_url, f"n{i + 1}", options) for i in range(count)]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            if node.running:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGINT)  # all at once: they stop side by side
        for node in nodes:
            node.stop()
