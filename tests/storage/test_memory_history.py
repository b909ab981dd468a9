"""The memory history's retention by age: from the oldest arrival on, at the cost of what goes."""

from __future__ import annotations

from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.storage.base import HistoryRetention
from lwm2m.storage.memory import MemoryHistoryStore

TEMPERATURE = Path.parse("/3303/0/5700")


async def test_prune_by_age_drops_the_oldest_arrivals_only() -> None:
    history = MemoryHistoryStore(HistoryRetention(max_records=1000, max_age=100.0))
    for i in range(500):
        history.add("dev", [Record(TEMPERATURE, float(i))], received_at=float(i))
    assert await history.prune(now=450.0) == 350  # received before 350
    kept = await history.query("dev", newest_first=False)
    assert [e.record.value for e in kept] == [float(i) for i in range(350, 500)]
    assert await history.prune(now=450.0) == 0


async def test_a_value_out_of_arrival_order_waits_for_the_one_before_it() -> None:
    history = MemoryHistoryStore(HistoryRetention(max_records=None, max_age=100.0))
    history.add("dev", [Record(TEMPERATURE, 1.0)], received_at=300.0)
    history.add("dev", [Record(TEMPERATURE, 2.0)], received_at=10.0)  # a clock stepped back
    assert await history.prune(now=350.0) == 0
    assert await history.prune(now=450.0) == 2
    assert await history.query("dev") == []
