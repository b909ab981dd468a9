"""The application-data path of an established connection, read and written straight from the
datagram (RFC 6347 §4.1, §4.1.2.6; RFC 6655 §3; RFC 9146 §4, §6): ``single_protected_record``,
``AeadProtection.seal_record``, ``DtlsConnection.receive_application_data`` and
``protect_application_data`` must give exactly what the general forms give."""

from __future__ import annotations

from itertools import accumulate

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.helpers.dtls_engine import client_config, events, pair, run, server_config

from lwm2m.errors import (
    BadRecordMac,
    DtlsError,
    ProtocolError,
    RecordDropped,
    RecordError,
    RecordOverflow,
    SecurityError,
    SessionClosed,
)
from lwm2m.tls.connection import (
    TLS_PSK_WITH_AES_128_CBC_SHA256,
    ApplicationData,
    ConnectionClosed,
    DtlsConnection,
)
from lwm2m.tls.negotiation import SizeLimits
from lwm2m.tls.protection import AES_128_CCM_8, AES_128_GCM, AeadAlgorithm, AeadProtection
from lwm2m.tls.record import (
    ALERT,
    APPLICATION_DATA,
    DTLS_1_2,
    HANDSHAKE,
    MAX_PLAINTEXT,
    MAX_SEQUENCE,
    TLS12_CID,
    DtlsRecord,
    parse_datagram,
    single_protected_record,
)

KEY = bytes(range(16))
SALT = bytes((1, 2, 3, 4))


# --- framing ------------------------------------------------------------------------------------


def test_one_application_record_is_read_from_its_header() -> None:
    # type 23, DTLS 1.2, epoch 1, sequence 0x0102_0304_0506, length 3, then the fragment.
    datagram = bytes.fromhex("17 fefd 0001 010203040506 0003") + b"abc"
    assert single_protected_record(datagram, 0) == (APPLICATION_DATA, DTLS_1_2, 0x010203040506, 13, b"")


def test_one_cid_record_is_read_with_the_cid_after_the_sequence_number() -> None:
    datagram = bytes.fromhex("19 fefd 0001 000000000007 c1c2c3 0002") + b"xy"
    assert single_protected_record(datagram, 3) == (TLS12_CID, DTLS_1_2, 7, 16, bytes.fromhex("c1c2c3"))


@pytest.mark.parametrize(
    ("datagram", "cid_length"),
    [
        (b"", 0),
        (bytes.fromhex("17 fefd 0001 000000000001 00"), 0),  # a header cut short
        (bytes.fromhex("17 fefd 0000 000000000001 0001 00"), 0),  # epoch 0
        (bytes.fromhex("17 fefd 0002 000000000001 0001 00"), 0),  # epoch 2
        (bytes.fromhex("17 0303 0001 000000000001 0001 00"), 0),  # TLS, not DTLS
        (bytes.fromhex("16 fefd 0001 000000000001 0001 00"), 0),  # handshake
        (bytes.fromhex("15 fefd 0001 000000000001 0001 00"), 0),  # alert
        (bytes.fromhex("17 fefd 0001 000000000001 0002 00"), 0),  # length past the end
        (bytes.fromhex("17 fefd 0001 000000000001 0000 00"), 0),  # bytes after the record
        (bytes.fromhex("17 fefd 0001 000000000001 0001 00") * 2, 0),  # two records
        (bytes.fromhex("17 fefd 0001 000000000001 0001 00"), 2),  # no CID where one is expected
        (bytes.fromhex("19 fefd 0001 000000000001 aabb 0001 00"), 0),  # a CID nobody asked for
        (bytes.fromhex("19 fefd 0001 000000000001 aa"), 4),  # shorter than its CID
    ],
)
def test_anything_but_one_protected_record_is_left_to_the_general_parser(
    datagram: bytes, cid_length: int
) -> None:
    assert single_protected_record(datagram, cid_length) is None


