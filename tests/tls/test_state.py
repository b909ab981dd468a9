"""Session and connection state as bytes (lwm2m.tls.state): the layout byte for byte, round
trips, every truncation and hostile input refused with SessionStateError only; and an
established connection exported and imported (a restart, another node) that goes on sending and
receiving without a handshake, never reusing a nonce and still refusing replays."""

from __future__ import annotations

import contextlib
import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.helpers.dtls_engine import ADDRESS, IDENTITY, client_config, events, exchange, run, server_config

from lwm2m.errors import DtlsError, SessionStateError
from lwm2m.tls.connection import (
    EXPORT_SEQUENCE_MARGIN,
    ApplicationData,
    DtlsConnection,
    DtlsRole,
)
from lwm2m.tls.record import parse_datagram
from lwm2m.tls.state import (
    PEER_PSK,
    PEER_RPK,
    PEER_X509,
    ConnectionState,
    ResumableSession,
    credential_binding,
)

MASTER = bytes(range(48))
SESSION = ResumableSession(
    session_id=b"\xaa" * 4,
    cipher_suite=0xC0A8,
    master_secret=MASTER,
    identity=b"ep",
    extended_master_secret=True,
    created=1.5,
    ticket=b"\x01\x02\x03",
    ticket_lifetime=86400,
    binding=b"\x05" * 16,
    server_name="lwm2m.example",
    send_limit=256,
    receive_limit=512,
)
# The fields of format version 1 (no name, no limits), as stored before version 2.
V1_FIELDS = (
    b"\x01"  # flags: extended master secret
    + b"\xc0\xa8"  # TLS_PSK_WITH_AES_128_CCM_8
    + MASTER
    + struct.pack(">d", 1.5)  # created
    + b"\x04"
    + b"\xaa" * 4  # session_id<0..32>
    + b"\x00\x02ep"  # identity<0..2^16-1>
    + b"\x00\x03\x01\x02\x03"  # ticket<0..2^16-1>
    + (86400).to_bytes(4, "big")  # ticket lifetime hint
    + b"\x10"
    + b"\x05" * 16  # binding<0..32>
)


# The fields version 2 added (the server name and record limits).
V2_FIELDS = (
    V1_FIELDS
    + b"\x0dlwm2m.example"  # server_name<0..255> (RFC 6066 §3)
    + (256).to_bytes(2, "big")  # the record plaintext limit towards the peer (RFC 8449 §4)
    + (512).to_bytes(2, "big")  # the one from the peer (0: none)
)
PEER_SPKI = b"\x30\x59" + bytes(89)  # the length of a P-256 SubjectPublicKeyInfo
X509_SESSION = replace(
    SESSION,
    cipher_suite=0xC0AE,
    identity=b"urn:imei:1",
    peer_kind=PEER_X509,
    peer_key=PEER_SPKI,
    peer_name="urn:imei:1",
    peer_subject="CN=urn:imei:1,O=Acme",
)


def test_a_session_is_laid_out_field_by_field() -> None:
    expected = (
        b"\x03\x01"  # format version 3, kind 1: a session
        + V2_FIELDS
        + b"\x00"  # the peer's credentials: a PSK
        + b"\x00\x00" * 3  # no peer key, name or subject
    )
    assert SESSION.to_bytes() == expected
    assert ResumableSession.from_bytes(expected) == SESSION


