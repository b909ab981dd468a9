"""Parked sessions as bytes (transport/dtls/saved.py) and a server layer's restart: the sessions
it exports at a clean stop are taken up by a new layer, and its clients go on without a
handshake (RFC 6347 §4.1 state carried over; RFC 9146 CIDs with it)."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.helpers.pki import (
    KEY,
    SERVER,
    Wire,
    ask,
    certificate_configs,
    client_layer,
    get,
    layer_of,
    server_layer,
)

from lwm2m.errors import SessionStateError
from lwm2m.transport.dtls import DtlsLayer, PeerIdentity, SessionLimits
from lwm2m.transport.dtls.engine_backend import EngineBackend
from lwm2m.transport.dtls.records import is_client_hello
from lwm2m.transport.dtls.saved import SAVED_VERSION, SavedState, decode_saved, encode_saved

SAVED = SavedState(
    "server", PeerIdentity("x509", "dev-1", "CN=dev-1,O=Ü"), "TLS-PSK-WITH-AES-128-CCM-8", b"\x00ab", b"st"
)

STATE = b"\x00\x00\x00\x01x"  # a state of one byte


def test_saved_state_round_trips_and_has_a_known_layout() -> None:
    data = encode_saved(SAVED)
    assert decode_saved(data) == SAVED
    assert data[:2] == bytes((SAVED_VERSION, 0))
    assert data[2:7] == b"\x04x509" and data.endswith(b"\x03\x00ab\x00\x00\x00\x02st")
    bare = SavedState("client", None, None, b"", b"x")
    assert encode_saved(bare) == bytes((1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)) + b"x"
    assert decode_saved(encode_saved(bare)) == bare


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x02" + encode_saved(SAVED)[1:],  # another version
        b"\x01\x02" + encode_saved(SAVED)[2:],  # no such role
        encode_saved(SAVED)[:-1],
        encode_saved(SAVED) + b"\x00",
        encode_saved(SavedState("server", None, None, b"", b"x"))[:-5] + b"\x00\x00\x00\x00",  # no state
        bytes((1, 0, 3)) + b"foo" + bytes(6) + STATE,  # unknown identity kind
        bytes((1, 0, 0, 0, 1)) + b"n" + bytes(4) + STATE,  # a name without a kind
        bytes((1, 0, 3)) + b"p\xffk" + bytes(6) + STATE,  # not UTF-8
    ],
)
def test_hostile_saved_state_is_refused(bad: bytes) -> None:
    with pytest.raises(SessionStateError):
        decode_saved(bad)


@given(st.binary(max_size=200))
def test_saved_state_parser_takes_any_bytes(data: bytes) -> None:
    with contextlib.suppress(SessionStateError):
        decode_saved(data)


def test_a_restarted_server_layer_takes_up_the_sessions_of_the_old_one() -> None:
    limits = SessionLimits(idle_timeout=30.0)
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY, "dev-2": KEY}, limits))
    busy, idle = ("192.0.2.1", 40601), ("192.0.2.2", 40602)
    wire.add(idle, client_layer("dev-2", KEY))
    now = time.monotonic()
    assert ask(wire, idle, now) is not None
    wire.tick(now + 31)  # parked
    wire.add(busy, client_layer("dev-1", KEY))
    assert ask(wire, busy, now + 31) is not None  # established
    assert server.state_sizes()["dtls_parked"] == 1 and server.state_sizes()["dtls_sessions"] == 1
    saved = server.export_sessions()
    keys = server.ticket_state()
    assert keys is not None
    assert {a for a, _, _ in saved} == {busy, idle} and all(len(cid) == 6 for _, cid, _ in saved)
    sizes = server.state_sizes()
    assert (
        sizes["dtls_sessions"] == sizes["dtls_parked"] == sizes["dtls_cids"] == sizes["dtls_parked_cids"] == 0
    )

    restarted = wire.add(SERVER, server_layer({"dev-1": KEY, "dev-2": KEY}, limits))
    assert restarted.load_ticket_state(keys)
    assert restarted.import_sessions([(a, data) for a, _, data in saved] + [(("192.0.2.9", 1), b"junk")]) == 2
    assert restarted.counters["errors"] == 1
    assert restarted.peer_identity(busy) == PeerIdentity("psk", "dev-1")
    since = len(wire.sent)
    assert ask(wire, busy, now + 40).payload == b"psk:dev-1"  # type: ignore[union-attr]
    assert ask(wire, idle, now + 40).payload == b"psk:dev-2"  # type: ignore[union-attr]
    # The restarted server reaches a device first, too.
    token = restarted.request(get("/3/0"), idle, now + 41)
    wire.pump(now + 41)
    assert any(getattr(e, "token", None) == token for e in restarted.seen)  # type: ignore[attr-defined]
    assert not any(is_client_hello(d) for d, _, _ in wire.sent[since:])
    assert restarted.counters["handshakes_started"] == 0 and restarted.counters["sessions_resumed"] == 2


def _one_session(peer: tuple[str, int]) -> tuple[Wire, DtlsLayer]:
    # A server layer with one session, of device dev-1 at ``peer``.
    wire = Wire()
    server = wire.add(SERVER, server_layer({"dev-1": KEY}))
    wire.add(peer, client_layer("dev-1", KEY))
    assert ask(wire, peer) is not None
    return wire, server


def test_sessions_whose_psk_changed_meanwhile_are_not_taken_up() -> None:
    peer = ("192.0.2.3", 40603)
    wire, server = _one_session(peer)
    saved = server.export_sessions()
    restarted = wire.add(SERVER, server_layer({"dev-1": bytes(16)}))
    assert restarted.import_sessions((a, data) for a, _, data in saved) == 1
    # The record of the old session finds no session it may take up: no answer.
    assert ask(wire, peer) is None
    assert restarted.counters["sessions_resumed"] == 0 and restarted.state_sizes()["dtls_parked"] == 0


def test_a_layer_without_room_or_the_role_takes_nothing() -> None:
    _, server = _one_session(("192.0.2.4", 40604))
    saved = [(a, data) for a, _, data in server.export_sessions()]
    assert server_layer({"dev-1": KEY}, SessionLimits(max_parked=0)).import_sessions(saved) == 0
    assert client_layer("dev-1", KEY).import_sessions(saved) == 0
    assert client_layer("dev-1", KEY).ticket_state() is None


# --- certificate and raw public key sessions -------------------------------------------------------


@pytest.mark.parametrize("kind", ["x509", "rpk"])
def test_an_idle_certificate_session_is_parked_and_taken_up_without_a_handshake(kind: str) -> None:
    server_config, client_config, who = certificate_configs(kind, SessionLimits(idle_timeout=30.0))
    wire = Wire()
    server = wire.add(SERVER, layer_of(server_config))
    peer = ("192.0.2.5", 40605)
    wire.add(peer, layer_of(client_config))
    now = time.monotonic()
    assert ask(wire, peer, now).payload == who.encode()  # type: ignore[union-attr]
    identity = server.peer_identity(peer)
    assert identity is not None and identity.kind == kind
    wire.tick(now + 31)
    assert server.state_sizes()["dtls_parked"] == 1 and server.state_sizes()["dtls_sessions"] == 0
    since = len(wire.sent)
    assert ask(wire, peer, now + 32).payload == who.encode()  # type: ignore[union-attr]
    assert not any(is_client_hello(d) for d, _, _ in wire.sent[since:])
    assert server.counters["sessions_resumed"] == 1 and server.counters["handshakes_done"] == 1
    assert server.peer_identity(peer) == identity


@pytest.mark.parametrize("kind", ["x509", "rpk"])
def test_a_restarted_server_layer_takes_up_certificate_sessions(kind: str) -> None:
    server_config, client_config, who = certificate_configs(kind)
    wire = Wire()
    server = wire.add(SERVER, layer_of(server_config))
    peer = ("192.0.2.6", 40606)
    wire.add(peer, layer_of(client_config))
    assert ask(wire, peer) is not None
    identity = server.peer_identity(peer)
    saved = [(a, data) for a, _, data in server.export_sessions()]
    assert [a for a, _ in saved] == [peer]

    restarted = wire.add(SERVER, layer_of(server_config))
    assert restarted.import_sessions(saved) == 1
    assert restarted.peer_identity(peer) == identity
    since = len(wire.sent)
    assert ask(wire, peer).payload == who.encode()  # type: ignore[union-attr]
    assert not any(is_client_hello(d) for d, _, _ in wire.sent[since:])
    assert restarted.counters["handshakes_started"] == 0 and restarted.counters["sessions_resumed"] == 1


def test_a_server_with_another_key_does_not_take_up_a_saved_rpk_session() -> None:
    server_config, client_config, _ = certificate_configs("rpk")
    wire = Wire()
    server = wire.add(SERVER, layer_of(server_config))
    peer = ("192.0.2.7", 40607)
    wire.add(peer, layer_of(client_config))
    assert ask(wire, peer) is not None
    saved = [(a, data) for a, _, data in server.export_sessions()]
    other_server, _, _ = certificate_configs("rpk")
    restarted = wire.add(SERVER, layer_of(other_server))
    assert restarted.import_sessions(saved) == 1
    # The session is bound to the old server key: the record finds nothing to take up.
    assert ask(wire, peer) is None
    assert restarted.counters["sessions_resumed"] == 0 and restarted.state_sizes()["dtls_parked"] == 0


@pytest.mark.parametrize("kind", ["x509", "rpk"])
def test_the_backend_restores_a_certificate_session_with_its_peer_identity(kind: str) -> None:
    server_config, client_config, who = certificate_configs(kind)
    wire = Wire()
    server = wire.add(SERVER, layer_of(server_config))
    peer = ("192.0.2.8", 40608)
    wire.add(peer, layer_of(client_config))
    assert ask(wire, peer) is not None
    identity = server.peer_identity(peer)
    [(_, _, data)] = server.export_sessions()
    restored = EngineBackend().server(server_config).restore(decode_saved(data).state)
    assert restored.identity() == identity and str(identity) == who
