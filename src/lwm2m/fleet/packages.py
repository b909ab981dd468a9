"""Firmware packages: upload, list, read and delete them, and the URIs a device pulls them from.

:class:`Packages` sits on a :class:`~lwm2m.storage.firmware.PackageStore` (the store's
``firmware`` role: memory, SQLite with the bytes in ``--data``/firmware/, or Redis, so that
every node of a cluster serves every package). It checks what comes in (a name, a version, at
most ``PackageConfig.max_size`` bytes, at least one), gives each package an unguessable id and
its SHA-256, and is the :class:`~lwm2m.server.hosting.PackageSource` the server serves at
``coap[s]://server/fw/{id}``; the web layer serves the same bytes at ``http://…/fw/{id}``.

A campaign finds here what it needs of a package: ``get(id)`` (size, SHA-256, version) and
``uris(package, coap=server.uri, …)`` for the device's Package URI (/5/0/1); ``reachable``
names a real address when the server listens on every one.

The URI of a package is its only key: the ids are 128 random bits, and ``/fw/`` is open to
devices (which hold no API token). Whoever is given a URI can fetch that package, nobody can
list them without the API. The last segment of a device's URI, ``NAME@VERSION``, tells the
device (and whoever reads its log) what it fetches; the server ignores it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from lwm2m.errors import ConfigError, InvalidPackage, PackageNotFound, PackageTooLarge, TooManyPackages
from lwm2m.server.hosting import FW_PATH, HostedPackage
from lwm2m.storage.firmware import FirmwarePackage, PackageStore, is_package_id, new_package_id

__all__ = [
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "PackageConfig",
    "Packages",
    "check_name",
    "check_version",
    "file_segment",
    "reachable",
]

DEFAULT_MAX_SIZE = 64 << 20
ANY_ADDRESS = ("0.0.0.0", "::", "")
# A version: letters, digits and . _ + ~ - (SemVer's 2.1.0-rc.1+build.5 fits), at most 64.
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._+~-]{0,63}$"
# A name: the same characters, at most 128; neither holds '@', which parts them in a URI.
NAME_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._+~-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN.strip("^$"))
_NAME = re.compile(NAME_PATTERN.strip("^$"))


@dataclass(frozen=True, slots=True)
class PackageConfig:
    """``max_size``: the bytes of one package at most (413 beyond); ``max_packages``: packages
    kept at most (delete one to add another); ``cache_bytes``: package bodies kept in memory for
    the CoAP blocks of devices downloading them (the most recently used first)."""

    max_size: int = DEFAULT_MAX_SIZE
    max_packages: int = 1000
    cache_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ConfigError(f"max_size must be at least 1 byte, got {self.max_size}")
        if self.max_packages < 1:
            raise ConfigError(f"max_packages must be at least 1, got {self.max_packages}")
        if self.cache_bytes < 0:
            raise ConfigError(f"cache_bytes must not be negative, got {self.cache_bytes}")


def check_name(name: str) -> str:
    if _NAME.fullmatch(name) is None:
        raise InvalidPackage(
            f"name {name[:140]!r}: 1 to 128 letters, digits and . _ + ~ -, starting with a letter or digit"
        )
    return name


def check_version(version: str) -> str:
    if _VERSION.fullmatch(version) is None:
        raise InvalidPackage(
            f"version {version[:80]!r}: 1 to 64 letters, digits and . _ + ~ -,"
            " starting with a letter or digit"
        )
    return version


def reachable(base: str | None, host: str) -> str | None:
    """``base`` (``coap://host:port``) with ``host`` in place of an any-address (``0.0.0.0``, ``::``),
    where the server listens on every address but a device needs one of them."""
    if base is None:
        return None
    parts = urlsplit(base)
    if (parts.hostname or "") not in ANY_ADDRESS:
        return base
    shown = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{shown}:{parts.port}" if parts.port else shown, "", "", ""))


def file_segment(package: FirmwarePackage) -> str:
    """The last segment of a device's URI of ``package``: ``NAME@VERSION``, percent-encoded."""
    return quote(f"{package.name}@{package.version}", safe="@")


class Packages:
    """The firmware packages of one store (see the module's docstring)."""

    def __init__(self, store: PackageStore, config: PackageConfig | None = None) -> None:
        self.store = store
        self.config = config if config is not None else PackageConfig()
        self._bodies: OrderedDict[str, HostedPackage] = OrderedDict()  # most recently used last
        self._cached = 0
        self._loading: dict[str, asyncio.Future[HostedPackage | None]] = {}
        self._adding = asyncio.Lock()  # the count check and the add, one upload at a time

    # --- the API's operations ------------------------------------------------------------------

    async def add(self, name: str, version: str, data: bytes) -> FirmwarePackage:
        """Store ``data`` as a new package; InvalidPackage, PackageTooLarge or TooManyPackages
        when it cannot be."""
        check_name(name)
        check_version(version)
        self.check_size(len(data))
        package = FirmwarePackage(
            id=new_package_id(),
            name=name,
            version=version,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=time.time(),
        )
        async with self._adding:
            if len(await self.store.all()) >= self.config.max_packages:
                raise TooManyPackages(
                    f"the server keeps at most {self.config.max_packages} firmware packages; delete one first"
                )
            await self.store.add(package, data)
        return package

    def check_size(self, size: int) -> None:
        """InvalidPackage for no bytes, PackageTooLarge for more than ``max_size``: also what the
        web layer checks while the upload comes in, before it holds it all."""
        if size == 0:
            raise InvalidPackage("the package is empty: send its bytes as the request body")
        if size > self.config.max_size:
            raise PackageTooLarge(f"a package has at most {self.config.max_size} bytes, this one {size}")

    async def all(self) -> list[FirmwarePackage]:
        """Every package, oldest first."""
        return await self.store.all()

    async def get(self, package_id: str) -> FirmwarePackage:
        found = await self.store.get(package_id) if is_package_id(package_id) else None
        if found is None:
            raise PackageNotFound(f"no firmware package {package_id[:80]!r}")
        return found

    async def remove(self, package_id: str) -> FirmwarePackage:
        removed = await self.store.remove(package_id) if is_package_id(package_id) else None
        self._forget(package_id)
        if removed is None:
            raise PackageNotFound(f"no firmware package {package_id[:80]!r}")
        return removed

    async def read(self, package: FirmwarePackage, start: int = 0, end: int | None = None) -> bytes | None:
        """Bytes ``[start, end)`` of ``package``; None when it went meanwhile."""
        cached = self._bodies.get(package.id)
        if cached is not None and cached.sha256.hex() == package.sha256:
            return cached.body[start:end]
        return await self.store.read(package.id, start, end)

    @staticmethod
    def uris(
        package: FirmwarePackage,
        *,
        coap: str | None = None,
        coaps: str | None = None,
        http: str | None = None,
    ) -> dict[str, str]:
        """The URIs a device pulls ``package`` from, by scheme, for the servers' base URIs given
        (``coap://host:port``, ``coaps://…``, ``http://host:port``): ``BASE/fw/ID/NAME@VERSION``."""
        tail = f"/{FW_PATH}/{package.id}/{file_segment(package)}"
        bases = {"coap": coap, "coaps": coaps, "http": http}
        return {scheme: base.rstrip("/") + tail for scheme, base in bases.items() if base}

    # --- what the server serves (lwm2m.server.hosting.PackageSource) -------------------------------

    async def hosted(self, package_id: str) -> HostedPackage | None:
        """The package's bytes, from memory when a device fetched it lately. The store is asked
        whether the package still exists every time (another node may have deleted it); its
        bytes are read once for the devices that ask together."""
        if not is_package_id(package_id):
            return None
        package = await self.store.get(package_id)
        if package is None:
            self._forget(package_id)
            return None
        cached = self._bodies.get(package_id)
        if cached is not None and cached.sha256.hex() == package.sha256:
            self._bodies.move_to_end(package_id)
            return cached
        loading = self._loading.get(package_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[HostedPackage | None] = asyncio.get_running_loop().create_future()
        self._loading[package_id] = future
        try:
            body = await self.store.read(package_id)
            hosted = None if body is None else HostedPackage(body, bytes.fromhex(package.sha256))
            if hosted is not None:
                self._keep(package_id, hosted)
            future.set_result(hosted)
            return hosted
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: those waiting get it, nobody else needs to
            raise
        finally:
            del self._loading[package_id]

    def _keep(self, package_id: str, hosted: HostedPackage) -> None:
        self._forget(package_id)
        size = len(hosted.body)
        if size > self.config.cache_bytes:
            return
        while self._bodies and self._cached + size > self.config.cache_bytes:
            _, old = self._bodies.popitem(last=False)
            self._cached -= len(old.body)
        self._bodies[package_id] = hosted
        self._cached += size

    def _forget(self, package_id: str) -> None:
        old = self._bodies.pop(package_id, None)
        if old is not None:
            self._cached -= len(old.body)
