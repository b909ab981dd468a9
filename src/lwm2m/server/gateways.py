"""The end devices behind the gateways registered here (LwM2M-TS-Gateway 1.1, object 25).

A gateway's Register lists its object 25 instances, one per end device; their content (Device
ID, Prefix, IoT Device Objects) is read from /25. The part reads it after each Register, and
again after an Update that carries an object list (the gateway created or deleted /25 instances
as end devices came and went, or an end device's objects changed: its /25/x/3), or that
follows a read of /25 that failed. What it reads is
kept in the registration (``Registration.end_devices``) and told by a ClientUpdated event: the
registration changed, without an Update message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from lwm2m.errors import GatewayError, LwM2MError
from lwm2m.model.path import Path
from lwm2m.protocol.gateway import GATEWAY_OBJECT, GATEWAY_PATH, end_devices_from_records
from lwm2m.protocol.management import Response
from lwm2m.protocol.registration import EndDevice
from lwm2m.server.events import ClientRegistered, ClientUpdated, ServerEvent
from lwm2m.storage.base import RegistrationStore

log = logging.getLogger(__name__)

MAX_READS = 64  # reads of /25 under way at once; beyond, the newest wait their turn


class EndDeviceTracker:
    """Keeps ``Registration.end_devices`` as each gateway's /25 tells them.

    ``read`` is the server's Read (``Server.read``), ``registrations`` its store, ``emit`` its
    event sink; ``follow`` is given each ClientRegistered and ClientUpdated.
    """

    def __init__(
        self,
        read: Callable[[str, Path], Awaitable[Response]],
        registrations: RegistrationStore,
        emit: Callable[[ServerEvent], None],
    ) -> None:
        self._read = read
        self._registrations = registrations
        self._emit = emit
        self._tasks: dict[str, asyncio.Task[None]] = {}  # one read per gateway at a time
        self._reads = asyncio.Semaphore(MAX_READS)

    def follow(self, event: ClientRegistered | ClientUpdated) -> None:
        reg = event.registration
        if not reg.supports(GATEWAY_OBJECT):
            if reg.end_devices:  # it no longer lists object 25: no end devices behind it
                self._start(reg.endpoint, reg.registration_id, clear=True)
            return
        if (
            isinstance(event, ClientUpdated)
            and not event.objects_listed
            and (reg.end_devices or not reg.instances(GATEWAY_OBJECT))
        ):
            # An Update without an object list, and what /25 says is known: an Update after a
            # read of /25 that failed tries again.
            return
        self._start(reg.endpoint, reg.registration_id, clear=False)

    def _start(self, endpoint: str, registration_id: str, *, clear: bool) -> None:
        old = self._tasks.pop(endpoint, None)
        if old is not None:
            old.cancel()  # a newer list supersedes it
        task = asyncio.get_running_loop().create_task(self._refresh(endpoint, registration_id, clear))
        self._tasks[endpoint] = task
        task.add_done_callback(
            lambda t: self._tasks.pop(endpoint, None) if self._tasks.get(endpoint) is t else None
        )

    async def _refresh(self, endpoint: str, registration_id: str, clear: bool) -> None:
        try:
            devices: tuple[EndDevice, ...] | None = () if clear else await self._end_devices(endpoint)
            if devices is None:
                return
            current = await self._registrations.get(endpoint)
            if (
                current is None
                or current.registration_id != registration_id
                or current.end_devices == devices
            ):
                return
            updated = replace(current, end_devices=devices)
            if await self._registrations.update(updated) is None:
                return  # gone meanwhile
            log.info("gateway %s: end devices %s", endpoint, ", ".join(d.prefix for d in devices) or "none")
            self._emit(ClientUpdated(updated, current))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gateway %s: could not keep its end devices", endpoint)

    async def _end_devices(self, endpoint: str) -> tuple[EndDevice, ...] | None:
        async with self._reads:
            try:
                response = await self._read(endpoint, GATEWAY_PATH)
            except LwM2MError as exc:
                log.warning("gateway %s: reading /25 failed: %s", endpoint, exc)
                return None
        if not response.success:
            log.warning(
                "gateway %s: reading /25 answered %s %s", endpoint, response.code, response.diagnostic
            )
            return None
        try:
            return end_devices_from_records(response.records)
        except GatewayError as exc:
            log.warning("gateway %s: its /25 does not tell its end devices: %s", endpoint, exc)
            return None

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
