"""The one outgoing HTTP client against a small HTTP/1.1 server on loopback: keep-alive, bodies
(length, chunked, to the close), redirects, limits, JSON, errors, and a connection the server
closed while it was idle."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from lwm2m.errors import (
    HttpBodyTooLarge,
    HttpError,
    HttpNameError,
    HttpProtocolError,
    HttpRedirectError,
    HttpStatusError,
    TransportError,
)
from lwm2m.transport.http import HttpClient, http_get, url_path

Answer = Callable[["Seen"], bytes]


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Loopback:
    base: str
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    close_after: bool = False  # close each connection after one answer


def _ok(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


@contextlib.asynccontextmanager
async def loopback(answer: Answer) -> AsyncIterator[Loopback]:
    """An HTTP/1.1 server that reads each request (with its Content-Length body) and writes what
    ``answer`` gives, keeping the connection unless told (or the answer says) otherwise."""
    state = Loopback("")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while line := await reader.readline():
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, target, headers, body)
                state.requests.append(seen)
                out = answer(seen)
                writer.write(out)
                await writer.drain()
                if state.close_after or b"Connection: close" in out or headers.get("connection") == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


async def test_json_calls_share_one_kept_alive_connection() -> None:
    def echo(seen: Seen) -> bytes:
        return _ok(
            json.dumps({"method": seen.method, "target": seen.target, "got": seen.body.decode()}).encode()
        )

    async with loopback(echo) as server:
        async with HttpClient(server.base + "/prefix/", headers={"Authorization": "Bearer t"}) as client:
            put = await client.request("PUT", url_path("api", "dev/1 x"), json={"a": 1})
            get = await client.request("GET", "/api/list?x=1")
        assert put.ok and put.json() == {
            "method": "PUT",
            "target": "/prefix/api/dev%2F1%20x",
            "got": '{"a": 1}',
        }
        assert get.json()["target"] == "/prefix/api/list?x=1" and get.json()["got"] == ""
        assert server.connections == 1
        first = server.requests[0].headers
        assert first["authorization"] == "Bearer t" and first["content-type"] == "application/json"
        assert first["host"] == server.base.removeprefix("http://")
        assert "content-type" not in server.requests[1].headers


async def test_an_error_status_is_an_answer_with_its_body() -> None:
    not_found = _ok(b'{"error": "no such device"}', "404 Not Found")
    async with loopback(lambda seen: not_found) as server, HttpClient(server.base) as client:
        answer = await client.request("DELETE", "/api/x")
        assert (answer.status, answer.reason, answer.ok) == (404, "Not Found", False)
        assert answer.json() == {"error": "no such device"}
        with pytest.raises(HttpStatusError, match="answered HTTP 404") as raised:
            await client.get("/file")
        assert raised.value.status == 404


async def test_concurrent_requests_open_connections_and_keep_them() -> None:
    async with loopback(lambda seen: _ok(seen.target.encode())) as server:
        async with HttpClient(server.base) as client:
            for _ in range(2):
                answers = await asyncio.gather(*(client.request("GET", f"/{i}") for i in range(5)))
                assert [a.body for a in answers] == [f"/{i}".encode() for i in range(5)]
        assert server.connections == 5  # the second round reuses the first round's


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async with loopback(lambda seen: _ok(b"x")) as server:
        server.close_after = True
        async with HttpClient(server.base) as client:
            for _ in range(3):
                assert (await client.request("PUT", "/a", body=b"1")).body == b"x"
                await asyncio.sleep(0.01)  # the server's close arrives
        assert server.connections == 3 and len(server.requests) == 3  # each sent once


@pytest.mark.parametrize("kind", ["length", "chunked", "close"])
async def test_get_reads_each_kind_of_body(kind: str) -> None:
    data = bytes(range(256)) * 40

    def answer(seen: Seen) -> bytes:
        if kind == "chunked":
            chunks = b"".join(
                b"%x;ext=1\r\n" % len(data[i : i + 700]) + data[i : i + 700] + b"\r\n"
                for i in range(0, len(data), 700)
            )
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-T: 1\r\n\r\n"
        if kind == "close":
            return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + data
        return _ok(data)

    async with loopback(answer) as server:
        assert await http_get(server.base + "/fw.bin", max_size=len(data)) == data
        async with HttpClient(server.base) as client:
            assert await client.get("/a") == data and await client.get("/b") == data
        with pytest.raises(HttpBodyTooLarge):
            await http_get(server.base + "/fw.bin", max_size=len(data) - 1)


async def test_an_error_body_over_the_limit_is_cut_not_refused() -> None:
    async with loopback(lambda seen: _ok(b"e" * 100, "500 Oops")) as server:
        client = HttpClient(server.base, max_size=10)
        answer = await client.request("GET", "/")
        await client.close()
        assert (answer.status, answer.body) == (500, b"e" * 10)


async def test_redirects_are_followed_when_asked() -> None:
    def answer(seen: Seen) -> bytes:
        if seen.target == "/loop":
            return _ok(b"", "302 Found", "Location: /loop\r\n")
        if seen.target == "/away":
            return _ok(b"", "301 Moved", "Location: ftp://elsewhere/x\r\n")
        if seen.target.startswith("/moved"):
            return _ok(b"", "307 Temporary Redirect", "Location: /plain\r\n")
        return _ok(b"here")

    async with loopback(answer) as server, HttpClient(server.base) as client:
        assert await client.get("/moved") == b"here"
        assert (await client.request("GET", "/moved")).status == 307  # not unless asked
        with pytest.raises(HttpRedirectError, match="too many") as loop:
            await client.get("/loop")
        assert not loop.value.unsupported
        with pytest.raises(HttpRedirectError, match="ftp://") as away:
            await client.get("/away")
        assert away.value.unsupported


async def test_failures_are_transport_errors() -> None:
    async with loopback(lambda seen: b"SSH-2.0-nope\r\n\r\n") as server:
        with pytest.raises(HttpProtocolError, match="not an HTTP response"):
            await http_get(server.base + "/", max_size=10)
        closed = server.base
    with pytest.raises(HttpError, match=r"127\.0\.0\.1") as refused:
        await http_get(closed + "/", max_size=10)
    assert isinstance(refused.value, TransportError) and isinstance(refused.value, ConnectionError)
    with pytest.raises(HttpNameError):
        await http_get("http://no-such-host.invalid/", max_size=10)
    async with HttpClient(closed) as client:
        with pytest.raises(HttpError, match="not a valid request target"):
            await client.request("GET", "/a b")
        with pytest.raises(HttpError, match="line breaks"):
            await client.request("GET", "/", headers={"X": "1\r\nY: 2"})
    for bad in ("ftp://host/", "http://", "http://host:99999/"):
        with pytest.raises(ValueError, match="URL"):
            HttpClient(bad)


async def test_a_silent_server_times_out() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with HttpClient(base, timeout=0.2) as client:
            with pytest.raises(HttpError, match=r"no answer in 0.2 s"):
                await client.request("GET", "/")
    finally:
        server.close()
        await server.wait_closed()


def test_url_path_quotes_each_segment_whole() -> None:
    assert url_path("api", "bootstrap", "a/b?c d") == "/api/bootstrap/a%2Fb%3Fc%20d"
    assert url_path() == ""
