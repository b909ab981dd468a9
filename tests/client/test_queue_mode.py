"""Queue mode's state alone (LwM2M-TS-Core 1.2 §6.5), on a virtual clock."""

from __future__ import annotations

from lwm2m.client.queue_mode import QueueMode


def make(may_sleep: bool = True) -> tuple[QueueMode, list[int]]:
    asked: list[int] = []

    def fall_asleep() -> bool:
        asked.append(1)
        return may_sleep

    return QueueMode(10.0, enabled=True, fall_asleep=fall_asleep), asked


def test_asleep_awake_time_after_the_last_exchange() -> None:
    queue, asked = make()
    assert queue.get_timer() is None and not queue.asleep
    queue.touch(100.0)
    queue.touch(104.0)  # a later exchange moves the window
    assert queue.get_timer() == 114.0
    queue.handle_timer(110.0)  # early (the first deadline): still awake
    assert not queue.asleep and asked == []
    queue.handle_timer(114.0)
    assert queue.asleep and asked == [1] and queue.get_timer() is None


def test_wake_and_touch() -> None:
    queue, _ = make()
    queue.touch(0.0)
    queue.handle_timer(10.0)
    assert queue.asleep
    queue.touch(20.0)  # an exchange alone does not wake it: the waking Update does
    assert queue.asleep
    queue.wake()
    assert not queue.asleep and queue.get_timer() == 30.0


def test_it_stays_awake_when_the_client_may_not_sleep() -> None:
    queue, asked = make(may_sleep=False)  # e.g. not registered
    queue.touch(0.0)
    queue.handle_timer(10.0)
    assert not queue.asleep and asked == [1]


def test_disabled_and_stopped() -> None:
    queue = QueueMode(10.0, enabled=False, fall_asleep=lambda: True)
    queue.touch(0.0)
    assert queue.get_timer() is None
    queue, _ = make()
    queue.touch(0.0)
    queue.handle_timer(10.0)
    queue.stop()
    assert not queue.asleep and queue.get_timer() is None