def test_a_certificate_session_keeps_who_the_peer_proved_to_be() -> None:
    encoded = X509_SESSION.to_bytes()
    assert encoded.endswith(
        b"\x01"  # X.509
        + b"\x00\x5b"
        + PEER_SPKI  # peer_key<0..2^16-1>: its SubjectPublicKeyInfo DER
        + b"\x00\x0aurn:imei:1"  # peer_name<0..2^16-1>: the subject CN
        + b"\x00\x14CN=urn:imei:1,O=Acme"  # peer_subject<0..2^16-1> (RFC 4514)
    )
    assert ResumableSession.from_bytes(encoded) == X509_SESSION
    rpk = replace(X509_SESSION, identity=PEER_SPKI, peer_kind=PEER_RPK, peer_name="", peer_subject="")
    assert ResumableSession.from_bytes(rpk.to_bytes()) == rpk


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"peer_kind": 3}, "unknown peer credential kind"),
        ({"peer_kind": PEER_RPK, "peer_key": b""}, "needs the peer's key"),
        ({"peer_kind": PEER_PSK}, "a PSK session has no peer key"),
    ],
)
def test_inconsistent_peer_fields_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(SessionStateError, match=message):
        replace(X509_SESSION, **change)  # type: ignore[arg-type]


def test_a_peer_name_that_is_not_utf8_is_refused() -> None:
    encoded = X509_SESSION.to_bytes().replace(b"urn:imei:1,O", b"urn:imei:\xff,O")
    with pytest.raises(SessionStateError, match="peer_subject is not UTF-8"):
        ResumableSession.from_bytes(encoded)


def test_a_version_2_session_still_reads_as_a_psk_session() -> None:
    session = ResumableSession.from_bytes(b"\x02\x01" + V2_FIELDS)
    assert session == SESSION and session.peer_kind == PEER_PSK


def test_a_version_1_session_still_reads_without_name_and_limits() -> None:
    session = ResumableSession.from_bytes(b"\x01\x01" + V1_FIELDS)
    assert session == replace(SESSION, server_name="", send_limit=2**14 + 1, receive_limit=None)
    # Written back in the current version, which then reads back the same.
    assert session.to_bytes()[:1] == b"\x03"
    assert ResumableSession.from_bytes(session.to_bytes()) == session


def test_a_version_1_connection_state_still_imports() -> None:
    exported, client, _ = _exported()
    state = ConnectionState.from_bytes(exported)
    fields = state.session.to_bytes()[2:]
    # Version 1 had no name, limit and peer fields after the binding: 1 + 2 + 2 bytes less,
    # and the 7 bytes of a PSK session's peer fields.
    old_session = fields[: -(1 + len(state.session.server_name) + 4 + 7)]
    new = exported[3 : 3 + len(fields)]
    assert new == fields
    old = b"\x01" + exported[1:3] + old_session + exported[3 + len(fields) :]
    restored = DtlsConnection.import_state(old, server_config(), 1.0, address=ADDRESS)
    assert restored.established and restored.max_application_data == 2**14
    client.send_application_data(b"x")
    for datagram in client.datagrams_to_send(1.0):
        restored.receive_datagram(datagram, 1.0)
    assert events(restored) == [ApplicationData(b"x")]


def test_a_connection_state_is_laid_out_field_by_field() -> None:
    state = ConnectionState(
        server=True,
        session=SESSION,
        client_random=b"\x11" * 32,
        server_random=b"\x22" * 32,
        epoch=1,
        write_sequence=0x0102030405,
        read_highest=7,
        read_bitmap=0b1011,
        cid_negotiated=True,
        own_cid=b"\x00abcde",
        peer_cid=b"",
    )
    encoded = state.to_bytes()
    session_fields = SESSION.to_bytes()[2:]
    assert encoded == (
        b"\x03\x02"  # format version 3, kind 2: a connection
        + bytes((2 | 4 | 8,))  # server, CID negotiated, a read window follows
        + session_fields
        + b"\x11" * 32
        + b"\x22" * 32
        + b"\x00\x01"  # epoch
        + bytes.fromhex("000102030405")  # the next write sequence number
        + bytes.fromhex("000000000007")  # the highest read
        + (0b1011).to_bytes(8, "big")  # the replay bitmap
        + b"\x06\x00abcde"  # own CID
        + b"\x00"  # peer CID
    )
    assert ConnectionState.from_bytes(encoded) == state


