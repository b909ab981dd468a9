"""The deduplicator alone (RFC 7252 §4.5), on a virtual clock: no endpoint, no sockets."""

from __future__ import annotations

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
    assert seen.expires[7] == CON_LIFE
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
    assert 8 not in seen.replies


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