@given(st.binary(max_size=64), st.sampled_from([0, 1, 4]))
def test_what_is_read_from_the_header_is_what_the_general_parser_finds(data: bytes, cid_length: int) -> None:
    single = single_protected_record(data, cid_length)
    if single is None:
        return
    [record] = parse_datagram(data, cid_length)
    content_type, version, sequence, start, cid = single
    assert (record.content_type, record.version, record.epoch) == (content_type, version, 1)
    assert (record.sequence, record.cid, record.fragment) == (sequence, cid, data[start:])


# --- sealing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [AES_128_CCM_8, AES_128_GCM])
@pytest.mark.parametrize("cid", [b"", b"\x2a\x01\x02\x03\x04\x05"])
@pytest.mark.parametrize("content_type", [APPLICATION_DATA, ALERT, HANDSHAKE])
@pytest.mark.parametrize("padding", [0, 5])
def test_a_sealed_record_is_the_encrypted_record_encoded(
    algorithm: AeadAlgorithm, cid: bytes, content_type: int, padding: int
) -> None:
    protection = AeadProtection(algorithm, KEY, SALT, padding)
    plain = DtlsRecord(content_type, DTLS_1_2, 1, 0x0000_0102_0304, b"GET /3/0", cid)
    expected = protection.encrypt(plain).encode()
    assert protection.seal_record(1, 0x0000_0102_0304, content_type, b"GET /3/0", cid) == expected
    [record] = parse_datagram(expected, len(cid))
    assert protection.decrypt(record).fragment == b"GET /3/0"


def test_sealing_checks_the_header_fields_and_the_length() -> None:
    protection = AeadProtection(AES_128_CCM_8, KEY, SALT)
    with pytest.raises(RecordError):
        protection.seal_record(1, 2**48, APPLICATION_DATA, b"x")
    with pytest.raises(RecordError):
        protection.seal_record(0x10000, 0, APPLICATION_DATA, b"x")
    with pytest.raises(RecordError):
        protection.seal_record(1, 0, 256, b"x")
    with pytest.raises(RecordOverflow):
        protection.seal_record(1, 0, APPLICATION_DATA, bytes(MAX_PLAINTEXT + 1))
    with pytest.raises(RecordOverflow):  # the inner type byte makes it one too many (RFC 9146 §4)
        protection.seal_record(1, 0, APPLICATION_DATA, bytes(MAX_PLAINTEXT), b"\x01")
    with pytest.raises(RecordError):  # type 0 cannot be told from the padding
        protection.seal_record(1, 0, 0, b"x", b"\x01")
    with pytest.raises(RecordError):
        protection.seal_record(1, 0, APPLICATION_DATA, b"x", bytes(256))
    largest = protection.seal_record(1, 0, APPLICATION_DATA, bytes(MAX_PLAINTEXT))
    assert len(largest) == 13 + 8 + MAX_PLAINTEXT + 8


@settings(max_examples=60, deadline=None)
@given(st.integers(0, MAX_SEQUENCE), st.binary(max_size=64), st.sampled_from([AES_128_CCM_8, AES_128_GCM]))
def test_an_application_record_sealed_by_its_seq_num_is_the_sealed_record(
    sequence: int, content: bytes, algorithm: AeadAlgorithm
) -> None:
    protection = AeadProtection(algorithm, KEY, SALT)
    expected = protection.seal_record(1, sequence, APPLICATION_DATA, content)
    assert protection.seal_application((1 << 48) | sequence, content) == expected
    assert protection.open_datagram(expected, (1 << 48) | sequence, DTLS_1_2) == content


def test_sealing_by_seq_num_checks_the_length() -> None:
    protection = AeadProtection(AES_128_CCM_8, KEY, SALT)
    with pytest.raises(RecordOverflow):
        protection.seal_application(1 << 48, bytes(MAX_PLAINTEXT + 1))
    assert len(protection.seal_application(1 << 48, bytes(MAX_PLAINTEXT))) == 13 + 8 + MAX_PLAINTEXT + 8


# --- the connection -----------------------------------------------------------------------------


