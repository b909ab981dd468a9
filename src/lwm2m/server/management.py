"""Device management (LwM2M-TS-Core 1.2 §6.3): the typed operations of :class:`LwM2MServer`.

A mixin, as ``ServerSide``/``ClientSide`` are for the CoAP endpoint: each operation
builds its request (``lwm2m.protocol.management``) and hands it to the server's
``send``, which waits for a sleeping client, picks the socket and decodes the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.model.path import Path
from lwm2m.model.record import Record
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
    path_list_format,
)
from lwm2m.protocol.registration import Registration

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


class DeviceManagement:
    """Read, Discover, Write, Execute, Create, Delete, Write-Attributes and the composite operations."""

    if TYPE_CHECKING:

        async def registration(self, endpoint: str) -> Registration: ...

        async def send(self, endpoint: str, request: Request, *, timeout: float | None = ...) -> Response: ...

    def _format(self, registration: Registration, fmt: int | str | None) -> ContentFormat:
        if fmt is None:
            return request_format(registration)
        return get_codec(fmt).content_format

    def _accept(self, registration: Registration, fmt: int | str | None) -> ContentFormat | None:
        """The Accept of a Read or Observe: ``fmt`` when asked for, else :func:`read_format`."""
        if fmt is None:
            return read_format(registration)
        return get_codec(fmt).content_format

    async def read(
        self,
        endpoint: str,
        path: str | Path,
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        fmt = self._accept(await self.registration(endpoint), format)
        return await self.send(endpoint, ReadRequest(Path.parse(path), fmt), timeout=timeout)

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
    ) -> Response:
        fmt = self._format(await self.registration(endpoint), format)
        request = WriteRequest(Path.parse(path), tuple(records), fmt, replace=replace)
        return await self.send(endpoint, request, timeout=timeout)

    async def execute(
        self, endpoint: str, path: str | Path, arguments: str = "", *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Response:
        return await self.send(endpoint, ExecuteRequest(Path.parse(path), arguments), timeout=timeout)

    async def create(
        self,
        endpoint: str,
        path: str | Path,
        records: Iterable[Record],
        *,
        format: int | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Response:
        fmt = self._format(await self.registration(endpoint), format)
        return await self.send(
            endpoint, CreateRequest(Path.parse(path), tuple(records), fmt), timeout=timeout
        )

    async def delete(
        self, endpoint: str, path: str | Path, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Response:
        return await self.send(endpoint, DeleteRequest(Path.parse(path)), timeout=timeout)

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
        body = path_list_format(fmt, (await self.registration(endpoint)).content_formats)
        request = ReadCompositeRequest(tuple(Path.parse(p) for p in paths), body, fmt)
        return await self.send(endpoint, request, timeout=timeout)

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
