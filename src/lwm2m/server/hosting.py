"""Firmware packages served over CoAP: ``GET coap[s]://server/fw/{id}``, where a device's Firmware
Update object pulls the package named by its Package URI (/5/0/1, LwM2M-TS-Core 1.2 §E.6).

The server answers with the whole package; its CoAP endpoint sends it in Block2 blocks of the
size the device asks for (RFC 7959 §2.4), keeping the body for the later blocks and asking
the source again when it let the body go. The ETag option carries the first eight bytes of the
package's SHA-256 (RFC 7252 §5.10.6: at most 8 bytes), so that a device sees a package that
changed under the same URI. A path segment after the id (a file name such as
``lamp@2.1.0``) is the device's to read and is not checked.

The packages come from a :class:`PackageSource` the application gives the server
(``Server.host_packages``): the server does not know where they are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import StoreError

log = logging.getLogger(__name__)

__all__ = ["FW_PATH", "HostedPackage", "PackageSource", "serve_package"]

FW_PATH = "fw"  # the first Uri-Path segment of hosted packages
OCTET_STREAM = 42  # application/octet-stream (RFC 7252 §12.3)


@dataclass(frozen=True, slots=True)
class HostedPackage:
    """The bytes of a package and their SHA-256 (32 bytes)."""

    body: bytes
    sha256: bytes


class PackageSource(Protocol):
    """Where the server finds the package of an id."""

    async def hosted(self, package_id: str) -> HostedPackage | None:
        """The package with this id; None when there is none."""
        ...


def _reply(code: Code, diagnostic: str) -> Message:
    return Message.build(Type.ACK, code, payload=diagnostic.encode())


async def serve_package(source: PackageSource, message: Message) -> Message:
    """The answer to a request under ``/fw``: 2.05 with the package, 4.04 for no such package,
    4.05 for a method other than GET, 5.03 when the store fails."""
    path = message.uri_path
    if message.code != Code.GET:
        return _reply(Code.METHOD_NOT_ALLOWED, "firmware packages are read with GET")
    if len(path) not in (2, 3):
        return _reply(Code.NOT_FOUND, f"no resource {message.uri_path_str}; packages are at /fw/ID")
    try:
        package = await source.hosted(path[1])
    except StoreError as exc:
        # The device tries again later (Update Result 4 on its side, LwM2M-TS-Core 1.2 §E.6).
        log.warning("firmware package %s: the store cannot serve it: %s", path[1][:80], exc)
        return _reply(Code.SERVICE_UNAVAILABLE, "the package store cannot be reached")
    if package is None:
        return _reply(Code.NOT_FOUND, f"no firmware package {path[1]!r}")
    return Message.build(
        Type.ACK,
        Code.CONTENT,
        content_format=OCTET_STREAM,
        options=[(OptionNumber.ETAG, package.sha256[:8])],
        payload=package.body,
    )
