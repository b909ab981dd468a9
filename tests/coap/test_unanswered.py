"""The CON requests not answered yet, alone (RFC 7252 §5.2.2), on a virtual clock."""

from __future__ import annotations

from lwm2m.coap.dedup import SeenMessages
from lwm2m.coap.unanswered import Unanswered

A = ("10.0.0.1", 5683)
SEEN = SeenMessages(A, None)


def test_an_answer_given_at_once_finds_its_record() -> None:
    u = Unanswered(max_pending=10, delay=1.0)
    assert u.add((A, 1), SEEN, 0.0) is None
    assert u.fresh.pop((A, 1)) is SEEN  # as the endpoint's respond() takes it
    assert len(u) == 0 and u.next_due() == float("inf")


def test_requests_held_on_get_an_empty_ack_after_the_delay_in_order() -> None:
    u = Unanswered(max_pending=10, delay=1.0)
    u.add((A, 1), SEEN, 0.0)
    u.add((A, 2), SEEN, 0.5)  # time moved on: the first goes on to the ordered table
    u.add((A, 3), SEEN, 0.5)
    assert u.next_due() == 1.0
    assert u.due(0.9) == []
    assert u.due(1.0) == [(A, 1)]
    assert u.unacked.pop((A, 2)) == 0.5  # answered after its batch was settled
    assert u.due(10.0) == [(A, 3)]
    assert len(u) == 0


def test_over_max_pending_the_oldest_is_acknowledged_at_once() -> None:
    u = Unanswered(max_pending=2, delay=5.0)
    assert u.add((A, 1), SEEN, 0.0) is None
    assert u.add((A, 2), SEEN, 0.0) is None
    assert u.add((A, 3), SEEN, 0.0) == (A, 1)  # its answer goes as a separate response
    assert len(u) == 2
    assert u.add((A, 4), SEEN, 1.0) == (A, 2)
    assert u.due(5.0) == [(A, 3)]
    assert u.due(6.0) == [(A, 4)]


def test_no_delay_means_never_acknowledged_empty() -> None:
    u = Unanswered(max_pending=10, delay=None)
    u.add((A, 1), SEEN, 0.0)
    assert u.next_due() == float("inf")
    assert u.due(1e9) == []
    assert len(u) == 1
