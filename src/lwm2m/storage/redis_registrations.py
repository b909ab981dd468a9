"""Registrations and observations in Redis (the key layout is in :mod:`lwm2m.storage.redis`).

A registration's own hash (``reg:{ep}``) is the truth; the registration-ID keys, the endpoint
listing and the expiry index are separate keys, in other Redis Cluster slots, so a change
cannot update them in one transaction. The writes are ordered so that a crash between them
leaves only what a reader detects: an index entry is written before the record and removed
after it, every read through an index checks the record, and the expiry index never holds a
time later than the record's (a sweep finds an early entry, sees the record still live, and
moves the entry).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from lwm2m.model.path import Path
from lwm2m.protocol.attributes import AttributeChange
from lwm2m.protocol.registration import EndDevice, ObjectLink, Registration
from lwm2m.storage.base import (
    PAGE_SCAN,
    Observation,
    ObservationBinding,
    Reachable,
    RegistrationPage,
    Row,
    check_query,
    collect_page_async,
    glob_matcher,
    name_range,
    prefix_upper,
    reachable_of,
)
from lwm2m.storage.redis_link import (
    CAS_DELETE,
    CHUNK,
    HASH_TAKE,
    RedisLink,
    fetch_all,
    guarded,
    index,
    key,
    text,
    walk_lex,
)

# Registrations a page reads between two yields to the event loop: one pipeline.
REDIS_PAGE_CHUNK = 128

# KEYS[1] reg:{ep}; ARGV id, expires_at, data. Answers the replaced registration's data.
_REG_PUT = """
local old = redis.call('HGET', KEYS[1], 'data')
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'exp', ARGV[2], 'data', ARGV[3])
return old
"""

# The same, only while the stored registration has ID ARGV[1] (an Update, LwM2M-TS-Core §6.2.2).
_REG_UPDATE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return false end
local old = redis.call('HGET', KEYS[1], 'data')
redis.call('HSET', KEYS[1], 'exp', ARGV[2], 'data', ARGV[3])
return old
"""

# Delete it (only if its ID is ARGV[1], when given); answer its data.
_REG_REMOVE = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return false end
local old = redis.call('HGET', KEYS[1], 'data')
redis.call('DEL', KEYS[1])
return old
"""

# The sweep's step on one endpoint: delete the registration only if it is still expired by
# ARGV[1] (an Update that raced in wins). {0}: none; {1, exp}: live until exp; {2, data}: taken.
_REG_EXPIRE = """
local exp = redis.call('HGET', KEYS[1], 'exp')
if not exp then return {0} end
if tonumber(exp) > tonumber(ARGV[1]) then return {1, exp} end
local old = redis.call('HGET', KEYS[1], 'data')
redis.call('DEL', KEYS[1])
return {2, old}
"""

_OBS_PUT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return old
"""

