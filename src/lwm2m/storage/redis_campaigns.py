"""Firmware update campaigns in Redis: every node of a cluster sees every campaign.

=================================  ==========  ==================================================
key                                type        holds
=================================  ==========  ==================================================
``lwm2m:campaign:{<id>}``          string      the campaign without its devices, as JSON
``lwm2m:campaigndev:{<id>}``       hash        endpoint -> that device's progress, as JSON
``lwm2m:campaigns``                zset        campaign id by creation time: the listing's index
=================================  ==========  ==================================================

A campaign's keys share its hash tag (one Redis Cluster slot). A device's progress is stored only
while its campaign's record exists (a script checks it), so a removed campaign leaves no devices.
"""

from __future__ import annotations

import time

from lwm2m.storage.redis_link import RedisLink, fetch_all, guarded, index, key, raw

_SAVE_DEVICE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    return 1
end
return 0
"""


class RedisCampaignStore:
    """Campaigns and their devices' progress in Redis (see the module's key table)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def save(self, campaign_id: str, record: bytes) -> None:
        c = self.link.client()
        await c.zadd(index("campaigns"), {campaign_id: time.time()}, nx=True)
        await c.set(key("campaign", campaign_id), record)

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
    async def save_device(self, campaign_id: str, endpoint: str, record: bytes) -> None:
        keys = [key("campaign", campaign_id), key("campaigndev", campaign_id)]
        await self.link.run(_SAVE_DEVICE, keys, [endpoint, record])

    @guarded
    async def devices(self, campaign_id: str) -> dict[str, bytes]:
        found = await self.link.client().hgetall(key("campaigndev", campaign_id))
        return {raw(ep).decode(): raw(data) for ep, data in found.items()}

    @guarded
    async def remove(self, campaign_id: str) -> bool:
        c = self.link.client()
        gone = int(await c.delete(key("campaign", campaign_id)))
        await c.delete(key("campaigndev", campaign_id))
        await c.zrem(index("campaigns"), campaign_id)
        return gone > 0