@pytest.mark.parametrize("kind", ["session", "connection"])
def test_every_truncation_and_any_extra_byte_is_refused(kind: str) -> None:
    data = SESSION.to_bytes() if kind == "session" else _exported()[0]
    parse = ResumableSession.from_bytes if kind == "session" else ConnectionState.from_bytes
    for end in range(len(data)):
        with pytest.raises(SessionStateError):
            parse(data[:end])
    with pytest.raises(SessionStateError, match="after the end"):
        parse(data + b"\x00")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b"\x04" + b[1:], "format version 4"),
        (lambda b: b"\x00" + b[1:], "format version 0"),
        (lambda b: b[:1] + b"\x02" + b[2:], "kind 2"),
        (lambda b: b[:2] + b"\x80" + b[3:], "unknown flags"),
        (lambda b: b[:53] + struct.pack(">d", float("nan")) + b[61:], "finite"),
        (lambda b: b[:61] + b"\x21" + b[62:], "session_id is 33 bytes"),
    ],
)
def test_a_bad_field_is_named(change: object, message: str) -> None:
    with pytest.raises(SessionStateError, match=message):
        ResumableSession.from_bytes(change(SESSION.to_bytes()))  # type: ignore[operator]


def test_a_session_is_bound_to_its_credential() -> None:
    psk = bytes(range(16))
    bound = replace(SESSION, binding=credential_binding(MASTER, psk))
    assert bound.bound_to(psk) and not bound.bound_to(psk[::-1])
    assert replace(SESSION, binding=b"").bound_to(b"anything")  # not bound
    # Keyed by the master secret: the binding of one PSK differs from session to session.
    assert credential_binding(bytes(48), psk) != credential_binding(MASTER, psk)
    with pytest.raises(SessionStateError, match="binding"):
        replace(SESSION, binding=bytes(33))


def test_not_bytes_is_a_state_error() -> None:
    with pytest.raises(SessionStateError):
        ResumableSession.from_bytes("text")  # type: ignore[arg-type]


def test_values_out_of_range_are_refused_on_construction() -> None:
    with pytest.raises(SessionStateError, match="48 bytes"):
        ResumableSession(b"", 0xC0A8, b"short", b"ep", True, 0.0)
    with pytest.raises(SessionStateError, match="32 bytes"):
        ResumableSession(b"x" * 33, 0xC0A8, MASTER, b"ep", True, 0.0)
    with pytest.raises(SessionStateError, match="finite"):
        ResumableSession(b"", 0xC0A8, MASTER, b"ep", True, float("inf"))
    for name in ("é.example", "a" * 256):
        with pytest.raises(SessionStateError, match="server name"):
            replace(SESSION, server_name=name)
    for limit in (63, 2**14 + 2):
        with pytest.raises(SessionStateError, match="record limit"):
            replace(SESSION, send_limit=limit)
        with pytest.raises(SessionStateError, match="record limit"):
            replace(SESSION, receive_limit=limit)


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"\x01\xff" + b"\x01\x00\x00\x00", "not ASCII"),
        (b"\x00" + b"\x00\x3f\x00\x00", "record limit 63"),
        (b"\x00" + b"\x01\x00\xff\xff", "record limit 65535"),
    ],
)
def test_a_bad_name_or_limit_is_a_state_error(tail: bytes, message: str) -> None:
    with pytest.raises(SessionStateError, match=message):
        ResumableSession.from_bytes(b"\x02\x01" + V1_FIELDS + tail)


@given(st.binary(max_size=300))
def test_any_bytes_read_as_a_session_or_a_state_error(data: bytes) -> None:
    for parse in (ResumableSession.from_bytes, ConnectionState.from_bytes):
        with contextlib.suppress(SessionStateError):
            parse(data)


@given(st.binary(max_size=300))
def test_any_version_2_tail_reads_as_a_session_or_a_state_error(tail: bytes) -> None:
    # The fields version 2 added, fuzzed behind a valid version 1 prefix.
    with contextlib.suppress(SessionStateError):
        session = ResumableSession.from_bytes(b"\x02\x01" + V1_FIELDS + tail)
        assert ResumableSession.from_bytes(session.to_bytes()) == session