def _two_established(cid: bool) -> tuple[DtlsConnection, DtlsConnection, DtlsConnection, DtlsConnection]:
    """Two pairs of connections in the same state (the randoms are deterministic), so that one
    server can take a datagram the general way and the other the fast way."""
    pairs = []
    for _ in range(2):
        client, server = pair(server_config(connection_id=cid), client_config(connection_id=cid))
        run(client, server)
        events(client), events(server)
        pairs.append((client, server))
    (c1, s1), (c2, s2) = pairs
    assert c1.established and s2.established
    return c1, s1, c2, s2


@pytest.mark.parametrize("cid", [False, True])
def test_protected_data_is_the_record_send_application_data_queues(cid: bool) -> None:
    c1, _, c2, _ = _two_established(cid)
    for data in (b"POST /rd?ep=node", b"", bytes(1000)):
        c1.send_application_data(data)
        assert c2.protect_application_data(data) == b"".join(c1.datagrams_to_send(0.0))
    c2.close()
    with pytest.raises(SessionClosed):
        c2.protect_application_data(b"late")


def test_no_data_is_protected_before_the_handshake_completes() -> None:
    client, _ = pair()
    with pytest.raises(DtlsError):
        client.protect_application_data(b"early")


# What the peer's datagram goes through on its way: kept, sent twice, one bit flipped, sent late
# after others (the replay window), glued to the next one (two records in a datagram), or cut.
_MANGLE = st.sampled_from(["keep", "again", "flip", "late", "glue", "cut"])


def _deliveries(datagrams: list[bytes], mangles: list[str], flips: list[int]) -> list[bytes]:
    out: list[bytes] = []
    held: list[bytes] = []
    for i, datagram in enumerate(datagrams):
        how = mangles[i % len(mangles)]
        if how == "again":
            out += [datagram, datagram]
        elif how == "flip":
            spoiled = bytearray(datagram)
            spoiled[flips[i % len(flips)] % len(spoiled)] ^= 0x10
            out += [bytes(spoiled), datagram]
        elif how == "late":
            held.append(datagram)
        elif how == "glue" and out:
            out[-1] += datagram
        elif how == "cut":
            out.append(datagram[:-1])
        else:
            out.append(datagram)
    return out + held


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans(),
    st.lists(_MANGLE, min_size=1, max_size=8),
    st.lists(st.integers(0, 200), min_size=1, max_size=4),
)
def test_the_fast_receiver_takes_and_drops_what_the_general_one_does(
    cid: bool, mangles: list[str], flips: list[int]
) -> None:
    c1, s1, c2, s2 = _two_established(cid)
    payloads = [f"request {i}".encode() for i in range(12)]
    sent = []
    for payload in payloads:
        c1.send_application_data(payload)
        sent += c1.datagrams_to_send(0.0)
        assert c2.protect_application_data(payload) == sent[-1]
    c1.close()
    sent += c1.datagrams_to_send(0.0)  # close_notify: the general path on both
    general: list[tuple[object, bool]] = []
    fast: list[tuple[object, bool]] = []
    for datagram in _deliveries(sent, mangles, flips):
        newer = s1.receive_datagram(datagram, 1.0)
        general += [(event, newer) for event in events(s1)]
        plain = s2.receive_application_data(datagram, 1.0)
        if plain is not None:
            fast.append((ApplicationData(plain), s2.advanced))
        fast += [(event, s2.advanced) for event in events(s2)]
        assert s2.advanced == newer
        assert s2.datagrams_to_send(1.0) == s1.datagrams_to_send(1.0)
    assert fast == general
    assert ApplicationData(payloads[0]) in [event for event, _ in fast] or mangles[0] in ("cut", "late")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans(),
    st.lists(_MANGLE, min_size=1, max_size=8),
    st.lists(st.integers(0, 200), min_size=1, max_size=4),
)
def test_the_record_opener_takes_what_it_can_and_leaves_the_rest_untouched(
    cid: bool, mangles: list[str], flips: list[int]
) -> None:
    """``open_application_data``: plaintext, or None and the datagram untouched (then the general
    path gives what it would have given), or an error for a record dropped; events and answers
    as the general path's."""
    c1, s1, c2, s2 = _two_established(cid)
    payloads = [f"request {i}".encode() for i in range(12)]
    sent = []
    for payload in payloads:
        c1.send_application_data(payload)
        sent += c1.datagrams_to_send(0.0)
        c2.protect_application_data(payload)
    c1.close()
    sent += c1.datagrams_to_send(0.0)
    general: list[object] = []
    fast: list[object] = []
    for datagram in _deliveries(sent, mangles, flips):
        newer = s1.receive_datagram(datagram, 1.0)
        general += events(s1)
        try:
            plain = s2.open_application_data(datagram)
        except (ProtocolError, SecurityError):
            assert not newer and not s2.advanced
            continue
        if plain is None:
            assert s2.receive_datagram(datagram, 1.0) == newer
        else:
            assert s2.advanced == newer
            fast.append(ApplicationData(plain))
        fast += events(s2)
        assert s2.datagrams_to_send(1.0) == s1.datagrams_to_send(1.0)
    assert fast == general


