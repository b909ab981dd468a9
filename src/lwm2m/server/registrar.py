"""The Registration Interface on the server side (LwM2M-TS-Core 1.2 §6.2).

Turns Register, Update and De-register requests into store changes and
events, and answers them: 2.01 Created with the location ``/rd/{id}``, 2.04
Changed, 2.02 Deleted; 4.00 with a diagnostic for bad parameters or payload,
4.04 for an unknown location.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.protocol.registration import (
    RD,
    DeregisterRequest,
    RegisterRequest,
    Registration,
    RegistrationError,
    UpdateRequest,
)
from lwm2m.server.events import (
    ClientDeregistered,
    ClientRegistered,
    ClientUpdated,
    RegistrationExpired,
    ServerEvent,
)
from lwm2m.storage.base import ObservationStore, RegistrationStore


def _answer(code: Code, diagnostic: str = "", location: tuple[str, ...] = ()) -> Message:
    return Message.build(Type.ACK, code, location_path=location, payload=diagnostic.encode())


class Registrar:
    """Keeps the registrations of one server; ``emit`` receives each event."""

    def __init__(
        self,
        registrations: RegistrationStore,
        observations: ObservationStore,
        emit: Callable[[ServerEvent], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registrations = registrations
        self.observations = observations
        self._emit = emit
        self._clock = clock
        # endpoint -> the socket address its last Register/Update came from, exactly as the
        # transport reports it (requests go back there: NAT-friendly, §6.2.2).
        self.peers: dict[str, Any] = {}
        self._by_addr: dict[Any, str] = {}

    def endpoint_at(self, addr: Any) -> str | None:
        """The registered endpoint whose last Register/Update came from ``addr``."""
        return self._by_addr.get(addr)

    def remember(self, endpoint: str, addr: Any) -> None:
        """Take ``addr`` as the endpoint's address: a restarted server learns it from storage."""
        self._remember(endpoint, addr)

    def _remember(self, endpoint: str, addr: Any) -> None:
        self._forget(endpoint)
        self.peers[endpoint] = addr
        self._by_addr[addr] = endpoint

    def _forget(self, endpoint: str) -> None:
        old = self.peers.pop(endpoint, None)
        if old is not None and self._by_addr.get(old) == endpoint:
            del self._by_addr[old]

    def handles(self, message: Message) -> bool:
        path = message.uri_path
        return bool(path) and path[0] == RD

    async def handle(self, message: Message, addr: Any) -> Message:
        path = message.uri_path
        try:
            if len(path) == 1:
                return await self._register(message, addr)
            if len(path) == 2:
                if message.code == Code.DELETE:
                    return await self._deregister(message)
                return await self._update(message, addr)
        except RegistrationError as exc:
            return _answer(exc.code, str(exc))
        return _answer(Code.NOT_FOUND, f"no registration at {message.uri_path_str}")

    async def _register(self, message: Message, addr: Any) -> Message:
        request = RegisterRequest.from_message(message)
        registration = Registration.from_request(request, (addr[0], addr[1]), self._clock())
        replaced = await self.registrations.add(registration)
        if replaced is not None:
            await self.observations.remove_endpoint(replaced.endpoint)
        self._remember(registration.endpoint, addr)
        self._emit(ClientRegistered(registration, replaced))
        return _answer(Code.CREATED, location=(RD, registration.registration_id))

    async def _update(self, message: Message, addr: Any) -> Message:
        registration = await self.registrations.get_by_id(message.uri_path[1])
        if registration is None:
            return _answer(Code.NOT_FOUND, f"no registration {message.uri_path[1]!r}")
        request = UpdateRequest.from_message(message, lwm2m_version=registration.lwm2m_version)
        updated = registration.updated(request, (addr[0], addr[1]), self._clock())
        if await self.registrations.update(updated) is None:
            return _answer(Code.NOT_FOUND, f"no registration {message.uri_path[1]!r}")
        self._remember(updated.endpoint, addr)
        self._emit(ClientUpdated(updated, registration))
        return _answer(Code.CHANGED)

    async def _deregister(self, message: Message) -> Message:
        request = DeregisterRequest.from_message(message)
        registration = await self.registrations.get_by_id(request.location)
        if registration is None:
            return _answer(Code.NOT_FOUND, f"no registration {request.location!r}")
        removed = await self.registrations.remove(
            registration.endpoint, registration_id=registration.registration_id
        )
        if removed is None:
            return _answer(Code.NOT_FOUND, f"no registration {request.location!r}")
        await self.observations.remove_endpoint(removed.endpoint)
        self._forget(removed.endpoint)
        self._emit(ClientDeregistered(removed))
        return _answer(Code.DELETED)

    async def expire(self) -> list[Registration]:
        """Remove every registration past its lifetime, with its observations (§6.2.1)."""
        gone = []
        for registration in await self.registrations.expired(self._clock()):
            removed = await self.registrations.remove(
                registration.endpoint, registration_id=registration.registration_id
            )
            if removed is None:
                continue
            await self.observations.remove_endpoint(removed.endpoint)
            self._forget(removed.endpoint)
            self._emit(RegistrationExpired(removed))
            gone.append(removed)
        return gone
