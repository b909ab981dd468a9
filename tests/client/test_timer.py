"""LoopTimer: a sans-IO part driven at the times it asks for, on a stand-in for the asyncio loop
with a virtual clock (call_at, call_soon and time are all LoopTimer uses of a loop); Flag, the light
asyncio.Event of the registration loop, on the running loop; Alarms, the deadlines of many
sleepers on one timer, on the virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from lwm2m.client.timer import IMMEDIATELY, Alarms, Flag, LoopTimer, alarms


class Handle:
    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> Handle:
        handle = Handle(when, callback, args)
        self.handles.append(handle)
        return handle

    def call_soon(self, callback: Callable[..., None], *args: Any) -> Handle:
        return self.call_at(IMMEDIATELY, callback, *args)

    def armed(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]

    def run_until(self, t: float) -> None:
        """Run the handles due by ``t`` in time order, the clock following them."""
        while due := sorted((h for h in self.armed() if h.when <= t), key=lambda h: h.when):
            handle = due[0]
            self.handles.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback(*handle.args)
        self.now = t


class Part:
    def __init__(self) -> None:
        self.deadline: float | None = None
        self.calls: list[float] = []

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.calls.append(now)
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None


def make() -> tuple[VirtualLoop, Part, LoopTimer]:
    loop = VirtualLoop()
    part = Part()
    return loop, part, LoopTimer(part, loop)  # type: ignore[arg-type]


def test_it_calls_the_part_at_its_deadline_never_before() -> None:
    loop, part, timer = make()
    part.deadline = 101.0
    timer.update()
    loop.run_until(100.9)
    assert part.calls == []
    loop.run_until(102.0)
    assert part.calls == [101.0] and part.deadline is None and loop.armed() == []


def test_an_early_run_of_the_loop_still_shows_the_part_its_deadline() -> None:
    loop, part, timer = make()
    part.deadline = 101.0
    timer.update()
    [handle] = loop.armed()
    loop.handles.clear()
    loop.now = 100.999  # asyncio may run a timer up to its clock resolution early
    handle.callback(*handle.args)
    assert part.calls == [101.0] and part.deadline is None


def test_immediately_is_the_next_step_and_close_cancels() -> None:
    loop, part, timer = make()
    part.deadline = IMMEDIATELY
    timer.update()
    assert part.calls == []
    loop.run_until(loop.now)
    assert part.calls == [100.0]
    part.deadline = 105.0
    timer.update()
    timer.close()
    loop.run_until(110.0)
    assert part.calls == [100.0]


def test_a_later_deadline_keeps_the_armed_timer_which_then_re_arms() -> None:
    loop, part, timer = make()
    part.deadline = 101.0
    timer.update()
    part.deadline = 103.0  # moved later (an exchange in queue mode): no new timer now
    timer.update()
    assert len(loop.armed()) == 1
    loop.run_until(102.0)
    assert part.calls == [101.0] and part.deadline == 103.0  # early call: nothing due yet
    assert [h.when for h in loop.armed()] == [103.0]
    loop.run_until(104.0)
    assert part.calls == [101.0, 103.0] and part.deadline is None


def test_an_earlier_deadline_replaces_the_armed_timer() -> None:
    loop, part, timer = make()
    part.deadline = 105.0
    timer.update()
    part.deadline = 101.0
    timer.update()
    assert [h.when for h in loop.armed()] == [101.0]


async def test_on_the_running_loop() -> None:
    part = Part()
    timer = LoopTimer(part)
    part.deadline = IMMEDIATELY
    timer.update()
    await asyncio.sleep(0)
    assert len(part.calls) == 1


async def test_flag_wakes_every_waiter_and_a_set_flag_does_not_wait() -> None:
    flag = Flag()
    assert not flag.is_set()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await flag.wait()
        woken.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert woken == []
    flag.set()
    flag.clear()  # cleared before the waiters run: they were woken all the same (as asyncio.Event)
    await asyncio.gather(*tasks)
    assert sorted(woken) == [0, 1, 2]
    assert not flag.is_set()
    flag.set()
    flag.set()
    assert flag.is_set()
    assert await asyncio.wait_for(flag.wait(), 0.1) is True  # set: returns at once


async def test_flag_wait_times_out_and_a_later_set_still_wakes_the_others() -> None:
    flag = Flag()
    loop = asyncio.get_running_loop()
    t = loop.time()
    assert await flag.wait(0.02) is False  # its own timeout: False, not an exception
    assert loop.time() - t >= 0.015
    with pytest.raises(TimeoutError):  # and a timeout around it cancels it
        async with asyncio.timeout(0.01):
            await flag.wait()
    waiting = [asyncio.create_task(flag.wait(timeout)) for timeout in (None, 5.0)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in waiting)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 0.1) == [True, True]
    assert await flag.wait(0.0) is True  # set: True at once, whatever the timeout


# --- Alarms ---------------------------------------------------------------------------------------


class Sleeper:
    def __init__(self, name: str, told: list[tuple[str, int, float]], loop: VirtualLoop) -> None:
        self.name, self.told, self.loop = name, told, loop

    def alarm(self, token: int) -> None:
        self.told.append((self.name, token, self.loop.now))


def make_alarms() -> tuple[VirtualLoop, Alarms, list[tuple[str, int, float]]]:
    loop = VirtualLoop()
    return loop, Alarms(loop), []  # type: ignore[arg-type]


def test_alarms_tell_each_sleeper_at_its_deadline_in_order_on_one_timer() -> None:
    loop, heap, told = make_alarms()
    a, b, c = (Sleeper(n, told, loop) for n in "abc")
    ta = heap.add(130.0, a)
    tb = heap.add(110.0, b)
    tc = heap.add(120.0, c)
    assert 0 not in (ta, tb, tc) and len({ta, tb, tc}) == 3
    assert [h.when for h in loop.armed()] == [110.0]  # one handle, at the earliest
    loop.run_until(115.0)
    assert told == [("b", tb, 110.0)] and len(heap) == 2
    loop.run_until(200.0)
    assert told == [("b", tb, 110.0), ("c", tc, 120.0), ("a", ta, 130.0)]
    assert loop.armed() == [] and len(heap) == 0


def test_a_cancelled_alarm_is_never_told_and_a_later_one_still_is() -> None:
    loop, heap, told = make_alarms()
    a, b = Sleeper("a", told, loop), Sleeper("b", told, loop)
    ta = heap.add(110.0, a)
    tb = heap.add(120.0, b)
    heap.cancel(ta)
    assert len(heap) == 1
    loop.run_until(200.0)
    assert told == [("b", tb, 120.0)]


def test_an_alarm_due_within_the_clock_slack_goes_with_the_earlier_one() -> None:
    loop, heap, told = make_alarms()
    a, b = Sleeper("a", told, loop), Sleeper("b", told, loop)
    heap.add(110.0, a)
    heap.add(110.0005, b)
    loop.run_until(110.0)
    assert [n for n, _, _ in told] == ["a", "b"]


def test_cancelled_alarms_are_dropped_once_they_are_half_the_heap() -> None:
    loop, heap, told = make_alarms()
    sleepers = [Sleeper(str(i), told, loop) for i in range(100)]
    tokens = [heap.add(200.0 + i, s) for i, s in enumerate(sleepers)]
    for token in tokens[:51]:
        heap.cancel(token)
    assert len(heap._heap) == 49 and not heap._cancelled
    loop.run_until(400.0)
    assert [n for n, _, _ in told] == [str(i) for i in range(51, 100)]


def test_a_failing_sleeper_does_not_keep_the_others_from_their_alarms() -> None:
    loop, heap, told = make_alarms()

    class Failing:
        def alarm(self, token: int) -> None:
            raise RuntimeError("boom")

    heap.add(110.0, Failing())
    heap.add(110.0, Sleeper("b", told, loop))
    heap.add(150.0, Sleeper("c", told, loop))
    loop.run_until(200.0)
    assert [n for n, _, _ in told] == ["b", "c"]


async def test_alarms_of_the_running_loop() -> None:
    heap = alarms()
    assert alarms() is heap
    loop = asyncio.get_running_loop()
    told: list[int] = []

    class Waker:
        def alarm(self, token: int) -> None:
            told.append(token)

    token = heap.add(loop.time() + 0.01, Waker())
    await asyncio.sleep(0.05)
    assert told == [token]
