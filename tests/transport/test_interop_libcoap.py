"""Interop with libcoap 4.3 (``coap-client-notls``) against our server.

coap-client exits 0 even when a request failed, so every test reads its output.
A missing binary fails these tests through the ``coap_client_bin`` fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.libcoap import ProcessResult, run_process

from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint


@pytest.fixture
async def our_server(resources: Any) -> AsyncIterator[CoapUdpEndpoint]:
    async with open_udp_endpoint("127.0.0.1", 0, handler=resources) as ep:
        resources.attach(ep)
        yield ep


async def coap_client(binary: str, *args: str, timeout: float = 20, ok: bool = True) -> ProcessResult:
    """Run coap-client; with ``ok``, fail on any error it reports.

    It prints the payload to stdout followed by one newline, and an error
    response code (``4.04``) or a failure to stderr.
    """
    result = await run_process(binary, *args, timeout=timeout)
    assert result.returncode == 0, result.stderr
    if ok:
        assert result.stderr.strip() == "", result.stderr
    return result


async def test_libcoap_get(coap_client_bin: str, our_server: CoapUdpEndpoint) -> None:
    result = await coap_client(coap_client_bin, "-m", "get", "-B", "5", our_server.uri("/small"))
    assert result.stdout == "hello\n"
    result = await coap_client(coap_client_bin, "-m", "get", "-B", "5", our_server.uri("/nothing"), ok=False)
    assert result.stderr.strip() == "4.04"


async def test_libcoap_put(coap_client_bin: str, our_server: CoapUdpEndpoint, resources: Any) -> None:
    args = ["-m", "put", "-t", "text/plain", "-e", "from libcoap", "-B", "5", our_server.uri("/new")]
    await coap_client(coap_client_bin, *args)
    assert resources.values["/new"] == b"from libcoap"


async def test_libcoap_put_block1(
    coap_client_bin: str, our_server: CoapUdpEndpoint, resources: Any, tmp_path: Path
) -> None:
    body = b"".join(b"block1 line %04d\n" % i for i in range(200))  # 3.4 KiB
    source = tmp_path / "body.txt"
    source.write_bytes(body)
    for size in ("64", "1024"):
        args = ["-m", "put", "-b", size, "-f", str(source), "-B", "5", our_server.uri(f"/up{size}")]
        await coap_client(coap_client_bin, *args)
        assert resources.values[f"/up{size}"] == body
    # Block1 was reassembled by the endpoint: one request per PUT reached the handler.
    puts = [m for m in resources.requests if m.uri_path_str.startswith("/up")]
    assert len(puts) == 2


async def test_libcoap_get_block2(coap_client_bin: str, our_server: CoapUdpEndpoint, resources: Any) -> None:
    result = await coap_client(coap_client_bin, "-m", "get", "-B", "5", our_server.uri("/text"))
    assert result.stdout.encode() == resources.values["/text"] + b"\n"
    # Asking for small blocks (early negotiation, RFC 7959 §2.4).
    result = await coap_client(coap_client_bin, "-m", "get", "-b", "128", "-B", "5", our_server.uri("/text"))
    assert result.stdout.encode() == resources.values["/text"] + b"\n"


async def test_libcoap_observe(coap_client_bin: str, our_server: CoapUdpEndpoint, resources: Any) -> None:
    proc = asyncio.create_task(
        run_process(
            coap_client_bin, "-m", "get", "-s", "3", "-B", "4", our_server.uri("/counter"), timeout=20
        )
    )
    for _ in range(200):  # until the registration arrived
        await asyncio.sleep(0.01)
        if our_server.endpoint.observations():
            break
    assert our_server.endpoint.observations(), "libcoap did not register an observation"
    for i in range(1, 4):
        await asyncio.sleep(0.3)
        resources.set("/counter", b"<%d>" % i)
    result = await proc
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    # The initial state, then each change, in order.
    out = result.stdout
    positions = [out.find(s) for s in ("0", "<1>", "<2>", "<3>")]
    assert all(p >= 0 for p in positions), out
    assert positions == sorted(positions), out
