"""The query of ``GET /api/clients``: page size, cursor and filters, checked before any work.

A cursor is opaque to callers: the base64url form (RFC 4648 §5, unpadded) of the
last endpoint a page looked at, so the next page starts right after it in the
store's index, whatever registered or left in between.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lwm2m.errors import InvalidRequest
from lwm2m.protocol.registration import Registration

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
VIEW_CHUNK = 100  # registrations turned into JSON between two yields to the event loop
GLOB_CHARS = "*?["
MAX_CURSOR = 2048  # characters; an endpoint name is far shorter
MAX_NAME_FILTER = 1024  # characters of the endpoint filter


def encode_cursor(endpoint: str) -> str:
    return base64.urlsafe_b64encode(endpoint.encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    if not cursor or len(cursor) > MAX_CURSOR:
        raise InvalidRequest(f"cursor: {cursor[:40]!r} is not a cursor from a previous page")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        endpoint = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"cursor: {cursor[:40]!r} is not a cursor from a previous page") from None
    if encode_cursor(endpoint) != cursor:  # one spelling per cursor: no padding, no stray bits
        raise InvalidRequest(f"cursor: {cursor[:40]!r} is not a cursor from a previous page")
    return endpoint


@dataclass(frozen=True, slots=True)
class ClientQuery:
    """``limit``, ``cursor`` and the filters: ``endpoint`` (a prefix, or a glob with ``*``, ``?``
    or ``[``), ``object`` (an object ID among the client's links) and ``online``."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None
    prefix: str = ""
    glob: str | None = None  # the endpoint filter, when it is a glob (the store applies it)
    object_id: int | None = None
    online: bool | None = None

    def matcher(self, state: Callable[[Registration], bool] | None) -> Callable[[Registration], bool] | None:
        """The filter a page applies beyond the endpoint name (None when there is none): the
        object, and ``state`` (the caller's online test, which needs the server)."""
        tests: list[Callable[[Registration], bool]] = []
        if self.object_id is not None:
            object_id = self.object_id
            tests.append(lambda r: r.supports(object_id))
        if state is not None:
            tests.append(state)
        if not tests:
            return None
        if len(tests) == 1:
            return tests[0]
        return lambda r: all(test(r) for test in tests)


def client_query(params: Mapping[str, str]) -> ClientQuery:
    """The query of a listing, or InvalidRequest naming the bad value."""
    raw_limit = params.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise InvalidRequest(
                f"limit: {raw_limit[:40]!r} is not a number of clients from 1 to {MAX_LIMIT}"
            )
        limit = int(raw_limit)
    raw_cursor = params.get("cursor")
    after = None if raw_cursor is None or raw_cursor == "" else decode_cursor(raw_cursor)
    name = params.get("endpoint") or ""
    if len(name) > MAX_NAME_FILTER:
        raise InvalidRequest(f"endpoint: a filter of {len(name)} characters is longer than any endpoint name")
    # A glob's literal head bounds the walk of the index; the store matches the rest by name.
    prefix, glob = (name, None) if not any(c in name for c in GLOB_CHARS) else ("", name)
    object_id = None
    raw_object = params.get("object")
    if raw_object:
        if not (raw_object.isascii() and raw_object.isdigit()) or int(raw_object) > 65535:
            raise InvalidRequest(f"object: {raw_object[:40]!r} is not an object ID (0-65535)")
        object_id = int(raw_object)
    online = None
    raw_online = params.get("online")
    if raw_online:
        if raw_online.lower() not in ("true", "false"):
            raise InvalidRequest(f"online: {raw_online[:40]!r} is not true or false")
        online = raw_online.lower() == "true"
    return ClientQuery(limit, after, prefix, glob, object_id, online)