def test_the_record_opener_raises_for_a_replay_and_a_forgery() -> None:
    c1, _, _, s2 = _two_established(cid=False)
    first, second = c1.protect_application_data(b"first"), c1.protect_application_data(b"second")
    with pytest.raises(BadRecordMac):
        s2.open_application_data(second[:-1] + bytes((second[-1] ^ 1,)))
    assert s2.open_application_data(second) == b"second" and s2.advanced
    with pytest.raises(RecordDropped):
        s2.open_application_data(second)
    assert not s2.advanced
    assert s2.open_application_data(first) == b"first" and not s2.advanced  # older, in the window
    with pytest.raises(RecordDropped):
        s2.open_application_data(first)
    assert s2.open_application_data(second[:12]) is None  # shorter than a header: not its form
    assert events(s2) == []


def test_the_record_opener_refuses_records_too_short_or_too_long_to_be_taken() -> None:
    """A record whose length leaves no room for the nonce and the tag cannot authenticate (RFC 5246
    §6.2.3.3); one longer than 2^14 bytes of plaintext with them is a record_overflow (RFC 5246
    §6.2.3): both raise before the AEAD and move nothing; the next genuine record is taken."""
    c1, _, _, s2 = _two_established(cid=False)
    genuine = c1.protect_application_data(b"GET /3/0")
    head = genuine[:11]  # type, version, epoch 1, the next sequence number
    for length, error in ((15, BadRecordMac), (MAX_PLAINTEXT + 8 + 8 + 1, RecordOverflow)):
        with pytest.raises(error):
            s2.open_application_data(head + length.to_bytes(2, "big") + bytes(length))
        assert not s2.advanced
    assert s2.open_application_data(genuine) == b"GET /3/0" and s2.advanced


def test_the_record_opener_takes_cid_records_and_raises_for_a_replay_and_a_forgery() -> None:
    """RFC 9146 §4, §6: a tls12_cid record with our CID opens on the direct path too; a replay or
    a forgery raises and leaves the window (and so the session's address) as it was."""
    c1, _, _, s2 = _two_established(cid=True)
    first, second = c1.protect_application_data(b"first"), c1.protect_application_data(b"second")
    assert second[0] == TLS12_CID and second[11 : 11 + len(s2.own_cid)] == s2.own_cid
    with pytest.raises(BadRecordMac):
        s2.open_application_data(second[:-1] + bytes((second[-1] ^ 1,)))
    assert not s2.advanced
    assert s2.open_application_data(second) == b"second" and s2.advanced
    with pytest.raises(RecordDropped):
        s2.open_application_data(second)
    assert not s2.advanced
    assert s2.open_application_data(first) == b"first" and not s2.advanced  # older, in the window
    with pytest.raises(RecordDropped):
        s2.open_application_data(first)
    other_cid = second[:11] + bytes((second[11] ^ 1,)) + second[12:]
    assert s2.open_application_data(other_cid) is None  # not our CID: the general path drops it
    assert s2.open_application_data(second[:14]) is None  # shorter than its header: not its form
    assert events(s2) == []


