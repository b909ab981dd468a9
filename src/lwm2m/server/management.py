"""Device management (LwM2M-TS-Core 1.2 §6.3): the typed operations the server holds a part for.

Each operation builds its request (``lwm2m.protocol.management``) and hands it to
:meth:`DeviceManagement.send`, which waits for a sleeping client (queue mode, §6.5),
puts the request under the client's root path, picks the socket the client is
reached on and decodes the answer. The part owns none of the registrations: it
looks them up through the server and reaches clients through the server's sockets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import OptionNumber
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.errors import RequestReset, RequestTimeout
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.attributes import AttributeChange
from lwm2m.protocol.management import (
    CreateRequest,
    DeleteRequest,
    DiscoverRequest,
    ExecuteRequest,
    ReadCompositeRequest,
    ReadRequest,
    Request,
    Response,
    WriteAttributesRequest,
    WriteCompositeRequest,
    WriteRequest,
    decode_response,
    path_list_format,
)
from lwm2m.protocol.registration import Registration
from lwm2m.server.presence import Presence
from lwm2m.server.stats import RequestStats, sent_operation
from lwm2m.storage.base import Reachable

DEFAULT_TIMEOUT = 30.0

PREFERRED_FORMATS = (
    ContentFormat.SENML_CBOR,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.TLV,
)


def request_format(registration: Registration) -> ContentFormat:
    """SenML-CBOR for LwM2M 1.1 and later, TLV for 1.0 (LwM2M-TS-Core 1.2 §7.4); a 1.1+ client
    that lists its formats (``ct`` on the root link) gets the first of ours it names."""
    if registration.lwm2m_version == "1.0":
        return ContentFormat.TLV
    listed = registration.content_formats
    return next((f for f in PREFERRED_FORMATS if f in listed), ContentFormat.SENML_CBOR)


def read_format(registration: Registration) -> ContentFormat | None:
    """The Accept of a Read or Observe the user asked no format for.

    None (no Accept) for an LwM2M 1.0 client: the client then answers in the format it
    chooses (LwM2M 1.0 TS §6.4; text/plain for a single resource, TLV for several), and the
    answer is decoded by its Content-Format. Some 1.0 clients never answer a Read asking
    for TLV (lwm2m-node-lib). A 1.1+ client gets :func:`request_format`.
    """
    if registration.lwm2m_version == "1.0":
        return None
    return request_format(registration)


class Channel(Protocol):
    """What device management needs of a socket: a request and its answer (``CoapUdpEndpoint``)."""

    async def request(self, message: Message, addr: Any, *, timeout: float | None = None) -> Message: ...


def rooted(registration: Registration | Reachable, message: Message) -> Message:
    """The request under the client's alternate root path, if it has one (§6.2.1)."""
    if registration.root_path in ("", "/"):
        return message
    root = [s for s in registration.root_path.split("/") if s]
    return Message.build(
        message.type,
        message.code,
        uri_path=[*root, *message.uri_path],
        options=[o for o in message.options if o[0] != OptionNumber.URI_PATH],
        payload=message.payload,
    )


