"""A port in use, for every command that listens: one line naming the port and the option that sets
it, exit 2, no traceback. ``lwm2m simulate`` binds only ports the system picks, on an address
``--local-host`` names: one it cannot bind is a line too."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.listen import bind_tcp


@pytest.fixture
def taken() -> Iterator[tuple[int, int]]:
    """A UDP port and a TCP port that another socket holds."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    try:
        yield udp.getsockname()[1], tcp.getsockname()[1]
    finally:
        udp.close()
        tcp.close()


CASES = [
    ("server", "--coap-port", "udp", ["--store", "memory", "--http-port", "0"]),
    ("server", "--http-port", "tcp", ["--store", "memory", "--coap-port", "0"]),
    ("server", "--coaps-port", "udp", ["--store", "memory", "--coap-port", "0", "--http-port", "0"]),
    ("server", "--bootstrap-port", "udp", ["--store", "memory", "--coap-port", "0", "--http-port", "0"]),
    ("bootstrap", "--coap-port", "udp", ["--store", "memory", "--http-port", "0"]),
    ("bootstrap", "--http-port", "tcp", ["--store", "memory", "--coap-port", "0"]),
    ("bootstrap", "--coaps-port", "udp", ["--coap-port", "0", "--http-port", "0"]),
    ("demo", "--coap-port", "udp", ["--http-port", "0"]),
    ("demo", "--http-port", "tcp", ["--coap-port", "0"]),
    ("client", "--port", "udp", ["--server", "coap://127.0.0.1:9", "--endpoint", "dev-1"]),
]


@pytest.mark.parametrize(("command", "option", "kind", "args"), CASES)
def test_a_port_in_use_is_one_line(
    command: str, option: str, kind: str, args: list[str], taken: tuple[int, int], tmp_path: Path
) -> None:
    port = taken[0] if kind == "udp" else taken[1]
    data = [] if command == "client" else ["--data", str(tmp_path / "data")]
    done = subprocess.run(
        [sys.executable, "-m", "lwm2m", command, *args, *data, option, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"error: {option} {port}: " in done.stderr
    assert f":{port} is already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
def test_simulate_names_a_local_host_it_cannot_bind(host: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lwm2m", "simulate", "--server", "coap://127.0.0.1:9", "--local-host", host],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"error: --local-host {host}: cannot bind there: " in done.stderr


async def test_the_server_names_the_address_and_closes_what_it_opened() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        server = Server(ServerConfig(port=0, coaps_port=port))
        with pytest.raises(OSError) as exc:
            await server.start()
        assert exc.value.filename == f"127.0.0.1:{port}"
        # The CoAP port it had bound before is free again.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", server.port))


def test_bind_tcp_names_the_address(taken: tuple[int, int]) -> None:
    with pytest.raises(OSError) as exc:
        bind_tcp("127.0.0.1", taken[1])
    assert exc.value.filename == f"127.0.0.1:{taken[1]}"
    sock = bind_tcp("127.0.0.1", 0)
    sock.close()