@given(st.data())
def test_any_change_to_an_export_imports_or_is_a_state_error(data: st.DataObject) -> None:
    exported, _, _ = _exported()
    position = data.draw(st.integers(0, len(exported) - 1))
    value = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(position, len(exported)))
    changed = exported[:position] + bytes((value,)) + exported[cut:]
    with contextlib.suppress(SessionStateError):
        DtlsConnection.import_state(changed, server_config(), 0.0)


# --- export and import of a live connection ---------------------------------------------------


def _established(**options: object) -> tuple[DtlsConnection, DtlsConnection]:
    client = DtlsConnection(DtlsRole.CLIENT, client_config(**options), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, server_config(**options), 0.0, address=ADDRESS)
    run(client, server)
    events(client)
    events(server)
    assert client.established and server.established
    return client, server


def _exported(**options: object) -> tuple[bytes, DtlsConnection, DtlsConnection]:
    client, server = _established(**options)
    return server.export_state(), client, server


def _sequences(datagram: bytes, cid_length: int) -> list[int]:
    return [record.sequence for record in parse_datagram(datagram, cid_length)]


@pytest.mark.parametrize("cid", [True, False], ids=["cid", "plain"])
def test_an_imported_server_connection_goes_on_without_a_handshake(cid: bool) -> None:
    client, server = _established(connection_id=cid)
    client.send_application_data(b"before")
    exchange(client, server, 1.0)
    assert events(server) == [ApplicationData(b"before")]
    exported = server.export_state()
    assert len(exported) <= 1024

    restored = DtlsConnection.import_state(exported, server_config(connection_id=cid), 2.0, address=ADDRESS)
    assert restored.established and restored.peer_identity == IDENTITY
    assert restored.own_cid == server.own_cid and restored.peer_cid == server.peer_cid
    assert restored.datagrams_to_send(2.0) == [] and restored.get_timer() is None
    client.send_application_data(b"after the restart")
    [datagram] = client.datagrams_to_send(3.0)
    restored.receive_datagram(datagram, 3.0)
    assert events(restored) == [ApplicationData(b"after the restart")]
    restored.send_application_data(b"2.05 Content")
    [answer] = restored.datagrams_to_send(3.0)
    # The write sequence number moved on by the margin: no nonce of the old process again.
    [sequence] = _sequences(answer, len(client.own_cid))
    assert sequence >= EXPORT_SEQUENCE_MARGIN
    client.receive_datagram(answer, 3.0)
    assert events(client) == [ApplicationData(b"2.05 Content")]


def test_the_replay_window_travels_with_the_connection() -> None:
    client, server = _established()
    sent = []
    for n in range(5):
        client.send_application_data(b"%d" % n)
        sent += client.datagrams_to_send(1.0)
    # Records 0, 1, 3 arrive before the export; 2 and 4 after it.
    for index in (0, 1, 3):
        server.receive_datagram(sent[index], 1.0)
    events(server)
    restored = DtlsConnection.import_state(server.export_state(), server_config(), 2.0, address=ADDRESS)
    for datagram in sent:
        restored.receive_datagram(datagram, 2.0)
    # Only the two that the old connection never saw come through; the replays are dropped.
    assert events(restored) == [ApplicationData(b"2"), ApplicationData(b"4")]


def test_an_imported_client_connection_goes_on_too() -> None:
    client, server = _established()
    restored = DtlsConnection.import_state(client.export_state(), client_config(), 5.0)
    assert restored.role is DtlsRole.CLIENT and restored.established
    assert restored.datagrams_to_send(5.0) == []  # the hello of its construction is dropped
    restored.send_application_data(b"POST /rd?ep=moved")
    for datagram in restored.datagrams_to_send(5.0):
        server.receive_datagram(datagram, 5.0)
    assert events(server) == [ApplicationData(b"POST /rd?ep=moved")]
    server.close()
    for datagram in server.datagrams_to_send(6.0):
        restored.receive_datagram(datagram, 6.0)
    assert restored.closed


