"""Firmware update campaigns in Redis: every node of a cluster sees every campaign.

=================================  ==========  ==================================================
key                                type        holds
=================================  ==========  ==================================================
``lwm2m:campaign:{<id>}``          string      the campaign without its devices, as JSON
``lwm2m:campaigndev:{<id>}``       hash        endpoint -> that device's progress, as JSON
``lwm2m:campaignlease:{<id>}``     string      ``<holder> <token>``: the runner's lease (PX)
``lwm2m:campaignfence:{<id>}``     string      the newest fencing token given out (INCR)
``lwm2m:campaigns``                zset        campaign id by creation time: the listing's index
=================================  ==========  ==================================================

A campaign's keys share its hash tag (one Redis Cluster slot), so each script below works on
Redis Cluster. A device's progress is stored only while its campaign's record exists (a script
checks it), so a removed campaign leaves no devices.

The lease is a ``SET NX PX`` of the holder and a new token from the campaign's counter, in one
script: a lease that lapsed (its runner was killed) is taken by the next node that asks, with a
greater token. A write that carries its runner's token is made only while no greater token was
given out (the fencing of a runner that lost its lease); both checks are in the write's script.
"""

from __future__ import annotations

import time

from lwm2m.errors import CampaignFenced
from lwm2m.storage.redis_link import RedisLink, fetch_all, guarded, index, key, raw, text

# KEYS: lease, fence. ARGV: holder, ttl ms. The new token, or 0 when the lease is held.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local token = redis.call('INCR', KEYS[2])
    redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
    return token
end
return 0
"""

# KEYS: lease. ARGV: "holder token", ttl ms (renew) or nothing (release).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: campaign, fence. ARGV: record, fence ('' unchecked). -1: fenced.
_SAVE = """
if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '0') > tonumber(ARGV[2]) then
    return -1
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# KEYS: campaign, devices, fence. ARGV: endpoint, record, fence ('' unchecked). -1: fenced.
_SAVE_DEVICE = """
if ARGV[3] ~= '' and tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[3]) then
    return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    return 1
end
return 0
"""


def _fenced(campaign_id: str, fence: int | None) -> CampaignFenced:
    return CampaignFenced(f"campaign {campaign_id}: another runner took it over (lease {fence} is old)")


class RedisCampaignStore:
    """Campaigns and their devices' progress in Redis (see the module's key table)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def save(self, campaign_id: str, record: bytes, *, fence: int | None = None) -> None:
        c = self.link.client()
        await c.zadd(index("campaigns"), {campaign_id: time.time()}, nx=True)
        keys = [key("campaign", campaign_id), key("campaignfence", campaign_id)]
        if int(await self.link.run(_SAVE, keys, [record, "" if fence is None else fence])) < 0:
            raise _fenced(campaign_id, fence)

    @guarded
    async def load(self, campaign_id: str) -> bytes | None:
        data = await self.link.client().get(key("campaign", campaign_id))
        return None if data is None else raw(data)

    @guarded
    async def ids(self) -> list[str]:
        ids = [raw(m).decode() for m in await self.link.client().zrange(index("campaigns"), 0, -1)]
        found = await fetch_all(self.link, [("EXISTS", (key("campaign", i),)) for i in ids])
        return [i for i, exists in zip(ids, found, strict=True) if exists]

    @guarded
    async def save_device(
        self, campaign_id: str, endpoint: str, record: bytes, *, fence: int | None = None
    ) -> None:
        keys = [
            key("campaign", campaign_id),
            key("campaigndev", campaign_id),
            key("campaignfence", campaign_id),
        ]
        args = [endpoint, record, "" if fence is None else fence]
        if int(await self.link.run(_SAVE_DEVICE, keys, args)) < 0:
            raise _fenced(campaign_id, fence)

    @guarded
    async def devices(self, campaign_id: str) -> dict[str, bytes]:
        found = await self.link.client().hgetall(key("campaigndev", campaign_id))
        return {raw(ep).decode(): raw(data) for ep, data in found.items()}

    @guarded
    async def remove(self, campaign_id: str) -> bool:
        c = self.link.client()
        gone = int(await c.delete(key("campaign", campaign_id)))
        await c.delete(key("campaigndev", campaign_id))
        await c.delete(key("campaignlease", campaign_id))
        await c.delete(key("campaignfence", campaign_id))
        await c.zrem(index("campaigns"), campaign_id)
        return gone > 0

    @guarded
    async def acquire(self, campaign_id: str, holder: str, ttl: float) -> int | None:
        keys = [key("campaignlease", campaign_id), key("campaignfence", campaign_id)]
        token = int(await self.link.run(_ACQUIRE, keys, [holder, _ms(ttl)]))
        return token or None

    @guarded
    async def renew(self, campaign_id: str, holder: str, token: int, ttl: float) -> bool:
        keys = [key("campaignlease", campaign_id)]
        return bool(await self.link.run(_RENEW, keys, [f"{holder} {token}", _ms(ttl)]))

    @guarded
    async def release(self, campaign_id: str, holder: str, token: int) -> None:
        await self.link.run(_RELEASE, [key("campaignlease", campaign_id)], [f"{holder} {token}"])

    @guarded
    async def holder(self, campaign_id: str) -> str | None:
        lease = await self.link.client().get(key("campaignlease", campaign_id))
        return None if lease is None else text(lease).rsplit(" ", 1)[0]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
