"""bench/cluster_million.py: its Register datagrams are what LwM2M-TS-Transport 1.2 §6.4.1
describes (read back with the package's own CoAP decoder), and a small run registers every
endpoint in the cluster's Redis and stops every process it started. Nothing here is timed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.bench.test_cluster import still_running

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cluster_million.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cluster_million", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_register_datagram_is_a_confirmable_post_to_rd() -> None:
    datagram = bench().register(0x1234, b"\x00\x00\x00\x07", "mil-0000007", 86_400)
    message = Message.decode(datagram)
    assert (message.type, message.code, message.mid, message.token) == (
        Type.CON,
        Code.POST,
        0x1234,
        b"\x00\x00\x00\x07",
    )
    assert message.uri_path == ("rd",)
    assert message.uri_query == ("ep=mil-0000007", "lt=86400", "lwm2m=1.1", "b=U")
    assert message.content_format == 40  # application/link-format
    assert message.payload == b"</1/0>,</3/0>,</3303/0>"


def test_a_small_run_registers_every_endpoint_and_stops_what_it_started(tmp_path: Path) -> None:
    argv = [sys.executable, str(SCRIPT), "--registrations", "300", "--generators", "2"]
    argv += ["--sockets", "8", "--window", "16", "--progress", "1", "--state", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "registered 300/300 in" in out, out
    assert "answers: 2.01 300; lost 0" in out, out
    assert "bytes per registration over 300" in out, out
    assert "keys of one endpoint (registration, owner, id)" in out, out
    assert still_running(tmp_path) == []
