"""lwm2m.server.clock: the times a server keeps per client, shared within a millisecond."""

from __future__ import annotations

from lwm2m.server.clock import SharedStamps


def test_a_stamp_within_the_resolution_of_the_last_is_the_last_and_at_most_that_early() -> None:
    now = [10.0]
    stamps = SharedStamps(lambda: now[0] + 0.0, resolution=0.5)
    first = stamps()
    now[0] = 10.4
    assert stamps() is first
    now[0] = 10.5  # a whole resolution later: a new stamp
    second = stamps()
    assert second == 10.5 and second is not first
    now[0] = 9.0  # the clock set back
    assert stamps() == 9.0
