"""A cluster on one machine, to try it out: Redis, three ``lwm2m server`` nodes and nginx.

    python deploy/cluster_demo.py [--devices 30] [--coap-port N] [--http-port N] [--state DIR]
                                  [--host ADDRESS] [--allowed-host NAME]
    make cluster                     # the same, after installing the cluster extra

nginx listens on ``--host`` (127.0.0.1); the nodes only on 127.0.0.1. A console reached by a
name, or through a wildcard ``--host``, needs that name as ``--allowed-host`` (the nodes
answer only requests for hosts they know, ``lwm2m.web.guard``).

What it starts, each process with its log under the state folder (a new temporary folder,
removed at the end, unless ``--state`` names one, which is kept):

- ``redis-server`` on 127.0.0.1 (``--redis-port``, else a free port), the store all nodes share;
- three nodes, ``lwm2m server --store redis://… --node-id n1`` … ``n3``, each with its own
  CoAP, CoAP-over-DTLS and HTTP ports on 127.0.0.1 (free ports);
- nginx with the configuration of ``deploy/nginx-lwm2m.conf`` rendered for those ports and
  folders: UDP balanced by ``hash $remote_addr consistent`` (a device stays on its node), the
  REST API and the console balanced over the nodes;
- with ``--devices N``, simulated devices (``lwm2m simulate``) registering through nginx, in
  three processes bound to 127.0.0.11, .12 and .13, so that the balancer's hash on the source
  address can place them on different nodes.

It prints where the console and CoAP are, and stops everything on Ctrl-C (or SIGTERM): the
devices, then the nodes, nginx and Redis. Ports 5683 and 8080 are used only when given.
``state/cluster.json`` lists every port and process id. The console works on any node: its
REST API serves every device (a request for a device another node holds goes to that node
over Redis) and its event stream carries the whole fleet's events.

Requires Debian's ``redis-server``, ``nginx`` and ``libnginx-mod-stream``, and the package with
its ``cluster`` extra (redis-py). Only the standard library is imported here, so the script
runs under the Python that has ``lwm2m`` installed (``.venv/bin/python``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

DEPLOY = Path(__file__).resolve().parent
NGINX_TEMPLATE = DEPLOY / "nginx-lwm2m.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
NODES = 3
SIMULATORS = 3  # processes of simulated devices, each from its own loopback address
START_TIMEOUT = 60.0  # seconds a process may take to listen
STOP_TIMEOUT = 15.0  # seconds a process may take to stop before it is killed
PORT_ATTEMPTS = 5  # starts of a process whose free port another process took meanwhile


class DemoError(Exception):
    """Something the try-out cannot go on without (a missing program, a process that died)."""


def free_port(kind: int, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class DemoConfig:
    """Where the cluster runs. A port of 0 is a free port chosen at start.

    ``hash_key``: what nginx hashes to pick a device's node (``$remote_addr``, as deployed; a
    benchmark with many devices per address may spread them with ``$remote_addr$remote_port``).
    ``devices``: simulated devices registering through nginx (0: none).
    """

    state: Path
    host: str = "127.0.0.1"
    coap_port: int = 0
    coaps_port: int = 0
    http_port: int = 0
    redis_port: int = 0
    devices: int = 0
    hash_key: str = "$remote_addr"
    lifetime: int = 300
    log_level: str = "warning"
    node_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.hash_key not in ("$remote_addr", "$remote_addr$remote_port"):
            raise ValueError(f"hash key {self.hash_key!r}: $remote_addr or $remote_addr$remote_port")
        if self.devices < 0:
            raise ValueError("devices: give 0 or more")


@dataclass
class Node:
    """One ``lwm2m server`` of the cluster and its ports on 127.0.0.1."""

    node_id: str
    coap_port: int
    coaps_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def lwm2m_command() -> list[str]:
    """``lwm2m`` of the Python running this script (a virtual environment's, typically)."""
    return [sys.executable, "-m", "lwm2m"]


def stream_module_line() -> str:
    """nginx's stream module: Debian builds it as a dynamic module (libnginx-mod-stream)."""
    flags = subprocess.run([NGINX, "-V"], capture_output=True, text=True, check=True).stderr
    if re.search(r"--with-stream(\s|$)", flags):
        return ""
    if not STREAM_MODULE.exists():
        raise DemoError(
            f"nginx's stream module is missing ({STREAM_MODULE}): apt install libnginx-mod-stream"
        )
    return f"load_module {STREAM_MODULE};"


def render_nginx(
    template: str,
    *,
    folder: Path,
    host: str,
    ports: dict[int, int],
    nodes: list[Node],
    hash_key: str,
    module_line: str,
    as_root: bool,
) -> str:
    """``deploy/nginx-lwm2m.conf`` for this machine: its listening ports (5683, 5684, 8080)
    replaced by ``ports`` on ``host``, its node ports (1568N, 1569N, 1808N for node N) by the
    nodes', its files moved into ``folder``; ``hash_key`` picks the UDP sessions' node.
    Raises DemoError when the template no longer has what is replaced."""
    text = template
    replacements = 0

    def count(pattern: str, repl: str, flags: int = re.MULTILINE) -> None:
        nonlocal text, replacements
        text, n = re.subn(pattern, repl, text, flags=flags)
        if n == 0:
            raise DemoError(f"{NGINX_TEMPLATE} has no {pattern!r} to adapt")
        replacements += n

    count(r"^load_module [^;]*;", module_line)
    # Workers as root may use the temporary folder; anyone else runs nginx as themselves.
    count(r"^user [^;]*;", "user root;" if as_root else "")
    for old in ("/run/lwm2m", "/var/log/lwm2m", "/var/lib/lwm2m/nginx"):
        count(re.escape(old), str(folder))
    count(r"hash \$remote_addr consistent;", f"hash {hash_key} consistent;")
    listen = re.compile(r"^(\s*listen\s+)(\d+)\b", re.MULTILINE)
    found = {int(m.group(2)) for m in listen.finditer(text)}
    if found != set(ports):
        raise DemoError(f"{NGINX_TEMPLATE} listens on {sorted(found)}, expected {sorted(ports)}")
    text = listen.sub(lambda m: f"{m.group(1)}{host}:{ports[int(m.group(2))]}", text)
    by_port = {}
    for index, node in enumerate(nodes, 1):
        by_port[f"1568{index}"] = node.coap_port
        by_port[f"1569{index}"] = node.coaps_port
        by_port[f"1808{index}"] = node.http_port
    upstream = re.compile(r"^(\s*server 127\.0\.0\.1:)(\d+);", re.MULTILINE)
    if {m.group(2) for m in upstream.finditer(text)} != set(by_port):
        raise DemoError(f"{NGINX_TEMPLATE}'s upstreams are not the {len(nodes)} nodes' ports")
    return upstream.sub(lambda m: f"{m.group(1)}{by_port[m.group(2)]};", text)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def wait_http(url: str, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"{name} exited with {proc.returncode}: {tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise DemoError(f"{name} did not answer {url} within {START_TIMEOUT:g} s: {tail(log)}")


def wait_tcp(port: int, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"{name} exited with {proc.returncode}: {tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise DemoError(f"{name} did not listen on {port} within {START_TIMEOUT:g} s: {tail(log)}")


def port_taken(log: Path, since: int) -> bool:
    """Whether the process that wrote ``log`` from byte ``since`` on stopped because a port was
    taken between our choosing it (free then) and its binding it: the message of ``lwm2m
    server``, redis-server and nginx alike."""
    try:
        with log.open("rb") as f:
            f.seek(since)
            return b"already in use" in f.read()
    except OSError:
        return False


def log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def serve_on_free_ports(
    spawn: Callable[[], object],
    wait: Callable[[], None],
    log: Path,
    repick: Callable[[], None] | None,
    *,
    spawned_at: int | None = None,
) -> None:
    """``spawn()`` a process on ports chosen free (unless it was, its log then ``spawned_at``
    bytes long) and ``wait()`` until it serves. When it stopped because another process bound
    one of its ports meanwhile, as its log says from where that start began, ``repick()``
    chooses others and it starts again, PORT_ATTEMPTS times at most; without ``repick`` (ports
    the user gave) the error stands."""
    since = spawned_at
    for attempt in range(PORT_ATTEMPTS):
        if since is None:
            since = log_size(log)
            spawn()
        try:
            wait()
            return
        except DemoError:
            if repick is None or attempt + 1 == PORT_ATTEMPTS or not port_taken(log, since):
                raise
            repick()
            since = None


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """``sig``, then SIGKILL if it has not exited within STOP_TIMEOUT; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class ClusterDemo:
    """Redis, the nodes and nginx (and the simulated devices) of one try-out; ``start`` and
    ``stop`` (which always stops what was started, in the reverse order)."""

    config: DemoConfig
    nodes: list[Node] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    nginx: subprocess.Popen[bytes] | None = None
    simulators: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.config.state

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def store_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    @property
    def coap_uri(self) -> str:
        return f"coap://{self.config.host}:{self.ports['coap']}"

    @property
    def console(self) -> str:
        return f"http://{self.config.host}:{self.ports['http']}/"

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.logs / log_name).open("ab") as log:
            # Its own session: Ctrl-C reaches this script only, which stops the rest in order.
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start(self) -> ClusterDemo:
        for program in (REDIS_SERVER, NGINX):
            if not Path(program).exists():
                raise DemoError(f"{program} is missing: apt install redis-server nginx libnginx-mod-stream")
        self.logs.mkdir(parents=True, exist_ok=True)
        c = self.config
        self.ports = {
            "redis": c.redis_port or free_port(socket.SOCK_STREAM),
            "coap": c.coap_port or free_port(socket.SOCK_DGRAM, c.host),
            "coaps": c.coaps_port or free_port(socket.SOCK_DGRAM, c.host),
            "http": c.http_port or free_port(socket.SOCK_STREAM, c.host),
        }
        try:
            self._start_redis()
            self._start_nodes()
            self._start_nginx()
            if c.devices:
                self._start_devices()
            self._write_description()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        folder = self.state / "redis"
        folder.mkdir(exist_ok=True)
        log = self.logs / "redis.log"

        def spawn() -> None:
            argv = [REDIS_SERVER, "--port", str(self.ports["redis"]), "--bind", "127.0.0.1"]
            argv += ["--dir", str(folder), "--save", "", "--appendonly", "no", "--daemonize", "no"]
            self.redis = self._spawn(argv, "redis.log")

        def wait() -> None:
            assert self.redis is not None
            wait_tcp(self.ports["redis"], self.redis, "redis-server", log)

        def repick() -> None:
            stop_process(self.redis)
            self.ports["redis"] = free_port(socket.SOCK_STREAM)

        serve_on_free_ports(spawn, wait, log, None if self.config.redis_port else repick)

    def _start_nodes(self) -> None:
        for index in range(1, NODES + 1):
            self.nodes.append(Node(f"n{index}", *self._node_ports()))
        # Started together (each takes a few seconds to import), waited for in turn.
        since = {node.node_id: self._spawn_node(node) for node in self.nodes}
        for node in self.nodes:

            def wait(node: Node = node) -> None:
                assert node.proc is not None
                wait_http(f"{node.api}/api/clients", node.proc, f"node {node.node_id}", self._log(node))

            def repick(node: Node = node) -> None:
                stop_process(node.proc)
                node.coap_port, node.coaps_port, node.http_port = self._node_ports()

            serve_on_free_ports(
                partial(self._spawn_node, node), wait, self._log(node), repick, spawned_at=since[node.node_id]
            )

    @staticmethod
    def _node_ports() -> tuple[int, int, int]:
        return free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)

    def _spawn_node(self, node: Node) -> int:
        """Start ``node``'s process; the size its log had before (where this start's lines begin)."""
        c = self.config
        since = log_size(self._log(node))
        argv = [
            *lwm2m_command(),
            "server",
            "--node-id",
            node.node_id,
            "--store",
            self.store_url,
            "--host",
            "127.0.0.1",
            "--coap-port",
            str(node.coap_port),
            "--coaps-port",
            str(node.coaps_port),
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(node.http_port),
            "--data",
            str(self.state / node.node_id),
            # As deploy/lwm2m-server@.service: nginx names each device's own address in a
            # PROXY protocol header, and many devices share an address here.
            "--registration-rate",
            "0",
            "--max-lifetime",
            "86400",
            "--proxy-protocol-from",
            "127.0.0.0/8",
            "--log-level",
            c.log_level,
            *c.node_args,
        ]
        node.proc = self._spawn(argv, f"{node.node_id}.log")
        return since

    def _log(self, node: Node) -> Path:
        return self.logs / f"{node.node_id}.log"

    def render_nginx(self, without: tuple[Node, ...] = ()) -> str:
        """nginx.conf for the nodes, those in ``without`` taken out of the upstreams."""
        text = render_nginx(
            NGINX_TEMPLATE.read_text(),
            folder=self.state / "nginx",
            host=self.config.host,
            ports={5683: self.ports["coap"], 5684: self.ports["coaps"], 8080: self.ports["http"]},
            nodes=self.nodes,
            hash_key=self.config.hash_key,
            module_line=stream_module_line(),
            as_root=os.geteuid() == 0,
        )
        gone = {
            f"server 127.0.0.1:{port};" for n in without for port in (n.coap_port, n.coaps_port, n.http_port)
        }
        return "".join(line for line in text.splitlines(keepends=True) if line.strip() not in gone)

    def _write_nginx(self, without: tuple[Node, ...] = ()) -> Path:
        folder = self.state / "nginx"
        folder.mkdir(exist_ok=True)
        conf = folder / "nginx.conf"
        conf.write_text(self.render_nginx(without))
        test = subprocess.run([NGINX, "-t", "-q", "-p", str(folder), "-c", str(conf)], capture_output=True)
        if test.returncode != 0:
            raise DemoError(f"nginx refused {conf}: {test.stderr.decode(errors='replace').strip()}")
        return conf

    def _start_nginx(self) -> None:
        log = self.logs / "nginx.log"
        c = self.config
        given = {"coap": c.coap_port, "coaps": c.coaps_port, "http": c.http_port}

        def spawn() -> None:
            conf = self._write_nginx()
            argv = [NGINX, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]
            self.nginx = self._spawn(argv, "nginx.log")

        def wait() -> None:
            assert self.nginx is not None
            wait_http(f"http://127.0.0.1:{self.ports['http']}/api/clients", self.nginx, "nginx", log)

        def repick() -> None:
            stop_process(self.nginx)
            for name, port in given.items():
                if not port:
                    kind = socket.SOCK_STREAM if name == "http" else socket.SOCK_DGRAM
                    self.ports[name] = free_port(kind, c.host)

        serve_on_free_ports(spawn, wait, log, None if all(given.values()) else repick)

    def reload_nginx(self, without: tuple[Node, ...]) -> None:
        """Balance over the nodes but those in ``without`` (as an operator does when a node is
        gone): rewrite the configuration and reload; old workers end their UDP sessions within
        nginx's ``worker_shutdown_timeout``, and each device's next datagram opens a session
        with a new worker."""
        conf = self._write_nginx(without)
        subprocess.run(
            [NGINX, "-p", str(conf.parent), "-c", str(conf), "-s", "reload"], check=True, capture_output=True
        )

    def _start_devices(self) -> None:
        c = self.config
        share, extra = divmod(c.devices, SIMULATORS)
        for index in range(SIMULATORS):
            count = share + (1 if index < extra else 0)
            if not count:
                continue
            argv = [
                *lwm2m_command(),
                "simulate",
                "--server",
                self.coap_uri,
                "--count",
                str(count),
                "--prefix",
                f"demo{index + 1}",
                "--lifetime",
                str(c.lifetime),
                "--report-every",
                "3600",
            ]
            if is_loopback(c.host):
                argv += ["--local-host", f"127.0.0.{11 + index}"]
            self.simulators.append(self._spawn(argv, f"devices-{index + 1}.log"))

    def _write_description(self) -> None:
        description = {
            "store": self.store_url,
            "console": self.console,
            "coap": self.coap_uri,
            "coaps": f"coaps://{self.config.host}:{self.ports['coaps']}",
            "ports": self.ports,
            "nodes": [
                {
                    "id": n.node_id,
                    "coap_port": n.coap_port,
                    "coaps_port": n.coaps_port,
                    "http_port": n.http_port,
                    "api": n.api,
                    "pid": n.proc.pid if n.proc else None,
                }
                for n in self.nodes
            ],
            "pids": {
                "redis": self.redis.pid if self.redis else None,
                "nginx": self.nginx.pid if self.nginx else None,
                "devices": [p.pid for p in self.simulators],
            },
        }
        (self.state / "cluster.json").write_text(json.dumps(description, indent=2) + "\n")

    def dead(self) -> list[str]:
        """Names of the processes of the cluster that have exited."""
        named = [(f"node {n.node_id}", n.proc) for n in self.nodes]
        named += [("nginx", self.nginx), ("redis-server", self.redis)]
        return [name for name, proc in named if proc is not None and proc.poll() is not None]

    def stop(self) -> None:
        # The devices first (they de-register), then the nodes while Redis still answers.
        for proc in self.simulators:
            stop_process(proc, signal.SIGINT)
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            stop_process(node.proc)
        stop_process(self.nginx)  # SIGTERM: nginx's fast shutdown
        stop_process(self.redis)


def describe(demo: ClusterDemo) -> str:
    lines = [
        f"lwm2m cluster: {len(demo.nodes)} nodes on {demo.store_url}, behind nginx",
        f"  console  {demo.console}   (REST API {demo.console}api)",
        f"  CoAP     {demo.coap_uri}   CoAP over DTLS coaps://{demo.config.host}:{demo.ports['coaps']}",
    ]
    for node in demo.nodes:
        lines.append(f"  node {node.node_id}  console {node.api}/  CoAP coap://127.0.0.1:{node.coap_port}")
    if demo.config.devices:
        lines.append(f"  {demo.config.devices} simulated devices registering through nginx")
    lines.append(f"  state and logs in {demo.state}")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address nginx listens on [127.0.0.1]")
    parser.add_argument("--coap-port", type=int, default=0, help="CoAP port of nginx [a free port]")
    parser.add_argument("--coaps-port", type=int, default=0, help="CoAP-over-DTLS port [a free port]")
    parser.add_argument("--http-port", type=int, default=0, help="console and REST API port [a free port]")
    parser.add_argument("--redis-port", type=int, default=0, help="Redis port [a free port]")
    parser.add_argument("--devices", type=int, default=30, help="simulated devices (0: none) [30]")
    parser.add_argument("--state", type=Path, help="folder of the state and logs, kept [a temporary one]")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name (or address) the console is reached by besides --host and localhost (repeatable)",
    )
    args = parser.parse_args(argv)
    # The nodes answer only requests for the hosts they know (lwm2m.web.guard): the address
    # nginx listens on is one when it is not a loopback or wildcard one.
    allowed = list(args.allowed_host)
    if not is_loopback(args.host) and args.host not in ("0.0.0.0", "::"):
        allowed.append(args.host)

    temporary = args.state is None
    state = Path(tempfile.mkdtemp(prefix="lwm2m-cluster-")) if temporary else args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    config = DemoConfig(
        state=state,
        host=args.host,
        coap_port=args.coap_port,
        coaps_port=args.coaps_port,
        http_port=args.http_port,
        redis_port=args.redis_port,
        devices=args.devices,
        node_args=tuple(arg for name in allowed for arg in ("--allowed-host", name)),
    )
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    demo = ClusterDemo(config)
    try:
        demo.start()
        print(describe(demo), flush=True)
        reported: set[str] = set()
        while not stopping:
            for name in set(demo.dead()) - reported:
                print(f"{name} has exited: see its log in {demo.logs}", flush=True)
                reported.add(name)
            time.sleep(0.2)
        print("lwm2m cluster: stopping", flush=True)
    except DemoError as exc:
        print(f"lwm2m cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
        if temporary:
            shutil.rmtree(state, ignore_errors=True)
    print("lwm2m cluster: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
