"""LoopTimer: a sans-IO part driven on the asyncio loop at the times it asks for."""

from __future__ import annotations

import asyncio

from lwm2m.client.timer import LoopTimer


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


async def test_it_calls_the_part_at_its_deadline_never_before() -> None:
    loop = asyncio.get_running_loop()
    part = Part()
    timer = LoopTimer(part)
    part.deadline = loop.time() + 0.02
    timer.update()
    await asyncio.sleep(0.05)
    assert len(part.calls) == 1 and part.calls[0] >= part.calls[0] and part.deadline is None


async def test_a_past_deadline_runs_at_the_next_step_and_close_cancels() -> None:
    part = Part()
    timer = LoopTimer(part)
    part.deadline = float("-inf")
    timer.update()
    assert part.calls == []
    await asyncio.sleep(0)
    assert len(part.calls) == 1
    part.deadline = asyncio.get_running_loop().time() + 0.01
    timer.update()
    timer.close()
    await asyncio.sleep(0.03)
    assert len(part.calls) == 1


async def test_a_later_deadline_keeps_the_armed_timer_which_then_re_arms() -> None:
    loop = asyncio.get_running_loop()
    part = Part()
    timer = LoopTimer(part)
    first = loop.time() + 0.01
    part.deadline = first
    timer.update()
    part.deadline = first + 0.02  # moved later: no new timer now
    timer.update()
    await asyncio.sleep(0.015)
    assert len(part.calls) == 1 and part.deadline is not None  # early call: nothing due yet
    await asyncio.sleep(0.04)
    assert len(part.calls) == 2 and part.deadline is None
