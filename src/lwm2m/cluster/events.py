"""The fleet's events: one Redis Stream, ``lwm2m:events``, that every node appends to and any
node reads, so that the REST API's Server-Sent Events on any node carry the whole fleet's
events (DESIGN.md, "Where its users outgrow one machine").

An event's id is its stream entry id (``<ms>-<seq>``), which SSE sends as the event's ``id``;
a browser that reconnects, to this node or another, sends it back as ``Last-Event-ID`` (HTML
Living Standard, "Server-sent events" §9.2.4) and ``subscribe(last_event_id)`` carries on
after it. The stream keeps about ``maxlen`` events (XADD MAXLEN ~); an id that has been
trimmed away resumes from the oldest event still kept, so a subscriber that was away too long
misses the trimmed events and nothing else.

Each subscriber is one blocking XREAD loop (one connection while it waits).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from lwm2m.cluster.encoding import (
    decode_json,
    encode_json,
    honour_cancellation,
    newest_id,
    stream_entries,
    text,
)
from lwm2m.errors import ConfigError, InvalidEventId
from lwm2m.storage.redisconn import RedisClient

log = logging.getLogger(__name__)

EVENTS_KEY = "lwm2m:events"

# KEYS[1] the stream; ARGV[1] maxlen, ARGV[2..] the events' JSON, in order. Answers their ids.
# One command for a batch: each command costs the publishing node more than it costs Redis.
_PUBLISH = """
local ids = {}
for i = 2, #ARGV do
  ids[i - 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
return ids
"""
PUBLISH_CHUNK = 1000  # events per script call at most

_EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")


def check_event_id(event_id: str) -> str:
    """``event_id`` as a stream entry id (``<ms>-<seq>``); :class:`InvalidEventId` (a 400 in
    the API) for anything else, such as a Last-Event-ID that no node of ours gave."""
    if _EVENT_ID.fullmatch(event_id.strip()):
        return event_id.strip()
    raise InvalidEventId(f"event id {event_id!r}: expected <milliseconds>-<sequence>")


@dataclass(frozen=True)
class EventsConfig:
    """``maxlen``: about how many events the stream keeps. ``block``: seconds one blocking
    read waits before it is issued again. ``batch``: events taken per read."""

    maxlen: int = 100_000
    block: float = 1.0
    batch: int = 100

    def __post_init__(self) -> None:
        for name, count in (("maxlen", self.maxlen), ("batch", self.batch)):
            if not (isinstance(count, int) and count > 0):
                raise ConfigError(f"{name} {count!r}: give a positive integer")
        if not self.block > 0:
            raise ConfigError(f"block {self.block!r}: give a positive number of seconds")


class FleetEvents:
    """Publishing to and reading from the fleet's event stream."""

    def __init__(self, redis: RedisClient, config: EventsConfig | None = None) -> None:
        self.config = config or EventsConfig()
        self._redis = redis
        self._publish = redis.register_script(_PUBLISH)

    async def publish(self, event: dict[str, Any]) -> str:
        """Append ``event`` (a dict that encodes as JSON); returns its id."""
        data = encode_json(event)
        entry_id = await self._redis.xadd(
            EVENTS_KEY, {"e": data}, maxlen=self.config.maxlen, approximate=True
        )
        assert entry_id is not None  # None only with NOMKSTREAM
        return text(entry_id)

    async def publish_many(self, events: list[dict[str, Any]]) -> list[str]:
        """Append ``events`` in order, a script call (one command: the stream is one key, so
        one slot) per :data:`PUBLISH_CHUNK`; returns their ids."""
        ids: list[str] = []
        for start in range(0, len(events), PUBLISH_CHUNK):
            chunk = events[start : start + PUBLISH_CHUNK]
            args: list[Any] = [self.config.maxlen, *(encode_json(event) for event in chunk)]
            ids += [text(entry_id) for entry_id in await self._publish(keys=[EVENTS_KEY], args=args)]
        return ids

    async def last_event_id(self) -> str:
        """The id of the newest event, ``0-0`` when there is none."""
        return await newest_id(self._redis, EVENTS_KEY)

    async def subscribe(self, last_event_id: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event id, event) for every event after ``last_event_id``, then as they come;
        without an id, from now on. Ends only when the consumer stops iterating."""
        last = await self.last_event_id() if last_event_id is None else check_event_id(last_event_id)
        block_ms = max(1, round(self.config.block * 1000))
        while True:
            try:
                response = await self._redis.xread(
                    {EVENTS_KEY: last}, count=self.config.batch, block=block_ms
                )
            except RedisError as exc:  # Redis away for a moment (a restart): read on from ``last``
                honour_cancellation()
                log.warning("fleet events: reading failed, trying again: %s", exc)
                await asyncio.sleep(self.config.block)
                continue
            honour_cancellation()
            for entry_id, fields in stream_entries(response):
                last = text(entry_id)
                yield last, decode_json(fields[b"e"])
