"""``lwm2m demo`` in a real process on a free port, queried over CoAP, stopped by SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.conftest import free_udp_port

from lwm2m.coap.linkformat import parse_links
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.transport.udp import open_udp_endpoint


def _start(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwm2m", "demo", "--coap-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line, line + proc.stderr.read()
    return proc


async def test_demo_serves_the_catalogue_and_decoder_then_stops_cleanly() -> None:
    port = free_udp_port()
    proc = _start(port)
    peer = ("127.0.0.1", port)
    try:
        async with open_udp_endpoint("127.0.0.1", 0) as ep:
            core = await ep.request(Message.build(Type.CON, Code.GET, uri_path="/.well-known/core"), peer)
            targets = {link.target for link in parse_links(core.payload)}
            assert {"/models", "/decode", "/models/3303", "/models/3416"} <= targets

            temp = await ep.request(Message.build(Type.CON, Code.GET, uri_path="/models/3303"), peer)
            definition = json.loads(temp.payload)
            assert definition["name"] == "Temperature"
            assert any(r["id"] == 5700 and r["type"] == "Float" for r in definition["resources"])

            decode = Message.build(
                Type.CON,
                Code.POST,
                uri_path="/decode",
                uri_query=["path=/3303/0/5700"],
                content_format=0,
                payload=b"21.5",
            )
            answer = await ep.request(decode, peer)
            assert answer.code == Code.CONTENT
            assert json.loads(answer.payload) == [{"path": "/3303/0/5700", "value": 21.5}]

            bad = await ep.request(decode.replace(payload=b"warm"), peer)
            assert bad.code == Code.BAD_REQUEST and b"Float" in bad.payload
            missing = await ep.request(Message.build(Type.CON, Code.GET, uri_path="/models/99999"), peer)
            assert missing.code == Code.NOT_FOUND
    finally:
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_demo_refuses_a_port_in_use() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "lwm2m", "demo", "--coap-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
