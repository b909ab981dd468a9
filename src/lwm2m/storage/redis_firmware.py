"""Firmware packages in Redis: every node of a cluster serves every package, whatever node took
the upload (DESIGN.md, scale-out), so the bytes live in Redis beside the metadata.

=================================  ==========  ==================================================
key                                type        holds
=================================  ==========  ==================================================
``lwm2m:fw:{<id>}``                string      ``FirmwarePackage.to_dict()`` as JSON
``lwm2m:fwdata:{<id>}:<n>``        string      bytes ``[n * CHUNK_BYTES, (n + 1) * CHUNK_BYTES)``
``lwm2m:firmware``                 zset        package id by upload time: the listing's index
=================================  ==========  ==================================================

The bytes are cut in chunks of :data:`CHUNK_BYTES` (1 MiB) rather than kept as one value: a
command moves at most one chunk, so a 64 MiB upload or a download never holds the single Redis
thread (nor a replica link) for the time of the whole package, and a block or a ``Range`` is
read with ``GETRANGE`` on the one or two chunks it spans. A package's keys share its hash tag,
so they sit in one Redis Cluster slot and one ``DEL`` removes them all.

Write order: the chunks, then the index entry, then the metadata (the record). A read through
the index checks the record, so an entry left by a crash between the writes is ignored; a
package is visible only once its bytes are all stored. Removal goes the other way: the record
(``GETDEL``: two nodes removing at once cannot both get it), then the chunks, then the index.
"""

from __future__ import annotations

from lwm2m.storage.firmware import FirmwarePackage, clip, is_package_id, package_from_json, package_json
from lwm2m.storage.redis_link import RedisLink, fetch_all, guarded, index, key, raw

CHUNK_BYTES = 1 << 20


def _meta(package_id: str) -> str:
    return key("fw", package_id)


def _chunk(package_id: str, n: int) -> str:
    return f"{key('fwdata', package_id)}:{n}"


def _chunks(size: int) -> int:
    return (size + CHUNK_BYTES - 1) // CHUNK_BYTES


class RedisPackageStore:
    """Packages and their bytes in Redis (see the module's key table)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def add(self, package: FirmwarePackage, data: bytes) -> None:
        c = self.link.client()
        view = memoryview(data)
        for n in range(_chunks(len(data))):
            await c.set(_chunk(package.id, n), bytes(view[n * CHUNK_BYTES : (n + 1) * CHUNK_BYTES]))
        await c.zadd(index("firmware"), {package.id: package.created_at})
        await c.set(_meta(package.id), package_json(package))

    @guarded
    async def get(self, package_id: str) -> FirmwarePackage | None:
        if not is_package_id(package_id):
            return None
        data = await self.link.client().get(_meta(package_id))
        return None if data is None else package_from_json(data)

    @guarded
    async def all(self) -> list[FirmwarePackage]:
        ids = [raw(m).decode() for m in await self.link.client().zrange(index("firmware"), 0, -1)]
        found = await fetch_all(self.link, [("GET", (_meta(i),)) for i in ids])
        return [package_from_json(data) for data in found if data is not None]

    @guarded
    async def read(self, package_id: str, start: int = 0, end: int | None = None) -> bytes | None:
        package = await self.get(package_id)
        if package is None:
            return None
        low, high = clip(package.size, start, end)
        if low == high:
            return b""
        c = self.link.client()
        pipe = c.pipeline(transaction=False)  # one slot: the package's hash tag
        for n in range(low // CHUNK_BYTES, (high - 1) // CHUNK_BYTES + 1):
            base = n * CHUNK_BYTES
            pipe.getrange(_chunk(package_id, n), max(low - base, 0), min(high - base, CHUNK_BYTES) - 1)
        parts = [raw(p) for p in await pipe.execute()]
        data = b"".join(parts)
        if len(data) != high - low:
            return None  # removed while being read
        return data

    @guarded
    async def remove(self, package_id: str) -> FirmwarePackage | None:
        if not is_package_id(package_id):
            return None
        c = self.link.client()
        old = await c.getdel(_meta(package_id))
        if old is None:
            return None
        package = package_from_json(old)
        await c.delete(*(_chunk(package_id, n) for n in range(_chunks(package.size))))
        await c.zrem(index("firmware"), package_id)
        return package