def test_an_import_is_also_a_resumable_session() -> None:
    client, _ = _established()
    restored = DtlsConnection.import_state(client.export_state(), client_config(), 5.0)
    assert restored.session == client.session


def test_only_an_established_connection_exports() -> None:
    client = DtlsConnection(DtlsRole.CLIENT, client_config(), 0.0)
    with pytest.raises(DtlsError, match="established"):
        client.export_state()
    _, server = _established()
    with pytest.raises(DtlsError, match="used up"):
        server.export_state(margin=2**48)


def test_an_import_of_another_suite_or_epoch_is_refused() -> None:
    exported, _, _ = _exported()
    state = ConnectionState.from_bytes(exported)
    for changed in (
        ConnectionState(**{**_fields(state), "epoch": 2}),
        ConnectionState(**{**_fields(state), "session": replace(state.session, cipher_suite=0x00A8)}),
    ):
        with pytest.raises(SessionStateError):
            DtlsConnection.import_state(changed.to_bytes(), server_config(), 0.0)


def _fields(state: ConnectionState) -> dict[str, object]:
    return {name: getattr(state, name) for name in ConnectionState.__dataclass_fields__}


def test_the_sizes_of_an_idle_session() -> None:
    # Figures for the issue: ≤ 1 KB per idle resumable session.
    _, server = _established()
    exported = server.export_state()
    session = server.session
    assert session is not None
    assert len(exported) <= 1024 and len(session.to_bytes()) <= 256


# --- names and record limits -------------------------------------------------------------------


def test_an_imported_connection_keeps_its_limits_not_those_of_its_config() -> None:
    client = DtlsConnection(
        DtlsRole.CLIENT, client_config(server_name="lwm2m.example", record_size_limit=256), 0.0
    )
    server = DtlsConnection(DtlsRole.SERVER, server_config(record_size_limit=512), 0.0, address=ADDRESS)
    run(client, server)
    events(client)
    events(server)
    limit = server.max_application_data
    assert limit < 256
    for side, config in ((server, server_config()), (client, client_config())):
        state = ConnectionState.from_bytes(side.export_state())
        assert state.session.server_name == "lwm2m.example"
        restored = DtlsConnection.import_state(side.export_state(), config, 1.0, address=ADDRESS)
        assert restored.server_name == "lwm2m.example"
        assert restored.max_application_data == side.max_application_data
        assert restored.session == side.session
    restored = DtlsConnection.import_state(server.export_state(), server_config(), 1.0, address=ADDRESS)
    with pytest.raises(DtlsError):
        restored.send_application_data(bytes(limit + 1))
    restored.send_application_data(bytes(limit))
    for datagram in restored.datagrams_to_send(1.0):
        client.receive_datagram(datagram, 1.0)
    assert events(client) == [ApplicationData(bytes(limit))]


def test_every_truncation_of_a_certificate_session_is_refused() -> None:
    data = X509_SESSION.to_bytes()
    for end in range(len(data)):
        with pytest.raises(SessionStateError):
            ResumableSession.from_bytes(data[:end])
    with pytest.raises(SessionStateError, match="after the end"):
        ResumableSession.from_bytes(data + b"\x00")


def test_a_ticket_seals_the_session_without_its_id_and_ticket() -> None:
    session = replace(SESSION, session_id=b"i" * 32, ticket=b"t" * 40, ticket_lifetime=600)
    bare = replace(session, session_id=b"", ticket=b"", ticket_lifetime=0)
    assert session.ticket_state() == bare.to_bytes()
    assert ResumableSession.from_bytes(session.ticket_state()) == bare
    assert session.to_bytes() != bare.to_bytes()
