"""The engine backend's direct path for application data (``_Connection.feed_read``, RFC 6347
§4.1.2.6, RFC 9146 §6): what the session layer gets from it matches ``feed`` then ``read``."""

from __future__ import annotations

from typing import Any

import pytest

from lwm2m.errors import DtlsError, SessionClosed
from lwm2m.transport.dtls import DtlsClientConfig, DtlsServerConfig, PskCredentials
from lwm2m.transport.dtls.engine_backend import EngineBackend

KEY = bytes(range(16))
ADDRESS = b"127.0.0.1|5683"


def _pair() -> tuple[Any, Any]:
    """An established (client, server) pair of engine connections, the cookie exchange included."""
    backend = EngineBackend()
    server = backend.server(DtlsServerConfig(psk_lookup={"node": KEY}.get))
    client = backend.client(DtlsClientConfig(psk=PskCredentials("node", KEY))).connect(0.0)
    client.handshake(0.0)
    conn = None
    for _ in range(10):
        out = client.outgoing()
        if conn is None:
            conn, reply = server.accept(b"".join(out), ADDRESS, 0.0)
            back = [reply] if conn is None else conn.outgoing()
        else:
            for datagram in out:
                conn.feed(datagram, 0.0)
            conn.handshake(0.0)
            back = conn.outgoing()
        for datagram in back:
            client.feed(datagram, 0.0)
        if client.handshake(0.0) and conn is not None and conn.handshake(0.0):
            break
    for datagram in client.outgoing():
        conn.feed(datagram, 0.0)  # type: ignore[union-attr]
    assert client.established and conn is not None and conn.handshake(0.0)
    return client, conn


def test_one_record_comes_back_as_its_plaintext_and_a_replay_as_nothing() -> None:
    client, server = _pair()
    record = client.write(b"POST /rd")
    assert server.feed_read(record, 1.0) == b"POST /rd"
    assert server.advanced
    assert server.read() is None
    assert server.feed_read(record, 2.0) is None and not server.advanced
    assert server.read() is None
    assert client.feed_read(server.write(b"2.01"), 1.0) == b"2.01"


def test_plaintext_already_waiting_keeps_its_place() -> None:
    client, server = _pair()
    first, second = client.write(b"first"), client.write(b"second")
    server.feed(first, 1.0)  # not read yet
    assert server.feed_read(second, 1.0) is None
    assert (server.read(), server.read(), server.read()) == (b"first", b"second", None)


def test_a_close_notify_is_read_as_the_end_of_the_session() -> None:
    client, server = _pair()
    alert = client.close()
    assert server.feed_read(alert, 1.0) is None
    with pytest.raises(SessionClosed):
        server.read()
    assert server.outgoing()  # its own close_notify in answer


def test_a_datagram_that_does_not_authenticate_is_dropped() -> None:
    client, server = _pair()
    record = bytearray(client.write(b"GET /3/0"))
    record[-1] ^= 0x01
    assert server.feed_read(bytes(record), 1.0) is None and not server.advanced
    assert server.read() is None and server.outgoing() == []


def test_the_record_path_opens_and_seals_without_the_adapter() -> None:
    """``records``: the layer's way for an established session's records (the engine connection
    itself): plaintext for a new record, an error for one dropped, None and nothing taken for
    any other datagram, which ``feed_read`` then takes."""
    client, server = _pair()
    # The server gave a CID: its peer's records carry it (RFC 9146), and open on the path too.
    cid_record = client.write(b"POST /rd")
    assert server.records.open_application_data(cid_record) == b"POST /rd"
    assert server.feed_read(cid_record, 1.0) is None  # a replay, whichever way it comes
    assert server.feed_read(client.write(b"POST /rd 2"), 1.0) == b"POST /rd 2"
    path = client.records  # the client's own CID is empty: records to it carry none
    record = server.write(b"2.01")
    assert path.open_application_data(record) == b"2.01"
    with pytest.raises(DtlsError):  # a replay
        path.open_application_data(record)
    spoiled = bytearray(server.write(b"GET /3/0"))
    spoiled[-1] ^= 0x01
    with pytest.raises(DtlsError):
        path.open_application_data(bytes(spoiled))
    assert server.feed_read(path.protect_application_data(b"2.05"), 1.0) == b"2.05"
    alert = server.close()
    assert path.open_application_data(alert) is None
    assert client.feed_read(alert, 1.0) is None
    with pytest.raises(SessionClosed):
        client.read()