class DeviceManagement:
    """Read, Discover, Write, Execute, Create, Delete, Write-Attributes and the composite operations.

    ``lookup`` answers the endpoint's registration (or raises when it has none), ``peers`` the
    address each endpoint's last Register/Update came from, ``channel`` the socket it is reached
    on; ``presence`` tells whether a queue-mode client is awake, and ``queue_timeout`` is how
    long a request waits for one to wake (None: as long as it takes).
    """

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[Registration]],
        *,
        models: ObjectRegistry,
        presence: Presence,
        peers: Mapping[str, Any],
        channel: Callable[[str], Channel],
        queue_timeout: float | None,
    ) -> None:
        self._lookup = lookup
        self._models = models
        self._presence = presence
        self._peers = peers
        self._channel = channel
        self.queue_timeout = queue_timeout
        self.stats = RequestStats()  # the requests sent, by operation and answer, and their latency

    # --- sending ----------------------------------------------------------------------------

    async def send(
        self,
        endpoint: str,
        request: Request,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        token: bytes = b"",
        known: Registration | None = None,
    ) -> Response:
        """Send ``request`` to the client and decode its answer; ``token``, when given, is the
        request's CoAP token (an active Observe cancel reuses the observation's, RFC 7641 §3.6);
        ``known``, the client's registration as the caller has just looked it up (not looked
        up again unless the client sleeps)."""
        registration = await self.reachable(endpoint, known)
        message = rooted(registration, request.to_message(self._models))
        if token:
            message = message.replace(token=token)
        addr = self._peers.get(endpoint, registration.address)
        answer = await self._timed(sent_operation(request), self._channel(endpoint), message, addr, timeout)
        return decode_response(request, answer, self._models)

    async def _timed(
        self, operation: str, channel: Channel, message: Message, addr: Any, timeout: float | None
    ) -> Message:
        """``channel.request``, counted in ``stats`` with its outcome and, when answered, the
        time from sending to the answer (a sleeping client's wait for it to wake is not in it)."""
        stats = self.stats
        started = time.perf_counter()
        try:
            answer = await channel.request(message, addr, timeout=timeout)
        except RequestTimeout:
            stats.failed(operation, "timeout")
            raise
        except RequestReset:
            stats.failed(operation, "reset")
            raise
        except Exception:
            stats.failed(operation, "error")
            raise
        stats.timed(operation, time.perf_counter() - started)
        stats.count(operation, answer.code)
        return answer

    async def reachable(self, endpoint: str, known: Registration | None = None) -> Registration:
        """The client's registration once it can be reached: a sleeping queue-mode client is
        waited for (LwM2M-TS-Core 1.2 §6.5), then looked up again, since it may have registered
        anew, moved (its Update came from a new address) or left meanwhile. ``known``: the
        registration as just looked up, to start from (one store read less)."""
        registration = await self._known(endpoint, known)
        if registration.queue_mode and not self._presence.is_awake(endpoint):
            await self._presence.wait_awake(endpoint, self.queue_timeout)
            registration = await self._lookup(endpoint)
        return registration

    async def _known(self, endpoint: str, known: Registration | None) -> Registration:
        """``known`` when the caller gave the client's registration, else the store's."""
        if known is None:
            return await self._lookup(endpoint)
        if known.endpoint != endpoint:
            raise ValueError(f"known: the registration of {known.endpoint!r}, not of {endpoint!r}")
        return known

    # --- formats ----------------------------------------------------------------------------

    @staticmethod
    def format_for(registration: Registration, fmt: int | str | None) -> ContentFormat:
        """The Content-Format of a request body: ``fmt`` when asked for, else :func:`request_format`."""
        if fmt is None:
            return request_format(registration)
        return get_codec(fmt).content_format

    @staticmethod
    def accept_for(registration: Registration, fmt: int | str | None) -> ContentFormat | None:
        """The Accept of a Read or Observe: ``fmt`` when asked for, else :func:`read_format`."""
        if fmt is None:
            return read_format(registration)
        return get_codec(fmt).content_format

    # --- operations -------------------------------------------------------------------------

    async def read(
        self,
        endpoint: str,
        path: str | Path,
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        known: Registration | None = None,
    ) -> Response:
        """Read ``path`` (§6.3.1). ``known``: the client's registration as the caller has just
        looked it up (the REST API's route has), so that it is not read from the store again;
        this and the other operations take it."""
        registration = await self._known(endpoint, known)
        fmt = self.accept_for(registration, format)
        request = ReadRequest(Path.parse(path), fmt)
        return await self.send(endpoint, request, timeout=timeout, known=registration)

    async def discover(
        self, endpoint: str, path: str | Path, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Response:
        return await self.send(endpoint, DiscoverRequest(Path.parse(path)), timeout=timeout)

    async def write(
        self,
        endpoint: str,
        path: str | Path,
        records: Iterable[Record],
        *,
        replace: bool = True,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        known: Registration | None = None,
    ) -> Response:
        registration = await self._known(endpoint, known)
        fmt = self.format_for(registration, format)
        request = WriteRequest(Path.parse(path), tuple(records), fmt, replace=replace)
        return await self.send(endpoint, request, timeout=timeout, known=registration)

    async def execute(
        self,
        endpoint: str,
        path: str | Path,
        arguments: str = "",
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        known: Registration | None = None,
    ) -> Response:
        request = ExecuteRequest(Path.parse(path), arguments)
        return await self.send(endpoint, request, timeout=timeout, known=known)

    async def create(
        self,
        endpoint: str,
        path: str | Path,
        records: Iterable[Record],
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        known: Registration | None = None,
    ) -> Response:
        registration = await self._known(endpoint, known)
        fmt = self.format_for(registration, format)
        request = CreateRequest(Path.parse(path), tuple(records), fmt)
        return await self.send(endpoint, request, timeout=timeout, known=registration)

    async def delete(
        self,
        endpoint: str,
        path: str | Path,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        known: Registration | None = None,
    ) -> Response:
        request = DeleteRequest(Path.parse(path))
        return await self.send(endpoint, request, timeout=timeout, known=known)

    async def write_attributes(
        self,
        endpoint: str,
        path: str | Path,
        attributes: dict[str, object],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        change = AttributeChange.from_mapping(attributes)
        return await self.send(endpoint, WriteAttributesRequest(Path.parse(path), change), timeout=timeout)

    async def read_composite(
        self,
        endpoint: str,
        paths: Sequence[str | Path],
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        fmt = ContentFormat.SENML_CBOR if format is None else get_codec(format).content_format
        # The format asked for is the answer's (Accept); the path list goes in SenML (§6.3.2).
        registration = await self._lookup(endpoint)
        body = path_list_format(fmt, registration.content_formats)
        request = ReadCompositeRequest(tuple(Path.parse(p) for p in paths), body, fmt)
        return await self.send(endpoint, request, timeout=timeout, known=registration)

    async def write_composite(
        self,
        endpoint: str,
        records: Iterable[Record],
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        fmt = ContentFormat.SENML_CBOR if format is None else get_codec(format).content_format
        return await self.send(endpoint, WriteCompositeRequest(tuple(records), fmt), timeout=timeout)
