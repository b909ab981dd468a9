"""The deduplicator alone (RFC 7252 §4.5), on a virtual clock: no endpoint, no sockets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.dedup import Deduplicator, SeenMessages

A, B = ("10.0.0.1", 5683), ("10.0.0.2", 5683)
CON_LIFE, NON_LIFE = 247.0, 145.0


def make(max_entries: int = 100, rotations: list[float] | None = None) -> Deduplicator:
    d = Deduplicator(CON_LIFE, NON_LIFE, max_entries, rotations.append if rotations is not None else None)
    return d


def receive(d: Deduplicator, addr: object, mid: int, con: bool, now: float) -> SeenMessages | bytes | None:
    d.rx_at = now  # as the endpoint does for every datagram
    return d.record(addr, mid, con, now)


def test_a_new_message_is_recorded_and_returns_the_peer_record() -> None:
    d = make()
    seen = receive(d, A, 7, True, 0.0)
    assert isinstance(seen, SeenMessages) and seen.addr == A
    assert seen.expiry(7) == CON_LIFE
    assert len(d) == 1


def test_a_duplicate_con_gets_the_cached_reply_and_a_duplicate_non_nothing() -> None:
    d = make()
    receive(d, A, 7, True, 0.0)
    assert receive(d, A, 7, True, 1.0) == b""  # no reply cached yet: nothing to send
    d.cache_reply(A, 7, b"ack")
    assert receive(d, A, 7, True, 2.0) == b"ack"
    receive(d, A, 8, False, 2.0)
    assert receive(d, A, 8, False, 3.0) is None
    assert len(d) == 2  # duplicates are not recorded again


def test_message_ids_are_per_peer() -> None:
    d = make()
    receive(d, A, 7, True, 0.0)
    assert isinstance(receive(d, B, 7, True, 0.0), SeenMessages)


def test_an_id_is_new_again_after_its_lifetime_and_the_old_reply_is_forgotten() -> None:
    d = make()
    receive(d, A, 8, False, 0.0)
    d.cache_reply(A, 8, b"old")
    assert receive(d, A, 8, False, NON_LIFE - 1) is None
    seen = receive(d, A, 8, True, NON_LIFE)
    assert isinstance(seen, SeenMessages)
    assert seen.reply_for(8) == b""


def test_a_full_generation_rotates_and_the_older_one_still_answers() -> None:
    rotations: list[float] = []
    d = make(max_entries=4, rotations=rotations)  # two entries per generation
    receive(d, A, 1, True, 0.0)
    d.cache_reply(A, 1, b"one")
    receive(d, A, 2, True, 0.0)
    receive(d, A, 3, True, 0.0)  # the first generation is full: it becomes the older one
    assert d.count == 1 and d.old_count == 2
    assert receive(d, A, 1, True, 1.0) == b"one"
    receive(d, A, 4, True, 1.0)
    receive(d, A, 5, True, 1.0)  # and again: the first generation goes whole (the cap wins)
    assert isinstance(receive(d, A, 1, True, 2.0), SeenMessages)
    assert rotations == [0.0, 0.0, 1.0]  # the first datagram starts the first generation


def test_expiry_runs_on_the_timer_without_datagrams() -> None:
    d = make()
    receive(d, A, 1, True, 0.0)
    receive(d, B, 2, False, 0.0)
    assert d.next_expiry() == max(CON_LIFE, NON_LIFE)
    d.expire(100.0)
    assert len(d) == 2
    d.expire(d.next_expiry())
    assert len(d) == 0 and not d.current and not d.older


def test_a_generation_that_lived_its_span_rotates_on_the_timer_then_goes() -> None:
    d = make()
    receive(d, A, 1, True, 0.0)
    receive(d, A, 2, True, 200.0)  # keeps the peer active
    d.expire(CON_LIFE)  # the first generation has lived its span: it becomes the older one
    assert d.count == 0 and d.old_count == 2
    assert d.next_expiry() == 200.0 + CON_LIFE
    assert receive(d, A, 2, True, 300.0) == b""  # still known through the older generation
    d.expire(200.0 + CON_LIFE)
    assert d.old_count == 0


def test_cache_reply_for_an_unknown_id_keeps_nothing() -> None:
    d = make()
    d.cache_reply(A, 9, b"x")
    receive(d, A, 1, True, 0.0)
    d.cache_reply(A, 9, b"x")
    assert isinstance(receive(d, A, 9, True, 1.0), SeenMessages)


def test_a_peers_first_message_is_held_without_dicts_and_its_second_brings_them() -> None:
    """Most peers send one message in a generation: it is kept in the record's own slots."""
    d = make()
    seen = receive(d, A, 7, True, 0.0)
    assert isinstance(seen, SeenMessages) and seen.expires is None and seen.replies is None
    d.cache_reply(A, 7, b"ack7")
    assert seen.expires is None and receive(d, A, 7, True, 1.0) == b"ack7"
    # The second message: both are kept in the dicts from now on, the first's reply too.
    assert receive(d, A, 9, True, 2.0) is seen
    assert seen.expires == {7: CON_LIFE, 9: 2.0 + CON_LIFE} and seen.replies == {7: b"ack7"}
    assert seen.mid == -1 and seen.reply is None
    d.cache_reply(A, 9, b"ack9")
    assert receive(d, A, 9, True, 3.0) == b"ack9" and receive(d, A, 7, True, 3.0) == b"ack7"
    # Forgotten, a message is new again, in either form.
    d.forget(A, 9)
    assert isinstance(receive(d, A, 9, True, 4.0), SeenMessages)
    other = receive(d, B, 5, False, 4.0)
    assert isinstance(other, SeenMessages) and other.expires is None
    d.forget(B, 5)
    assert other.expiry(5) is None and receive(d, B, 5, False, 5.0) is other
    # A reply for a message not held is not kept.
    d.cache_reply(B, 6, b"stray")
    assert other.reply_for(6) == b"" and other.reply is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["record", "reply", "forget"]),
            st.sampled_from([A, B]),
            st.integers(0, 3),
            st.booleans(),
            st.floats(0.0, 200.0),
        ),
        max_size=40,
    )
)
def test_records_answer_as_a_plain_table_of_ids_would(
    steps: list[tuple[str, object, int, bool, float]],
) -> None:
    """Within one generation (no rotation), the records with their compact first message answer
    every record, reply and forget as a plain table of (peer, Message ID) does."""
    d = make(max_entries=1000)
    table: dict[tuple[object, int], tuple[float, bytes]] = {}  # (peer, mid) -> (expiry, reply)
    now = 0.0
    for action, addr, mid, con, dt in sorted(steps, key=lambda step: step[4]):
        now = max(now, dt)
        key = (addr, mid)
        if action == "reply":
            d.cache_reply(addr, mid, b"r%d" % mid)
            if key in table:
                table[key] = (table[key][0], b"r%d" % mid)
        elif action == "forget":
            d.forget(addr, mid)
            table.pop(key, None)
        else:
            got = receive(d, addr, mid, con, now)
            held = table.get(key)
            if held is not None and held[0] > now:
                assert got == (held[1] if con else None)
            else:
                assert isinstance(got, SeenMessages)
                table[key] = ((now + CON_LIFE) if con else (now + NON_LIFE), b"")
