"""Our DTLS engine's client and server in memory, deterministic: randoms from a counter, time a
number the test advances, datagrams carried by :func:`exchange` through an optional filter that
may drop, duplicate or reorder them."""

from __future__ import annotations

from collections.abc import Callable

from lwm2m.tls.connection import ConnectionConfig, DtlsConnection, DtlsEvent, DtlsRole
from lwm2m.tls.cookies import CookieChecker
from lwm2m.tls.messages import split_handshake_fragments
from lwm2m.tls.record import HANDSHAKE, parse_datagram
from lwm2m.tls.state import ResumableSession

PSK = bytes(range(1, 17))
IDENTITY = b"urn:imei:490154203237518"
ADDRESS = b"192.0.2.7:5684"

# (side, datagrams that side sent) -> the datagrams that arrive.
Filter = Callable[[str, list[bytes]], list[bytes]]


def counter_random(seed: int) -> Callable[[int], bytes]:
    """Deterministic "random" bytes: the tests replay exactly."""
    counter = [seed]

    def take(n: int) -> bytes:
        counter[0] += 1
        return bytes((counter[0] * 7 + i) & 0xFF for i in range(n))

    return take


def drop_flight(lost: int) -> Filter:
    """A filter that drops the ``lost``-th (from 0) non-empty batch of datagrams, once: one
    flight lost, for the retransmission timer to recover."""
    seen = [0]

    def keep(name: str, datagrams: list[bytes]) -> list[bytes]:
        if not datagrams:
            return datagrams
        seen[0] += 1
        return [] if seen[0] - 1 == lost else datagrams

    return keep


def server_config(psks: dict[bytes, bytes] | None = None, **options: object) -> ConnectionConfig:
    table = {IDENTITY: PSK} if psks is None else psks
    settings: dict[str, object] = {
        "psk_lookup": table.get,
        "cookie_checker": CookieChecker(b"a cookie secret of 32 bytes ....", previous=None),
        "random": counter_random(100),
    }
    settings.update(options)
    return ConnectionConfig(**settings)  # type: ignore[arg-type]


def client_config(psk: bytes = PSK, identity: bytes = IDENTITY, **options: object) -> ConnectionConfig:
    settings: dict[str, object] = {"psk_identity": identity, "psk": psk, "random": counter_random(1)}
    settings.update(options)
    return ConnectionConfig(**settings)  # type: ignore[arg-type]


def pair(
    server: ConnectionConfig | None = None, client: ConnectionConfig | None = None
) -> tuple[DtlsConnection, DtlsConnection]:
    """A client and a server (at :data:`ADDRESS`) that have exchanged nothing yet."""
    return (
        DtlsConnection(DtlsRole.CLIENT, client or client_config(), 0.0),
        DtlsConnection(DtlsRole.SERVER, server or server_config(), 0.0, address=ADDRESS),
    )


def events(connection: DtlsConnection) -> list[DtlsEvent]:
    out = []
    while (event := connection.next_event()) is not None:
        out.append(event)
    return out


def exchange(client: DtlsConnection, server: DtlsConnection, now: float, keep: Filter | None = None) -> None:
    """Carry datagrams both ways until neither side has anything more to send."""
    for _ in range(50):
        moved = False
        for name, source, sink in (("client", client, server), ("server", server, client)):
            datagrams = source.datagrams_to_send(now)
            if keep is not None:
                datagrams = keep(name, datagrams)
            for datagram in datagrams:
                moved = True
                sink.receive_datagram(datagram, now)
        if not moved:
            return


def run(
    client: DtlsConnection,
    server: DtlsConnection,
    keep: Filter | None = None,
    *,
    start: float = 0.0,
    limit: float = 300.0,
) -> float:
    """Exchange, then fire the earliest timer, until both are established or time runs out;
    the time it ended at."""
    now = start
    while True:
        exchange(client, server, now, keep)
        if client.established and server.established:
            return now
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not timers or min(timers) > start + limit:
            return now
        now = min(timers)
        client.handle_timer(now)
        server.handle_timer(now)


def handshake_types(datagram: bytes, cid_length: int = 0) -> list[int]:
    """The types of the unprotected (epoch 0) handshake messages of a datagram (``cid_length``:
    that of the receiver's CID, for the records after ChangeCipherSpec)."""
    types = []
    for record in parse_datagram(datagram, cid_length):
        if record.content_type == HANDSHAKE and record.epoch == 0:
            types += [header.msg_type for header, _ in split_handshake_fragments(record.fragment)]
    return types


def connect_recording(
    server: ConnectionConfig,
    client: ConnectionConfig,
    session: ResumableSession | None = None,
    now: float = 0.0,
) -> tuple[DtlsConnection, DtlsConnection, list[list[int]]]:
    """A client (offering ``session``) and a server run to the end of their handshake from
    ``now``; also the unprotected handshake types each datagram carried, in order. Read once the
    CIDs are known: the records after ChangeCipherSpec carry the receiver's."""
    client_connection = DtlsConnection(DtlsRole.CLIENT, client, now, session=session)
    server_connection = DtlsConnection(DtlsRole.SERVER, server, now, address=ADDRESS)
    sent: list[tuple[str, bytes]] = []

    def record(name: str, datagrams: list[bytes]) -> list[bytes]:
        sent.extend((name, datagram) for datagram in datagrams)
        return datagrams

    run(client_connection, server_connection, record, start=now)
    receiver = {"client": server_connection, "server": client_connection}
    seen = [handshake_types(d, len(receiver[name].own_cid)) for name, d in sent]
    return client_connection, server_connection, seen