def test_the_last_sequence_number_is_sent_once() -> None:
    """RFC 6347 §4.1: the sequence number never wraps; past the last one nothing is sealed."""
    c1, _, _, _ = _two_established(cid=False)
    [record] = parse_datagram(c1.protect_application_data(b"x"))
    state = c1.export_state(margin=MAX_SEQUENCE - record.sequence - 1)  # the next one: MAX_SEQUENCE
    last = DtlsConnection.import_state(state, client_config(), 0.0)
    assert [r.sequence for r in parse_datagram(last.protect_application_data(b"a"))] == [MAX_SEQUENCE]
    with pytest.raises(RecordError):
        last.protect_application_data(b"b")


def test_a_close_notify_goes_through_the_general_path() -> None:
    c1, _, _, s2 = _two_established(cid=True)
    after = c1.protect_application_data(b"after")
    c1.close()
    [alert] = c1.datagrams_to_send(0.0)
    assert s2.receive_application_data(alert, 0.0) is None
    assert events(s2) == [ConnectionClosed("close_notify")]
    assert s2.datagrams_to_send(0.0)  # its own close_notify in answer (RFC 5246 §7.2.1)
    assert s2.receive_application_data(after, 0.0) is None  # nothing is taken once closed
    assert events(s2) == []


@given(st.binary(max_size=40), st.sampled_from([APPLICATION_DATA, ALERT, HANDSHAKE]), st.integers(0, 3))
def test_a_cid_record_opens_to_its_type_and_content_with_or_without_padding(
    content: bytes, content_type: int, padding: int
) -> None:
    protection = AeadProtection(AES_128_CCM_8, KEY, SALT, padding)
    wire = protection.seal_record(1, 9, content_type, content, b"\x2a\x00")
    [record] = parse_datagram(wire, 2)
    assert protection.open(record.seq_num, TLS12_CID, DTLS_1_2, record.fragment, b"\x2a\x00") == (
        content_type,
        content,
    )


@given(
    st.binary(max_size=40),
    st.sampled_from([APPLICATION_DATA, ALERT, HANDSHAKE]),
    st.integers(0, 3),
    st.binary(min_size=1, max_size=8),
    st.integers(0, MAX_SEQUENCE),
)
def test_a_cid_datagram_opens_and_seals_as_the_general_forms(
    content: bytes, content_type: int, padding: int, cid: bytes, sequence: int
) -> None:
    """``open_cid_datagram`` and ``seal_cid_application`` against ``seal_record`` and ``open``
    (RFC 9146 §4, §5): the same bytes on the wire, the same DTLSInnerPlaintext out."""
    protection = AeadProtection(AES_128_CCM_8, KEY, SALT, padding)
    wire = protection.seal_record(1, sequence, content_type, content, cid)
    inner = protection.open_cid_datagram(wire, 13 + len(cid))
    assert inner == content + bytes((content_type,)) + bytes(padding)
    if content_type == APPLICATION_DATA:
        assert protection.seal_cid_application((1 << 48) | sequence, content, cid) == wire
    with pytest.raises(BadRecordMac):
        protection.open_cid_datagram(wire[:-1] + bytes((wire[-1] ^ 1,)), 13 + len(cid))
    with pytest.raises(BadRecordMac):  # another CID in the header: other additional data
        protection.open_cid_datagram(wire[:11] + bytes((wire[11] ^ 1,)) + wire[12:], 13 + len(cid))
    with pytest.raises(BadRecordMac):
        protection.open_cid_datagram(wire[: 13 + len(cid) + 15], 13 + len(cid))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(st.integers(-70, 4), min_size=1, max_size=150))
@example(False, [1, 2, 1, 1, -2])
@example(True, [1, 2, 1, 1, -2])
def test_the_record_opener_keeps_the_replay_window_of_a_set_of_everything_taken(
    cid: bool, steps: list[int]
) -> None:
    """RFC 6347 §4.1.2.6 on the direct path, whatever order records come in (in order, after a
    gap, late, again, far behind): a record is taken once, within 64 of the newest, and
    ``advanced`` is True exactly for one above every record taken before."""
    c1, _, _, s2 = _two_established(cid)
    datagrams = [c1.protect_application_data(b"%d" % n) for n in range(200)]
    order = list(accumulate(steps, lambda at, step: min(max(at + step, 0), 199), initial=0))
    taken: set[int] = set()
    for n in order + sorted(order) + list(range(200)):
        highest = max(taken, default=-1)
        new = n > highest or (highest - n < 64 and n not in taken)
        try:
            plain = s2.open_application_data(datagrams[n])
        except RecordDropped:
            assert not new and not s2.advanced
            continue
        assert new and plain == b"%d" % n
        assert s2.advanced is (n > highest)
        taken.add(n)
    assert taken >= set(range(200 - 64, 200))


