"""The cluster's link key in Redis: what authenticates the messages of the node-to-node link
(:mod:`lwm2m.transport.dtls.link`, DTLS Connection ID forwarding).

32 random bytes in ``{lwm2m:nodes}:link-key``, made by the first node that looks (SET NX) and
read by every other one; it lives beside the node registry in its hash slot.
"""

from __future__ import annotations

import secrets
from typing import Final

from lwm2m.cluster.node import NODES_KEY
from lwm2m.errors import ConfigError
from lwm2m.storage.redisconn import RedisClient

__all__ = ["KEY_LEN", "LINK_KEY", "link_key"]

LINK_KEY: Final = f"{NODES_KEY}:link-key"
KEY_LEN: Final = 32
MIN_KEY_LEN: Final = 16  # the tag's length: a shorter key would be weaker than the tag


async def link_key(redis: RedisClient) -> bytes:
    """The cluster's link key: made by the first node that asks (SET NX), read by the others."""
    await redis.set(LINK_KEY, secrets.token_bytes(KEY_LEN), nx=True)
    key = await redis.get(LINK_KEY)
    if not isinstance(key, bytes) or len(key) < MIN_KEY_LEN:
        # decode_responses clients answer text: the key is bytes and must be read as such.
        raise ConfigError(f"{LINK_KEY} in Redis is not a link key of at least {MIN_KEY_LEN} bytes")
    return key
