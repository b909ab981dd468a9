"""``lwm2m server --store``: sqlite, memory or a store URL; a bad value or URL gets a line naming it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from tests.helpers.ports import free_tcp_port

from lwm2m.cli import main
from lwm2m.cli.server_cmd import store_url


def lwm2m(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_a_value_that_is_no_kind_and_no_url_is_named() -> None:
    result = lwm2m("server", "--store", "postgres")
    assert result.exit_code == 2
    assert "'--store': 'postgres': give sqlite, memory or a store URL" in result.output


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("ftp://host/x", "unknown scheme 'ftp'"),
        ("redis://", "no host"),
        ("redis://127.0.0.1:6379/x", "the database 'x' is not a number"),
    ],
)
def test_a_bad_url_is_named(url: str, named: str) -> None:
    result = lwm2m("server", "--store", url, "--coap-port", "0", "--http-port", "0")
    assert result.exit_code != 0
    assert "--store:" in result.output
    assert named in result.output


def test_kinds_and_urls(tmp_path: Path) -> None:
    assert store_url(str(tmp_path), "memory") == "memory://"
    assert store_url(str(tmp_path), None) == f"sqlite://{(tmp_path / 'lwm2m.db').absolute()}"
    assert store_url(str(tmp_path), "sqlite") == store_url(str(tmp_path), None)
    assert store_url(str(tmp_path), "redis://127.0.0.1:6379/2") == "redis://127.0.0.1:6379/2"


def test_a_node_id_needs_a_shared_store() -> None:
    result = lwm2m("server", "--store", "memory", "--node-id", "n1")
    assert result.exit_code != 0
    assert "--node-id n1: a node of a cluster needs a shared store" in result.output


def test_a_bad_node_id_is_named() -> None:
    result = lwm2m("server", "--store", "redis://127.0.0.1:1/0", "--node-id", "no spaces")
    assert result.exit_code == 2
    assert "'--node-id'" in result.output and "no spaces" in result.output


def test_a_node_on_redis_joins_the_cluster_and_serves(redis_url: str) -> None:
    http_port = free_tcp_port()
    command = [sys.executable, "-m", "lwm2m", "server", "--store", redis_url, "--node-id", "n1"]
    command += ["--coap-port", "0", "--http-port", str(http_port)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(2)]
            assert "REST API on" in lines[0], lines
            assert lines[1].strip().startswith("cluster node n1 (byte 1) on redis://127.0.0.1:"), lines
            answer = httpx.get(f"http://127.0.0.1:{http_port}/api/clients", timeout=5)
            assert answer.status_code == 200 and answer.json()["clients"] == []
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)


def test_a_single_node_needs_no_cluster_extra() -> None:
    """`make demo` installs the web and speed extras only: without redis-py (the cluster extra)
    and cryptography (the dtls extra) the server, its API, the client SDK and the demo import and
    run their CLI, and --node-id says what is missing."""
    script = (
        "import sys; sys.modules['redis'] = None; sys.modules['cryptography'] = None\n"
        "import lwm2m.web.app, lwm2m.cli.demo_cmd, lwm2m.client, lwm2m.simulator\n"
        "from click.testing import CliRunner\n"
        "from lwm2m.cli import main\n"
        "assert CliRunner().invoke(main, ['server', '--help']).exit_code == 0\n"
        "assert CliRunner().invoke(main, ['demo', '--help']).exit_code == 0\n"
        "args = ['server', '--store', 'redis://127.0.0.1:1/0', '--node-id', 'n1']\n"
        "result = CliRunner().invoke(main, args)\n"
        "print(result.exit_code, result.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 ") and "pip install 'lwm2m[cluster]'" in done.stdout


def test_a_bad_proxy_protocol_network_is_named() -> None:
    result = lwm2m("server", "--store", "memory", "--proxy-protocol-from", "10.0.0.0/33")
    assert result.exit_code != 0
    assert "--proxy-protocol-from: PROXY protocol: trusted network '10.0.0.0/33'" in result.output
