"""What the cluster's modules share about values in Redis: replies as text, JSON payloads,
the injectable clock and the node id's form.

The client from :func:`lwm2m.storage.redisconn.connect` answers bytes (it does not decode
responses); :func:`text` takes either, so a client made with ``decode_responses=True`` works
too. Dict payloads and events are compact JSON (the REST API's ``to_dict`` forms are JSON
already); bytes travel as they are.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, TypeAlias

from lwm2m.errors import ClusterPayloadError, ConfigError
from lwm2m.storage.redisconn import RedisClient

Clock: TypeAlias = Callable[[], float]
"""Seconds since the epoch, as :func:`time.time`; every node of a cluster must agree on it
within a small fraction of a lease (NTP), since leases and deadlines are compared across nodes."""

Payload: TypeAlias = "bytes | dict[str, Any]"
"""What the bus carries: opaque bytes, or a dict that encodes as JSON."""

_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_node_id(node_id: str) -> str:
    """``node_id`` if it is 1 to 64 characters of ``A-Z a-z 0-9 . _ -``; it goes between the
    braces of a hash tag (``lwm2m:bus:{node}``), so braces may not appear in it."""
    if not _NODE_ID.fullmatch(node_id):
        raise ConfigError(f"node id {node_id!r}: give 1 to 64 characters of A-Z a-z 0-9 . _ -")
    return node_id


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def honour_cancellation() -> None:
    """Raise CancelledError when the current task was asked to stop and is still running.

    redis-py 8.2 can swallow a cancellation that lands while it sets up a new connection: the
    command then goes on as if nothing happened and a read loop would never end. Every loop
    that blocks in Redis calls this after each read."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def newest_id(redis: RedisClient, key: str) -> str:
    """The id of the newest entry of stream ``key``; ``0-0`` when it is empty or missing. A
    read from this id sees what is added after this call (XREAD's ``$`` would lose what comes
    between two reads)."""
    last = await redis.xrevrange(key, "+", "-", count=1)
    return text(last[0][0]) if last and last[0][0] is not None else "0-0"


def stream_entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream XREAD or XREADGROUP answer (RESP2's list of
    ``[stream, entries]``, or RESP3's dict); none for an empty answer (a read that timed out)."""
    if not response:
        return []
    if isinstance(response, dict):
        (entries,) = response.values()
        return list(entries[0] if entries and isinstance(entries[0], list) else entries)
    return list(response[0][1])


def encode_json(value: dict[str, Any]) -> bytes:
    """Compact JSON of a dict; anything else, or a dict JSON cannot carry, is refused."""
    if not isinstance(value, dict):
        raise ClusterPayloadError(f"expected bytes or a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ClusterPayloadError(f"a dict that does not encode as JSON: {exc}") from exc


def decode_json(data: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClusterPayloadError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ClusterPayloadError(f"expected a JSON object, got {type(value).__name__}")
    return value


def encode_payload(payload: Payload) -> tuple[str, bytes]:
    """(kind, data): ``b`` and the bytes themselves, or ``j`` and the dict's JSON."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return "b", bytes(payload)
    return "j", encode_json(payload)


def decode_payload(kind: str, data: bytes) -> Payload:
    if kind == "b":
        return data
    if kind == "j":
        return decode_json(data)
    raise ClusterPayloadError(f"unknown payload kind {kind!r}")
