"""The raw socket machinery: reader with a reused buffer, sender with an EAGAIN backlog, loop choice."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lwm2m.transport.address import normalize
from lwm2m.transport.eventloop import is_uvloop, loop_factory, new_event_loop, run, uvloop_available
from lwm2m.transport.reader import DatagramReader, DatagramSender, bind_udp


@pytest.mark.both_loops
async def test_reader_drains_all_pending_datagrams_in_one_wakeup() -> None:
    loop = asyncio.get_running_loop()
    sock = bind_udp("127.0.0.1", 0)
    got: list[tuple[bytes, tuple]] = []
    batches: list[int] = []
    done = asyncio.Event()

    def on_batch(now: float) -> None:
        batches.append(len(got))
        if len(got) == 50:
            done.set()

    reader = DatagramReader(loop, sock, lambda d, a, now: got.append((d, a)), on_batch)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        for i in range(50):  # all queued in the kernel before the reader starts
            peer.sendto(b"x%d" % i + bytes(i * 100), sock.getsockname())
        reader.start()
        await asyncio.wait_for(done.wait(), 5)
        assert [d[:3].rstrip(b"\0") for d, _ in got[:3]] == [b"x0", b"x1", b"x2"]
        assert all(len(d) == len(b"x%d" % i) + i * 100 for i, (d, _) in enumerate(got))
        assert all(type(d) is bytes for d, _ in got)  # a copy, not a view of the reused buffer
        assert {a for _, a in got} == {peer.getsockname()}
        assert batches == [50]
    reader.close()
    sock.close()


async def test_reader_batch_is_bounded() -> None:
    loop = asyncio.get_running_loop()
    sock = bind_udp("127.0.0.1", 0)
    batches: list[int] = []
    count = 0

    def on_datagram(data: bytes, addr: tuple, now: float) -> None:
        nonlocal count
        count += 1

    reader = DatagramReader(loop, sock, on_datagram, lambda now: batches.append(count), max_batch=4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        for _ in range(10):
            peer.sendto(b"x", sock.getsockname())
        reader.start()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if count == 10:
                break
    assert batches == [4, 8, 10]
    reader.close()
    sock.close()


async def test_reader_survives_a_failing_callback() -> None:
    loop = asyncio.get_running_loop()
    sock = bind_udp("127.0.0.1", 0)
    seen: list[bytes] = []

    def on_datagram(data: bytes, addr: tuple, now: float) -> None:
        seen.append(data)
        if data == b"bad":
            raise RuntimeError("boom")

    reader = DatagramReader(loop, sock, on_datagram, lambda now: None)
    reader.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"bad", sock.getsockname())
        peer.sendto(b"good", sock.getsockname())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(seen) == 2:
                break
    assert seen == [b"bad", b"good"]
    reader.close()
    sock.close()


class _FullSocket:
    """A socket whose send buffer is full until ``drain()``."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.full = True
        self.sent: list[bytes] = []

    def fileno(self) -> int:
        return self.real.fileno()

    def sendto(self, data: bytes, addr: tuple) -> int:
        if self.full:
            raise BlockingIOError
        self.sent.append(data)
        return len(data)


async def test_sender_queues_on_eagain_and_keeps_order() -> None:
    loop = asyncio.get_running_loop()
    real = bind_udp("127.0.0.1", 0)
    fake = _FullSocket(real)
    sender = DatagramSender(loop, fake)  # type: ignore[arg-type]
    for i in range(5):
        sender.send(b"%d" % i, ("127.0.0.1", 9))
    assert sender.pending == 5 and fake.sent == []
    fake.full = False
    for _ in range(100):
        await asyncio.sleep(0.005)  # the real socket is writable: the loop calls back
        if not sender.pending:
            break
    assert fake.sent == [b"0", b"1", b"2", b"3", b"4"]
    sender.send(b"5", ("127.0.0.1", 9))  # straight through again
    assert fake.sent[-1] == b"5"
    sender.close()
    real.close()


class _FillingSocket(_FullSocket):
    """Takes ``room`` datagrams, then is full."""

    def __init__(self, real: socket.socket, room: int) -> None:
        super().__init__(real)
        self.full = False
        self.room = room

    def sendto(self, data: bytes, addr: tuple) -> int:
        if self.room == 0:
            self.full = True
        self.room -= 1
        return super().sendto(data, addr)


async def test_send_all_queues_the_rest_on_eagain_and_keeps_order() -> None:
    loop = asyncio.get_running_loop()
    real = bind_udp("127.0.0.1", 0)
    fake = _FillingSocket(real, room=2)
    sender = DatagramSender(loop, fake)  # type: ignore[arg-type]
    sender.send_all([(b"%d" % i, ("127.0.0.1", 9)) for i in range(5)])
    assert fake.sent == [b"0", b"1"] and sender.pending == 3
    sender.send_all([(b"5", ("127.0.0.1", 9))])  # behind the backlog, not before it
    assert sender.pending == 4
    fake.full = False
    for _ in range(100):
        await asyncio.sleep(0.005)
        if not sender.pending:
            break
    assert fake.sent == [b"0", b"1", b"2", b"3", b"4", b"5"]
    sender.close()
    real.close()


def test_bind_ipv6_is_v6_only() -> None:
    sock = bind_udp("::1", 0)
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert sock.getsockname()[0] == "::1"
    finally:
        sock.close()


def test_normalize_matches_what_recvfrom_reports() -> None:
    assert normalize(("127.0.0.1", 5)) == ("127.0.0.1", 5)
    assert normalize(("0:0::1", 5)) == ("::1", 5, 0, 0)
    assert normalize(("[::1]", 5)) == ("::1", 5, 0, 0)
    assert normalize(("::1", 5, 0, 0)) == ("::1", 5, 0, 0)
    assert normalize(("localhost", 5)) is None


def test_loop_choice() -> None:
    async def which() -> bool:
        return is_uvloop(asyncio.get_running_loop())

    assert run(which(), use_uvloop=False) is False
    loop = new_event_loop(use_uvloop=False)
    assert not is_uvloop(loop)
    loop.close()
    if uvloop_available():
        assert run(which(), use_uvloop=True) is True
        assert run(which()) is True  # the default when installed
        assert loop_factory()().__class__.__module__.startswith("uvloop")


async def test_sender_queues_again_after_a_drained_backlog_and_close_drops_it() -> None:
    loop = asyncio.get_running_loop()
    real = bind_udp("127.0.0.1", 0)
    fake = _FullSocket(real)
    sender = DatagramSender(loop, fake)  # type: ignore[arg-type]
    assert sender.pending == 0
    for burst in (b"ab", b"cd"):  # the second backlog is made anew after the first one drained
        fake.full = True
        for byte in burst:
            sender.send(bytes([byte]), ("127.0.0.1", 9))
        assert sender.pending == 2
        fake.full = False
        for _ in range(100):
            await asyncio.sleep(0.005)
            if not sender.pending:
                break
        assert sender.pending == 0
    assert fake.sent == [b"a", b"b", b"c", b"d"]
    fake.full = True
    sender.send(b"e", ("127.0.0.1", 9))
    assert sender.pending == 1
    sender.close()  # what was queued is dropped
    assert sender.pending == 0
    fake.full = False
    sender.send(b"f", ("127.0.0.1", 9))  # straight through
    await asyncio.sleep(0.02)
    assert fake.sent == [b"a", b"b", b"c", b"d", b"f"]
    real.close()