_OBS_REMOVE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return old
"""


# The stored forms are positional MessagePack arrays, not the JSON of ``to_dict``: the field
# names would be half of each value, and a fleet's registrations are most of the Redis memory.
# The first element is the form's version: 2 adds the transport at the end; 3 is form 2 and a
# gateway's end devices (their to_dict forms) after it (a registration without end devices keeps
# form 2); a form 1 value (written before the transport was kept) reads as a registration over UDP.
_FORM = 2
_FORM_GATEWAY = 3
_FORM_WITHOUT_TRANSPORT = 1
_OBSERVATION_FORM = 1  # an observation's, apart


def registration_bytes(r: Registration) -> bytes:
    objects = [[o.object_id, o.instance_id, o.version] for o in r.objects]
    tail: list[object] = [[d.to_dict() for d in r.end_devices]] if r.end_devices else []
    return msgspec.msgpack.encode(
        [
            _FORM_GATEWAY if r.end_devices else _FORM,
            r.endpoint,
            r.registration_id,
            r.address[0],
            r.address[1],
            r.lifetime,
            r.lwm2m_version,
            r.binding,
            r.queue_mode,
            r.sms,
            objects,
            r.root_path,
            r.content_formats,
            r.registered_at,
            r.last_update,
            r.extra,
            r.transport,
            *tail,
        ]
    )


def _registration(data: bytes | str) -> Registration:
    """A stored registration (form 2, form 3 of a gateway, or form 1 from before the transport
    was kept: over UDP); ``msgspec.DecodeError`` for any value that is not one."""
    items = msgspec.msgpack.decode(data if isinstance(data, bytes) else data.encode())
    form = items[0] if isinstance(items, list) and items else None
    transport = "udp"
    devices: list[dict[str, object]] = []
    if form == _FORM_GATEWAY:
        devices = items.pop()
        if not isinstance(devices, list):
            raise msgspec.DecodeError(f"a gateway's end devices {devices!r} are not a list")
    if form in (_FORM, _FORM_GATEWAY):
        transport = items.pop()
        if not isinstance(transport, str):
            raise msgspec.DecodeError(f"a registration's transport {transport!r} is not a name")
    elif form != _FORM_WITHOUT_TRANSPORT:
        raise msgspec.DecodeError(f"a registration in stored form {form!r}, not {_FORM}")
    try:
        (
            form,
            ep,
            rid,
            host,
            port,
            lifetime,
            version,
            binding,
            queue,
            sms,
            objects,
            root,
            formats,
            at,
            last,
            extra,
        ) = items
        return Registration(
            endpoint=ep,
            registration_id=rid,
            address=(host, port),
            lifetime=lifetime,
            lwm2m_version=version,
            binding=binding,
            queue_mode=queue,
            sms=sms,
            objects=tuple(ObjectLink(o, i, v) for o, i, v in objects),
            root_path=root,
            content_formats=tuple(formats),
            registered_at=float(at),
            last_update=float(last),
            extra=tuple((k, v) for k, v in extra),
            transport=transport,
            end_devices=tuple(EndDevice.from_dict(d) for d in devices),
        )
    except (ValueError, TypeError, KeyError) as exc:  # a list of another length or shape
        raise msgspec.DecodeError(f"not a registration in stored form {form!r}: {exc}") from None


def _float(value: float) -> str:
    return repr(float(value))  # exact in Lua's tonumber


class RedisRegistrationStore:
    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def add(self, registration: Registration) -> Registration | None:
        r = registration
        ep, exp = r.endpoint, _float(r.expires_at)
        c = self.link.client()
        owner = await c.get(index("regid", r.registration_id))
        if owner is not None and text(owner) != ep:
            held = await c.hget(key("reg", text(owner)), "id")
            if held is not None and text(held) == r.registration_id:
                raise ValueError(f"registration ID {r.registration_id!r} is in use by {text(owner)!r}")
        # The indexes first (the expiry never later than the record's), the record, the final time.
        await self._index(ep, r.registration_id, exp, lower=True, at=r)
        data = registration_bytes(r)
        old_data = await self.link.run(_REG_PUT, [key("reg", ep)], [r.registration_id, exp, data])
        old = None if old_data is None else _registration(old_data)
        # Listed again after the record too: a removal on another node that took the entry out
        # between our first write and the record's, and then found no record, cannot hide it.
        after: list[tuple[str, tuple[Any, ...]]] = [
            ("ZADD", (index("expiry"), float(exp), ep)),
            ("ZADD", (index("endpoints"), 0, ep)),
        ]
        if old is not None and old.registration_id != r.registration_id:
            after.append(("EVAL", (CAS_DELETE, 1, index("regid", old.registration_id), ep)))
        await fetch_all(self.link, after)
        return old

    async def _index(
        self, ep: str, rid: str, exp: str, *, lower: bool, at: Registration | None = None
    ) -> None:
        pipe = self.link.client().pipeline(transaction=False)
        pipe.set(index("regid", rid), ep)
        pipe.zadd(index("endpoints"), {ep: 0})
        pipe.zadd(index("expiry"), {ep: float(exp)}, lt=lower)
        if at is not None:
            _at(pipe, at)
        await pipe.execute()

    @guarded
    async def registration_at(self, address: tuple[str, int]) -> Registration | None:
        """The registration made from ``address`` (its last Register or Update), if any: the
        index entry checked against the record (an entry outlives a device that moved on)."""
        owner = await self.link.client().get(index("at", _address_key(address)))
        if owner is None:
            return None
        found = await self.get(text(owner))
        if found is None or (found.address[0], found.address[1]) != (address[0], address[1]):
            return None
        return found

    async def _unindex(self, olds: list[Registration]) -> None:
        """Drop the index entries of ``olds`` after their records went, then put back those of
        whatever registration of an endpoint a Register on another node stored meanwhile."""
        if not olds:
            return
        eps = [o.endpoint for o in olds]
        await fetch_all(
            self.link,
            [("EVAL", (CAS_DELETE, 1, index("regid", o.registration_id), o.endpoint)) for o in olds]
            + [("ZREM", (index("endpoints"), *eps)), ("ZREM", (index("expiry"), *eps))],
        )
        now = await fetch_all(self.link, [("HMGET", (key("reg", ep), "id", "exp")) for ep in eps])
        for ep, (rid, exp) in zip(eps, now, strict=True):
            if rid is not None and exp is not None:
                await self._index(ep, text(rid), text(exp), lower=True)

    @guarded
    async def get(self, endpoint: str) -> Registration | None:
        data = await self.link.client().hget(key("reg", endpoint), "data")
        return None if data is None else _registration(data)

    @guarded
    async def get_by_id(self, registration_id: str) -> Registration | None:
        owner = await self.link.client().get(index("regid", registration_id))
        if owner is None:
            return None
        found = await self.get(text(owner))
        # An entry left by a crash, or by a registration replaced since: not this ID's.
        return found if found is not None and found.registration_id == registration_id else None

    @guarded
    async def update(self, registration: Registration) -> Registration | None:
        r = registration
        ep, exp = r.endpoint, _float(r.expires_at)
        c = self.link.client()
        pipe = c.pipeline(transaction=False)
        pipe.zadd(index("expiry"), {ep: float(exp)}, xx=True, lt=True)
        _at(pipe, r)  # its address may have changed (LwM2M-TS-Core 1.2 §6.2.2)
        await pipe.execute()
        data = registration_bytes(r)
        old_data = await self.link.run(_REG_UPDATE, [key("reg", ep)], [r.registration_id, exp, data])
        if old_data is None:
            return None
        await c.zadd(index("expiry"), {ep: float(exp)}, xx=True)
        return _registration(old_data)

    @guarded
    async def remove(self, endpoint: str, *, registration_id: str | None = None) -> Registration | None:
        old_data = await self.link.run(_REG_REMOVE, [key("reg", endpoint)], [registration_id or ""])
        if old_data is None:
            return None
        old = _registration(old_data)
        await self._unindex([old])
        return old

    @guarded
    async def all(self) -> list[Registration]:
        found: list[Registration] = []
        async for names in walk_endpoints(self.link):
            for data in await fetch_all(self.link, [("HGET", (key("reg", n), "data")) for n in names]):
                if data is not None:
                    found.append(_registration(data))
        return found

    async def reachable(self) -> list[Reachable]:
        return [reachable_of(r) for r in await self.all()]

    @guarded
    async def page(
        self,
        after: str | None = None,
        limit: int = 100,
        *,
        prefix: str = "",
        glob: str | None = None,
        match: Callable[[Registration], bool] | None = None,
        scan: int = PAGE_SCAN,
    ) -> RegistrationPage:
        start = name_range(prefix, glob)
        if start is None:
            return RegistrationPage([], None)
        upper = prefix_upper(start)
        high = "+" if upper is None else f"({upper}"
        named = None if glob is None else glob_matcher(glob)
        link = self.link

        async def fetch(cursor: str | None, n: int) -> list[Row]:
            low = f"({cursor}" if cursor is not None and cursor >= start else (f"[{start}" if start else "-")
            got = await link.client().zrange(index("endpoints"), low, high, bylex=True, offset=0, num=n)
            names = [text(m) for m in got]
            wanted = [e for e in names if named is None or named(e)]
            blobs = await fetch_all(link, [("HGET", (key("reg", e), "data")) for e in wanted])
            by_name = dict(zip(wanted, blobs, strict=True))
            # An endpoint listed without a record (a crash between the writes) reads as turned down.
            return [(e, None if by_name.get(e) is None else _registration(by_name[e])) for e in names]

        filtered = glob is not None or match is not None
        chunk = REDIS_PAGE_CHUNK if glob is None else REDIS_PAGE_CHUNK * 4
        return await collect_page_async(fetch, after, limit, match, chunk=chunk, filtered=filtered, scan=scan)

    @guarded
    async def expired(
        self, now: float, grace: float = 0.0, *, limit: int | None = None
    ) -> list[Registration]:
        check_query(limit)
        cutoff = now - grace
        found: list[Registration] = []
        offset = 0
        while limit is None or len(found) < limit:
            num = CHUNK if limit is None else max(1, min(CHUNK, limit - len(found)))
            entries = await self.link.client().zrangebyscore(
                index("expiry"), "-inf", cutoff, start=offset, num=num
            )
            if not entries:
                break
            offset += len(entries)
            blobs = await fetch_all(self.link, [("HGET", (key("reg", text(e)), "data")) for e in entries])
            live = [_registration(b) for b in blobs if b is not None]
            # An entry earlier than its record (an Update between its writes) is not expired yet.
            found += [r for r in live if r.expires_at <= cutoff]
            if len(entries) < num:
                break
        found.sort(key=_expires_at)
        return found if limit is None else found[:limit]

    @guarded
    async def remove_expired(self, now: float, grace: float = 0.0, *, limit: int) -> list[Registration]:
        check_query(limit)
        cutoff = now - grace
        taken: list[Registration] = []
        c = self.link.client()
        while len(taken) < limit:
            entries = await c.zrangebyscore(index("expiry"), "-inf", cutoff, start=0, num=limit - len(taken))
            if not entries:
                break
            names = [text(m) for m in entries]
            # The script per endpoint, pipelined: each takes its registration only if still expired.
            states = await fetch_all(
                self.link, [("EVAL", (_REG_EXPIRE, 1, key("reg", ep), _float(cutoff))) for ep in names]
            )
            batch: list[Registration] = []
            moved: dict[str, float] = {}
            for ep, state in zip(names, states, strict=True):
                if state[0] == 2:  # taken by this call; another node's sweep finds it gone
                    batch.append(_registration(state[1]))
                elif state[0] == 1:  # live: its entry was early; move it to the record's time
                    moved[ep] = float(text(state[1]))
                else:  # no record: an entry a crash or a racing removal left
                    await c.zrem(index("expiry"), ep)
                    again = await c.hget(key("reg", ep), "exp")
                    if again is not None:  # a Register landed meanwhile
                        await c.zadd(index("expiry"), {ep: float(text(again))}, lt=True)
            await self._unindex(batch)
            if moved:
                await c.zadd(index("expiry"), moved, xx=True)
            taken += batch
        taken.sort(key=_expires_at)
        return taken


AT_MARGIN = 3600.0  # seconds an address's index entry outlives the registration's expiry


def _address_key(address: tuple[str, int]) -> str:
    return f"{address[0]}|{address[1]}"


def _at(pipe: Any, r: Registration) -> None:
    """The address index entry of ``r`` into ``pipe``: until an hour after it would expire."""
    ttl = max(1, int(r.expires_at - time.time() + AT_MARGIN))
    pipe.set(index("at", _address_key(r.address)), r.endpoint, ex=ttl)


def _expires_at(registration: Registration) -> float:
    return registration.expires_at


def walk_endpoints(link: RedisLink) -> AsyncIterator[list[str]]:
    return walk_lex(link, index("endpoints"))


# --- observations ---------------------------------------------------------------------------------


def observation_bytes(seq: int, o: Observation) -> bytes:
    """[form, creation number, registration ID, paths, composite, content format, attributes,
    created at] and, for one made over OSCORE, its binding: the token and the endpoint are the
    field's and the key's names."""
    attributes = None if o.attributes is None else o.attributes.to_query()
    paths = [str(p) for p in o.paths]
    row = [
        _OBSERVATION_FORM,
        seq,
        o.registration_id,
        paths,
        o.composite,
        o.content_format,
        attributes,
        o.created_at,
    ]
    if o.oscore is not None:
        row.append(o.oscore.to_list())
    return msgspec.msgpack.encode(row)


def _observation(token: bytes | str, endpoint: str, data: bytes | str) -> tuple[int, Observation]:
    form, seq, rid, paths, composite, content_format, attributes, created_at, *rest = msgspec.msgpack.decode(
        data if isinstance(data, bytes) else data.encode()
    )
    if form != _OBSERVATION_FORM:
        raise msgspec.DecodeError(f"an observation in stored form {form!r}, not {_OBSERVATION_FORM}")
    return int(seq), Observation(
        token=bytes.fromhex(text(token)),
        endpoint=endpoint,
        registration_id=rid,
        paths=tuple(Path.parse(p, prefixed=True) for p in paths),  # end devices too
        composite=composite,
        content_format=content_format,
        attributes=None if attributes is None else AttributeChange.parse_query(attributes).set,
        created_at=float(created_at),
        oscore=ObservationBinding.from_list(rest[0]) if rest else None,
    )


class RedisObservationStore:
    """Observations under their endpoint (``obs:{ep}``, token -> creation number and observation),
    with two global indexes: token -> endpoint, so that any node recognises a notification's
    token, and every token by creation number, for :meth:`all`."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def add(self, observation: Observation) -> Observation | None:
        o = observation
        token = o.token.hex()
        c = self.link.client()
        pipe = c.pipeline(transaction=False)  # two index writes, in either order
        pipe.incr(index("seq:observations"))
        pipe.set(index("token", token), o.endpoint, get=True)
        seq, previous = await pipe.execute()
        await c.zadd(index("observations"), {token: seq})
        data = observation_bytes(seq, o)
        old_data = await self.link.run(_OBS_PUT, [key("obs", o.endpoint)], [token, data])
        old_endpoint = o.endpoint
        if previous is not None and text(previous) != o.endpoint:  # the token moved endpoint
            old_endpoint = text(previous)
            old_data = await self.link.run(_OBS_REMOVE, [key("obs", old_endpoint)], [token])
        return None if old_data is None else _observation(token, old_endpoint, old_data)[1]

    @guarded
    async def get(self, token: bytes) -> Observation | None:
        c = self.link.client()
        endpoint = await c.get(index("token", token.hex()))
        if endpoint is None:
            return None
        data = await c.hget(key("obs", text(endpoint)), token.hex())
        return None if data is None else _observation(token.hex(), text(endpoint), data)[1]

    @guarded
    async def for_endpoint(self, endpoint: str) -> list[Observation]:
        rows = await self.link.client().hgetall(key("obs", endpoint))
        return [o for _, o in sorted((_observation(t, endpoint, d) for t, d in rows.items()), key=_seq)]

    @guarded
    async def all(self) -> list[Observation]:
        c = self.link.client()
        found: list[Observation] = []
        low: float | str = "-inf"
        while True:
            got = await c.zrangebyscore(
                index("observations"), low, "+inf", start=0, num=CHUNK, withscores=True
            )
            if not got:
                return found
            tokens = [text(row[0]) for row in got]
            owners = await fetch_all(self.link, [("GET", (index("token", t),)) for t in tokens])
            pairs = [(t, text(e)) for t, e in zip(tokens, owners, strict=True) if e is not None]
            blobs = await fetch_all(self.link, [("HGET", (key("obs", e), t)) for t, e in pairs])
            found += [
                _observation(t, e, b)[1] for (t, e), b in zip(pairs, blobs, strict=True) if b is not None
            ]
            if len(got) < CHUNK:
                return found
            low = f"({got[-1][1]}"

    async def chunks(self, size: int) -> AsyncIterator[list[Observation]]:
        records = await self.all()
        for start in range(0, len(records), size):
            yield records[start : start + size]

    @guarded
    async def remove(self, token: bytes) -> Observation | None:
        c = self.link.client()
        hexed = token.hex()
        endpoint = await c.get(index("token", hexed))
        if endpoint is None:
            return None
        ep = text(endpoint)
        old_data = await self.link.run(_OBS_REMOVE, [key("obs", ep)], [hexed])
        await self._unindex([hexed], ep)
        return None if old_data is None else _observation(hexed, ep, old_data)[1]

    @guarded
    async def remove_endpoint(self, endpoint: str, registration_id: str | None = None) -> list[Observation]:
        if registration_id is not None:
            return await self._remove_registration(endpoint, registration_id)
        flat = await self.link.run(HASH_TAKE, [key("obs", endpoint)], [])
        rows = sorted(
            (_observation(flat[i], endpoint, flat[i + 1]) for i in range(0, len(flat), 2)), key=_seq
        )
        await self._unindex([text(flat[i]) for i in range(0, len(flat), 2)], endpoint)
        return [o for _, o in rows]

    async def _remove_registration(self, endpoint: str, registration_id: str) -> list[Observation]:
        """The endpoint's observations made under ``registration_id``: read, then each taken
        by its token (HDEL), so that one added meanwhile (a newer registration's) stays."""
        c = self.link.client()
        hash_key = key("obs", endpoint)
        found = await c.hgetall(hash_key)
        rows = [(_observation(field, endpoint, data), text(field)) for field, data in found.items()]
        rows.sort(key=lambda row: row[0][0])  # creation order (an Observation has no order of its own)
        gone = [(field, o) for (_, o), field in rows if o.registration_id == registration_id]
        if gone:
            await c.hdel(hash_key, *(token for token, _ in gone))
            await self._unindex([token for token, _ in gone], endpoint)
        return [o for _, o in gone]

    async def _unindex(self, tokens: list[str], endpoint: str) -> None:
        """Drop the tokens' index entries after their observations went, but not those an
        ``add`` on another node took over meanwhile."""
        for token in tokens:
            await self.link.run(CAS_DELETE, [index("token", token)], [endpoint])
        if tokens:
            c = self.link.client()
            await c.zrem(index("observations"), *tokens)
            back = await fetch_all(self.link, [("GET", (index("token", t),)) for t in tokens])
            for token, owner in zip(tokens, back, strict=True):
                if owner is not None:
                    data = await c.hget(key("obs", text(owner)), token)
                    if data is not None:
                        await c.zadd(
                            index("observations"), {token: _observation(token, text(owner), data)[0]}
                        )


def _seq(row: tuple[int, Observation]) -> int:
    return row[0]
