"""The ``campaigns`` storage role: firmware update campaigns and the state of each of their devices.

A campaign and each of its devices are kept as one encoded record apiece (the JSON form that
:mod:`lwm2m.fleet.campaigns` writes), so that a device's step is saved without rewriting the
campaign, and a server that restarts finds every running campaign where it was.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CampaignStore", "MemoryCampaignStore"]


class CampaignStore(Protocol):
    """Where campaigns live. Records are opaque bytes to the store."""

    async def save(self, campaign_id: str, record: bytes) -> None: ...

    async def load(self, campaign_id: str) -> bytes | None: ...

    async def ids(self) -> list[str]:
        """The campaigns' ids, oldest first."""
        ...

    async def save_device(self, campaign_id: str, endpoint: str, record: bytes) -> None: ...

    async def devices(self, campaign_id: str) -> dict[str, bytes]: ...

    async def remove(self, campaign_id: str) -> bool: ...


class MemoryCampaignStore:
    """Campaigns in this process's memory (they survive a runner's restart, not the process's)."""

    def __init__(self) -> None:
        self._campaigns: dict[str, bytes] = {}
        self._devices: dict[str, dict[str, bytes]] = {}

    async def save(self, campaign_id: str, record: bytes) -> None:
        self._campaigns[campaign_id] = record
        self._devices.setdefault(campaign_id, {})

    async def load(self, campaign_id: str) -> bytes | None:
        return self._campaigns.get(campaign_id)

    async def ids(self) -> list[str]:
        return list(self._campaigns)

    async def save_device(self, campaign_id: str, endpoint: str, record: bytes) -> None:
        if campaign_id in self._campaigns:
            self._devices[campaign_id][endpoint] = record

    async def devices(self, campaign_id: str) -> dict[str, bytes]:
        return dict(self._devices.get(campaign_id, {}))

    async def remove(self, campaign_id: str) -> bool:
        self._devices.pop(campaign_id, None)
        return self._campaigns.pop(campaign_id, None) is not None
