"""The server's resumption state (lwm2m.tls.tickets): the NewSessionTicket message of RFC 5077
§3.3 byte for byte and under hostile input; tickets sealed by TicketKeys that open only under our
keys, unchanged and within their lifetime, across one rotation; the bounded session cache."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.errors import DtlsError, HandshakeFormatError
from lwm2m.tls.state import ResumableSession
from lwm2m.tls.tickets import KEY_NAME_LENGTH, NewSessionTicket, SessionCache, TicketKeys

SECRET = b"a ticket secret of 32 bytes ...."
SESSION = ResumableSession(b"\x01" * 32, 0xC0A8, bytes(range(48)), b"urn:imei:1", True, 100.0)


def test_new_session_ticket_known_bytes() -> None:
    # RFC 5077 §3.3: uint32 ticket_lifetime_hint, opaque ticket<0..2^16-1>.
    message = NewSessionTicket(7200, b"\xde\xad")
    assert message.to_bytes() == bytes.fromhex("00001c200002dead")
    assert NewSessionTicket.parse(bytes.fromhex("00001c200002dead")) == message
    assert NewSessionTicket.parse(bytes(6)) == NewSessionTicket(0, b"")  # "no ticket after all"


@pytest.mark.parametrize("body", ["", "0000", "0000000000", "00000000000301", "0000000000010203"])
def test_a_malformed_new_session_ticket_is_a_format_error(body: str) -> None:
    with pytest.raises(HandshakeFormatError):
        NewSessionTicket.parse(bytes.fromhex(body))


def test_new_session_ticket_fields_out_of_range() -> None:
    with pytest.raises(HandshakeFormatError):
        NewSessionTicket(2**32, b"").to_bytes()
    with pytest.raises(HandshakeFormatError):
        NewSessionTicket(0, bytes(0x10000)).to_bytes()


@given(st.binary(max_size=80))
def test_any_new_session_ticket_body_parses_or_is_a_format_error(body: bytes) -> None:
    try:
        message = NewSessionTicket.parse(body)
    except HandshakeFormatError:
        return
    assert message.to_bytes() == body


def test_a_ticket_opens_to_the_session_without_id_and_names_its_key() -> None:
    keys = TicketKeys(SECRET)
    ticket = keys.seal(SESSION, os.urandom)
    # key_name[16] ‖ nonce[12] ‖ AES-GCM(state) ‖ tag[16]: the state of a session without id.
    assert len(ticket) == KEY_NAME_LENGTH + 12 + len(replace(SESSION, session_id=b"").to_bytes()) + 16
    assert keys.open(ticket, 100.0) == replace(SESSION, session_id=b"")
    assert TicketKeys(SECRET).open(ticket, 200.0) is not None  # no state: another instance opens it
    assert keys.seal(SESSION, os.urandom) != ticket  # a fresh nonce every time


def test_a_ticket_opens_only_within_its_lifetime() -> None:
    keys = TicketKeys(SECRET, lifetime=3600.0)
    ticket = keys.seal(SESSION, os.urandom)
    assert keys.open(ticket, 100.0 + 3600.0) is not None
    assert keys.open(ticket, 100.0 + 3600.5) is None
    assert keys.open(ticket, 99.0) is None  # from the future: another clock, not trusted
    assert keys.lifetime_hint == 3600


def test_the_previous_key_opens_until_the_next_rotation() -> None:
    keys = TicketKeys(SECRET)
    old = keys.seal(SESSION, os.urandom)
    keys.rotate(b"the next ticket secret, 32 bytes")
    new = keys.seal(SESSION, os.urandom)
    assert old[:KEY_NAME_LENGTH] != new[:KEY_NAME_LENGTH]
    assert keys.open(old, 100.0) is not None and keys.open(new, 100.0) is not None
    keys.rotate(b"and a third ticket secret, 32 b.")
    assert keys.open(old, 100.0) is None and keys.open(new, 100.0) is not None
    # A server starting with both keys of a rotation opens both.
    restarted = TicketKeys(b"and a third ticket secret, 32 b.", previous=b"the next ticket secret, 32 bytes")
    assert restarted.open(new, 100.0) is not None


def test_every_changed_byte_makes_a_ticket_unopenable() -> None:
    keys = TicketKeys(SECRET)
    ticket = keys.seal(SESSION, os.urandom)
    for position in range(len(ticket)):
        forged = bytearray(ticket)
        forged[position] ^= 0x40
        assert keys.open(bytes(forged), 100.0) is None
    for end in range(len(ticket)):
        assert keys.open(ticket[:end], 100.0) is None


@given(st.binary(max_size=200))
def test_any_bytes_as_a_ticket_open_to_nothing(ticket: bytes) -> None:
    assert TicketKeys(SECRET).open(ticket, 100.0) is None


@given(st.binary(max_size=120))
def test_any_sealed_plaintext_opens_or_gives_nothing(state: bytes) -> None:
    # Even a ticket under our own key whose contents are not a session state gives None.
    keys = TicketKeys(SECRET)
    name = keys.seal(SESSION, os.urandom)[:KEY_NAME_LENGTH]
    nonce = bytes(12)
    ticket = name + nonce + keys._current.aead.encrypt(nonce, state, name)
    result = keys.open(ticket, 100.0)
    assert result is None or isinstance(result, ResumableSession)


def test_ticket_keys_are_checked() -> None:
    with pytest.raises(DtlsError):
        TicketKeys(b"short")
    with pytest.raises(DtlsError):
        TicketKeys(SECRET, previous=b"short")
    with pytest.raises(DtlsError):
        TicketKeys(SECRET, lifetime=0)
    with pytest.raises(DtlsError):
        TicketKeys(SECRET).rotate(b"short")


def _session(n: int, created: float = 100.0) -> ResumableSession:
    return replace(SESSION, session_id=n.to_bytes(32, "big"), created=created)


def test_the_session_cache_is_bounded_and_forgets_the_least_recent() -> None:
    cache = SessionCache(max_sessions=3)
    for n in range(3):
        cache.store(_session(n))
    assert cache.get(_session(0).session_id, 100.0) is not None  # 0 is now the most recent
    cache.store(_session(3))
    assert len(cache) == 3
    assert cache.get(_session(1).session_id, 100.0) is None
    assert all(cache.get(_session(n).session_id, 100.0) is not None for n in (0, 2, 3))


def test_the_session_cache_expires_and_removes() -> None:
    cache = SessionCache(lifetime=60.0)
    cache.store(_session(1))
    cache.store(replace(SESSION, session_id=b""))  # no id: nothing to find it by
    assert len(cache) == 1
    assert cache.get(_session(1).session_id, 160.0) is not None
    assert cache.get(_session(1).session_id, 160.5) is None and len(cache) == 0
    cache.store(_session(2))
    cache.remove(_session(2).session_id)
    cache.remove(b"never stored")
    assert cache.get(_session(2).session_id, 100.0) is None
    assert cache.get(b"", 100.0) is None
    with pytest.raises(DtlsError):
        SessionCache(max_sessions=0)
