"""A real UDP load balancer for tests: Debian's ``nginx`` with its stream module, on free ports.

:class:`NginxBalancer` writes an ``nginx.conf`` into its own folder (pid file, error log and
temporary files there too, nothing under /etc, /run or /var), starts ``nginx -p folder -c
nginx.conf -g 'daemon off;'`` and stops it. CoAP (and optionally CoAP over DTLS) is balanced
over UDP by ``hash $remote_addr consistent`` (or ``$remote_addr$remote_port``, so that many
simulated devices on one host spread over the nodes); an optional ``http {}`` block balances the
nodes' REST API. :meth:`NginxBalancer.replace_upstreams` rewrites the node lists and reloads
(``nginx -s reload``), as an operator does when a node is gone.

Why the UDP sessions are set up as they are (nginx's ngx_stream_proxy_module documentation):

- ``proxy_responses`` is left unset, i.e. unlimited. It is the number of datagrams nginx expects
  from the node per client datagram and ends the session once they came; set to 1, the session
  would close after the ACK of a Register, and the node's own requests (Read, Write, Observe)
  and the device's notifications (RFC 7641) would have no session to travel on.
- ``proxy_timeout`` is how long a session lives without a datagram either way. A node reaches a
  device only while its session lives, and a device speaks at least once per registration
  lifetime (an Update, LwM2M-TS-Core 1.2 §6.2.2): the timeout must be at least the longest
  lifetime in use. When a session has ended, the device's next datagram opens a new one (a new
  source port at the node), which the server follows as an address change.
- ``proxy_requests`` is left at 0: one session carries any number of client datagrams.
- ``worker_shutdown_timeout`` is short here: after a reload, old workers keep their sessions
  (to the old nodes) until it passes, and a failover test waits for them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.procs import children

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# Debian builds the stream module as a dynamic module (`--with-stream=dynamic`, package
# libnginx-mod-stream) and loads it from /etc/nginx/modules-enabled/; with our own prefix that
# file is not read, so the configuration loads the module itself.
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")

Address = tuple[str, int]
HashKey = Literal["$remote_addr", "$remote_addr$remote_port"]


def stream_module_line() -> str:
    """``load_module …;`` when this nginx has the stream module as a dynamic module, else ''."""
    flags = subprocess.run([NGINX, "-V"], capture_output=True, text=True, check=True).stderr
    if re.search(r"--with-stream(\s|$)", flags):
        return ""  # compiled in
    if not STREAM_MODULE.exists():
        raise RuntimeError(f"nginx's stream module is missing ({STREAM_MODULE}): install libnginx-mod-stream")
    return f"load_module {STREAM_MODULE};\n"


def _udp_port_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tcp_port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class BalancerConfig:
    """What the balancer forwards where.

    ``udp_upstreams``: the nodes' CoAP addresses, balanced on :attr:`NginxBalancer.udp_port`;
    ``coaps_upstreams``: their CoAP-over-DTLS addresses (empty: no such port); ``tcp_upstreams``:
    their REST API (HTTP) addresses, balanced in an ``http {}`` block (empty: none).
    ``hash_key``: what picks the node of a UDP session. ``proxy_timeout``: seconds a UDP session
    lives without traffic (see the module docstring). ``proxy_protocol``: a PROXY protocol
    header in front of each CoAP session's first datagram (``proxy_protocol on;``), naming the
    device's own address.
    """

    udp_upstreams: tuple[Address, ...]
    coaps_upstreams: tuple[Address, ...] = ()
    tcp_upstreams: tuple[Address, ...] = ()
    hash_key: HashKey = "$remote_addr"
    proxy_timeout: float = 600.0
    worker_shutdown_timeout: float = 1.0
    proxy_protocol: bool = False

    def __post_init__(self) -> None:
        if not self.udp_upstreams:
            raise ValueError("a balancer needs at least one UDP upstream")
        if self.hash_key not in ("$remote_addr", "$remote_addr$remote_port"):
            raise ValueError(f"unsupported hash key {self.hash_key!r}")


def _servers(upstreams: Sequence[Address]) -> str:
    return "".join(f"        server {host}:{port};\n" for host, port in upstreams)


class NginxBalancer:
    """One nginx in ``folder`` on free loopback ports in front of the given nodes."""

    def __init__(
        self,
        folder: Path,
        *,
        udp_upstreams: Sequence[Address],
        coaps_upstreams: Sequence[Address] = (),
        tcp_upstreams: Sequence[Address] = (),
        hash_key: HashKey = "$remote_addr",
        proxy_timeout: float = 600.0,
        proxy_protocol: bool = False,
    ) -> None:
        self.folder = folder
        self.config = BalancerConfig(
            tuple(udp_upstreams),
            tuple(coaps_upstreams),
            tuple(tcp_upstreams),
            hash_key,
            proxy_timeout,
            proxy_protocol=proxy_protocol,
        )
        self.udp_port = free_udp_port()
        self.coaps_port = free_udp_port() if coaps_upstreams else None
        self.http_port = free_tcp_port() if tcp_upstreams else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.folder / "nginx.conf"

    def render(self) -> str:
        """The nginx.conf for the current configuration."""
        c = self.config
        folder = self.folder
        # Started by root, nginx runs its workers as `nobody`, who may not use the folder.
        user = "user root;\n" if os.geteuid() == 0 else ""
        text = (
            f"# Written by tests/helpers/nginx.py.\n{stream_module_line()}{user}"
            f"worker_processes 1;\n"
            f"pid {folder}/nginx.pid;\n"
            f"error_log {folder}/error.log notice;\n"
            f"worker_shutdown_timeout {c.worker_shutdown_timeout:g}s;\n"
            f"events {{\n    worker_connections 4096;\n}}\n"
            f"stream {{\n"
            f"{self._udp_block('coap', c.udp_upstreams, self.udp_port)}"
        )
        if self.coaps_port is not None:
            text += self._udp_block("coaps", c.coaps_upstreams, self.coaps_port)
        text += "}\n"
        if c.tcp_upstreams:
            tmp = folder / "tmp"
            text += (
                f"http {{\n"
                f"    access_log off;\n"
                f"    client_body_temp_path {tmp}/body;\n"
                f"    proxy_temp_path {tmp}/proxy;\n"
                f"    fastcgi_temp_path {tmp}/fastcgi;\n"
                f"    uwsgi_temp_path {tmp}/uwsgi;\n"
                f"    scgi_temp_path {tmp}/scgi;\n"
                f"    upstream api {{\n{_servers(c.tcp_upstreams)}        keepalive 8;\n    }}\n"
                f"    server {{\n"
                f"        listen 127.0.0.1:{self.http_port};\n"
                f"        location / {{\n"
                f"            proxy_pass http://api;\n"
                f"            proxy_http_version 1.1;\n"
                f'            proxy_set_header Connection "";\n'
                f"            proxy_set_header Host $host;\n"
                # The event stream (SSE) is long-lived; its answer says `X-Accel-Buffering: no`,
                # which turns nginx's buffering off for it alone.
                f"            proxy_read_timeout 1h;\n"
                f"        }}\n"
                f"    }}\n"
                f"}}\n"
            )
        return text

    def _udp_block(self, name: str, upstreams: Sequence[Address], port: int) -> str:
        c = self.config
        return (
            f"    upstream {name} {{\n        hash {c.hash_key} consistent;\n{_servers(upstreams)}    }}\n"
            f"    server {{\n"
            f"        listen 127.0.0.1:{port} udp;\n"
            f"        proxy_pass {name};\n"
            f"        proxy_timeout {c.proxy_timeout:g}s;\n"
            + ("        proxy_protocol on;\n" if c.proxy_protocol and name == "coap" else "")
            + "    }\n"
        )

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "tmp").mkdir(exist_ok=True)
        self.conf_path.write_text(self.render())

    def check(self) -> None:
        """``nginx -t`` on the written configuration; raises with nginx's message when refused."""
        test = subprocess.run(
            [NGINX, "-t", "-q", "-p", str(self.folder), "-c", str(self.conf_path)],
            capture_output=True,
            text=True,
        )
        if test.returncode != 0:
            raise RuntimeError(f"nginx refused {self.conf_path}: {test.stderr.strip()}")

    def _log_tail(self) -> str:
        log = self.folder / "error.log"
        return log.read_text()[-2000:] if log.exists() else ""

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        udp = [p for p in (self.udp_port, self.coaps_port) if p is not None]
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self._log_tail()}")
            # A UDP port cannot be asked whether it answers without a node behind it: it is
            # ready when it is bound (a bind of ours fails).
            ready = all(_udp_port_bound(p) for p in udp)
            if ready and (self.http_port is None or _tcp_port_answers(self.http_port)):
                return
            time.sleep(0.02)
        raise RuntimeError(f"nginx did not listen within {timeout} s: {self._log_tail()}")

    def start(self) -> NginxBalancer:
        if not Path(NGINX).exists():
            raise RuntimeError(
                "nginx is missing: `make test` installs Debian's nginx and libnginx-mod-stream"
            )
        self._write()
        self.check()
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.folder), "-c", str(self.conf_path), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def workers(self) -> set[int]:
        if self.proc is None:
            return set()
        return children(self.proc.pid)

    def replace_upstreams(
        self,
        *,
        udp_upstreams: Sequence[Address],
        coaps_upstreams: Sequence[Address] | None = None,
        tcp_upstreams: Sequence[Address] | None = None,
        timeout: float = 10.0,
    ) -> None:
        """New node lists, then ``nginx -s reload``; returns once only new workers run.

        Sessions of the old workers (to the old nodes) end with them, so the next datagram of
        every device is hashed over the new list.
        """
        if self.proc is None:
            raise RuntimeError("the balancer is not running")
        c = self.config
        coaps = c.coaps_upstreams if coaps_upstreams is None else tuple(coaps_upstreams)
        tcp = c.tcp_upstreams if tcp_upstreams is None else tuple(tcp_upstreams)
        if bool(coaps) != bool(c.coaps_upstreams) or bool(tcp) != bool(c.tcp_upstreams):
            raise ValueError("a reload changes node lists, not which ports are balanced")
        self.config = BalancerConfig(
            tuple(udp_upstreams),
            coaps,
            tcp,
            c.hash_key,
            c.proxy_timeout,
            c.worker_shutdown_timeout,
            c.proxy_protocol,
        )
        old = self.workers()
        self._write()
        self.check()
        subprocess.run(
            [NGINX, "-p", str(self.folder), "-c", str(self.conf_path), "-s", "reload"],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited on reload with {self.proc.returncode}: {self._log_tail()}")
            now = self.workers()
            if now and not now & old:
                return
            time.sleep(0.02)
        raise RuntimeError(f"nginx did not replace its workers within {timeout} s: {self._log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # fast shutdown: sessions end with the workers
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> NginxBalancer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