def test_a_replay_and_a_forgery_are_dropped_and_do_not_move_the_window() -> None:
    c1, _, _, s2 = _two_established(cid=False)
    c1.send_application_data(b"first")
    [first] = c1.datagrams_to_send(0.0)
    c1.send_application_data(b"second")
    [second] = c1.datagrams_to_send(0.0)
    forged = second[:-1] + bytes((second[-1] ^ 1,))
    assert s2.receive_application_data(forged, 0.0) is None and not s2.advanced
    assert s2.receive_application_data(second, 0.0) == b"second" and s2.advanced
    assert s2.receive_application_data(second, 0.0) is None and not s2.advanced
    assert s2.receive_application_data(first, 0.0) == b"first" and not s2.advanced  # older, in the window
    assert s2.receive_application_data(first, 0.0) is None
    assert events(s2) == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.binary(max_size=80), st.integers(0, 40))
def test_any_datagram_is_taken_or_dropped_never_raised(cid: bool, tail: bytes, cut: int) -> None:
    # A genuine header with anything after it, and anything at all.
    c1, _, _, s2 = _two_established(cid)
    genuine = c1.protect_application_data(b"GET /3/0/0")
    for datagram in (genuine[: 13 + (6 if cid else 0) + 2] + tail, tail, genuine[:cut], genuine + tail):
        plain = s2.receive_application_data(datagram, 1.0)
        assert plain is None or isinstance(plain, bytes)
    assert s2.established


# --- the direct path keeps the suite's protection and the peer's limits ------------------------


@pytest.mark.parametrize("cid", [True, False], ids=["CID", "no-CID"])
def test_a_cbc_connection_takes_the_direct_path_too(cid: bool) -> None:
    """MAC-then-encrypt records (RFC 5246 §6.2.3.2) go through the same calls: sealed in the
    general framing, opened straight from the datagram."""
    cbc = {"psk_suites": (), "cbc_suites": (TLS_PSK_WITH_AES_128_CBC_SHA256,), "connection_id": cid}
    client, server = pair(server_config(**cbc), client_config(**cbc))
    run(client, server)
    assert client.cipher_suite == server.cipher_suite == TLS_PSK_WITH_AES_128_CBC_SHA256
    events(client), events(server)
    for n in range(3):
        datagram = client.protect_application_data(b"GET /3/0 %d" % n)
        assert server.receive_application_data(datagram, 1.0) == b"GET /3/0 %d" % n
        assert server.receive_application_data(datagram, 1.0) is None  # a replay
    assert events(server) == []


def test_the_direct_paths_keep_the_record_size_limits() -> None:
    """RFC 8449 §4: a sender stays within the peer's limit; a record over our own limit ends the
    connection with record_overflow, whichever path it arrives by."""
    client, server = pair(server_config(record_size_limit=256), client_config(record_size_limit=512))
    run(client, server)
    events(client), events(server)
    limit = client.max_application_data
    assert limit < 256
    assert server.receive_application_data(client.protect_application_data(bytes(limit)), 1.0) == bytes(limit)
    with pytest.raises(DtlsError, match="does not fit"):
        client.protect_application_data(bytes(limit + 1))
    # A client that ignores the limit (its knowledge of it taken away, as a faulty peer's).
    sender, receiver = pair(server_config(record_size_limit=256), client_config())
    run(sender, receiver)
    events(sender), events(receiver)
    sender._limits = SizeLimits(send=MAX_PLAINTEXT, receive=None)  # type: ignore[attr-defined]
    assert receiver.receive_application_data(sender.protect_application_data(bytes(300)), 1.0) is None
    assert receiver.closed
    assert [type(e) for e in events(receiver)] == [ConnectionClosed]
