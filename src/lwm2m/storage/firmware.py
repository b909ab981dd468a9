"""Firmware packages: the :class:`PackageStore` role and its memory and SQLite backends (the Redis
one is :mod:`lwm2m.storage.redis_firmware`).

A package is its metadata (:class:`FirmwarePackage`: id, name, version, size, SHA-256, time
of upload) and its bytes. The stores keep both and read the bytes back by range, so that a
server answers a CoAP block or an HTTP ``Range`` without loading a whole package.

- memory: both in the process;
- SQLite: the metadata in the ``firmware_packages`` table, the bytes as one file per package
  (named by its id) in the folder ``firmware`` beside the database file (``--data``/firmware/),
  each written to a temporary file, flushed to disk and renamed into place, so that a crash
  never leaves a half-written package under its name; the row is written after the file, so
  a listed package always has its bytes. A private database (``:memory:``) keeps the bytes in
  the process.

Ids are what :func:`new_package_id` makes (URL-safe, unguessable); a string of any other form is
not an id of any package (and never reaches the file system).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from lwm2m.errors import StoreError
from lwm2m.storage.ids import random_id

__all__ = [
    "FirmwarePackage",
    "MemoryPackageStore",
    "PackageStore",
    "SqlitePackageStore",
    "firmware_folder",
    "is_package_id",
    "new_package_id",
]

ID_BYTES = 16  # 128 random bits: a package's URI is its only key when devices fetch it
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_package_id() -> str:
    """A fresh package id: 128 random bits, URL-safe Base64 (22 characters), no leading ``-``."""
    return random_id(ID_BYTES)


def is_package_id(text: str) -> bool:
    """Whether ``text`` has the form of a package id (URL-safe characters, 16 to 64 of them)."""
    return _ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class FirmwarePackage:
    """What the server knows of one stored package; its bytes are read through the store."""

    id: str
    name: str
    version: str
    size: int
    sha256: str  # hexadecimal, lower case
    created_at: float

    def __post_init__(self) -> None:
        if not is_package_id(self.id):
            raise ValueError(f"{self.id!r} is not a package id")
        if self.size < 1:
            raise ValueError(f"a package has at least one byte, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "createdAt": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FirmwarePackage:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            version=str(data["version"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            created_at=float(data["createdAt"]),
        )


def package_from_json(data: bytes | str) -> FirmwarePackage:
    """The package of a stored JSON form; StoreError when it is not one."""
    try:
        return FirmwarePackage.from_dict(msgspec.json.decode(data))
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"a stored firmware package is unreadable: {exc}") from None


def package_json(package: FirmwarePackage) -> bytes:
    return msgspec.json.encode(package.to_dict())


def clip(size: int, start: int, end: int | None) -> tuple[int, int]:
    """``[start, end)`` within a body of ``size`` bytes (``end`` None: to the end)."""
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad byte range {start}-{end}")
    stop = size if end is None else min(end, size)
    return min(start, stop), stop


class PackageStore(Protocol):
    """Firmware packages by id, with their bytes."""

    async def add(self, package: FirmwarePackage, data: bytes) -> None:
        """Keep ``data`` as the bytes of ``package`` (a new id): listed only once the bytes are kept."""
        ...

    async def get(self, package_id: str) -> FirmwarePackage | None: ...

    async def all(self) -> list[FirmwarePackage]:
        """Every package, oldest first."""
        ...

    async def read(self, package_id: str, start: int = 0, end: int | None = None) -> bytes | None:
        """The package's bytes ``[start, end)`` (``end`` None: to its end; a range past the end is
        cut there); None when there is no such package."""
        ...

    async def remove(self, package_id: str) -> FirmwarePackage | None:
        """Forget the package and its bytes; answer what was removed."""
        ...


def _order(package: FirmwarePackage) -> tuple[float, str]:
    return package.created_at, package.id


class MemoryPackageStore:
    """Packages in the process: nothing survives it."""

    def __init__(self) -> None:
        self._packages: dict[str, tuple[FirmwarePackage, bytes]] = {}

    async def add(self, package: FirmwarePackage, data: bytes) -> None:
        self._packages[package.id] = (package, bytes(data))

    async def get(self, package_id: str) -> FirmwarePackage | None:
        found = self._packages.get(package_id)
        return None if found is None else found[0]

    async def all(self) -> list[FirmwarePackage]:
        return sorted((p for p, _ in self._packages.values()), key=_order)

    async def read(self, package_id: str, start: int = 0, end: int | None = None) -> bytes | None:
        found = self._packages.get(package_id)
        if found is None:
            return None
        data = found[1]
        low, high = clip(len(data), start, end)
        return data if (low, high) == (0, len(data)) else data[low:high]

    async def remove(self, package_id: str) -> FirmwarePackage | None:
        found = self._packages.pop(package_id, None)
        return None if found is None else found[0]


# --- SQLite: rows in the database, bytes in files beside it ---------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS firmware_packages (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    data BLOB NOT NULL              -- FirmwarePackage.to_dict() as JSON
)
"""


def firmware_folder(database: str) -> Path | None:
    """The folder of the package files of the SQLite database ``database``: ``firmware`` beside
    it (None for a private ``:memory:`` database)."""
    if database == ":memory:":
        return None
    return Path(database).absolute().parent / "firmware"


def _write_file(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, folder / name)  # atomic: the name holds all the bytes or none
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # The rename itself is durable once the folder is (POSIX: fsync of the directory).
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(path: Path, start: int, end: int | None) -> bytes | None:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            low, high = clip(size, start, end)
            f.seek(low)
            return f.read(high - low)
    except FileNotFoundError:
        return None


class SqlitePackageStore:
    """Package rows in the ``firmware_packages`` table of an open SQLite connection (autocommit),
    their bytes in ``folder`` (None: in the process, for a private database)."""

    def __init__(self, conn: sqlite3.Connection, folder: Path | None) -> None:
        self._conn = conn
        self.folder = folder
        self._bytes: dict[str, bytes] = {}  # without a folder
        conn.execute(_SCHEMA)

    def _path(self, package_id: str) -> Path:
        assert self.folder is not None and is_package_id(package_id)
        return self.folder / package_id

    async def add(self, package: FirmwarePackage, data: bytes) -> None:
        if self.folder is None:
            self._bytes[package.id] = bytes(data)
        else:
            try:
                await asyncio.to_thread(_write_file, self.folder, package.id, data)
            except OSError as exc:
                raise StoreError(f"cannot write the firmware package {package.id}: {exc}") from exc
        try:
            self._conn.execute(
                "INSERT INTO firmware_packages (id, created_at, data) VALUES (?, ?, ?)",
                (package.id, package.created_at, package_json(package)),
            )
        except BaseException:
            if self.folder is None:
                self._bytes.pop(package.id, None)
            else:
                self._path(package.id).unlink(missing_ok=True)  # no file without its row
            raise

    async def get(self, package_id: str) -> FirmwarePackage | None:
        row = self._conn.execute("SELECT data FROM firmware_packages WHERE id = ?", (package_id,)).fetchone()
        return None if row is None else package_from_json(row[0])

    async def all(self) -> list[FirmwarePackage]:
        rows = self._conn.execute("SELECT data FROM firmware_packages ORDER BY created_at, id").fetchall()
        return [package_from_json(data) for (data,) in rows]

    async def read(self, package_id: str, start: int = 0, end: int | None = None) -> bytes | None:
        if not is_package_id(package_id) or await self.get(package_id) is None:
            return None
        if self.folder is None:
            data = self._bytes.get(package_id)
            if data is None:
                return None
            low, high = clip(len(data), start, end)
            return data[low:high]
        try:
            return await asyncio.to_thread(_read_file, self._path(package_id), start, end)
        except OSError as exc:
            raise StoreError(f"cannot read the firmware package {package_id}: {exc}") from exc

    async def remove(self, package_id: str) -> FirmwarePackage | None:
        rows = self._conn.execute(
            "DELETE FROM firmware_packages WHERE id = ? RETURNING data", (package_id,)
        ).fetchall()
        if not rows:
            return None
        # The row first, then the bytes: a crash between leaves an unlisted file, never a listed
        # package without its bytes.
        if self.folder is None:
            self._bytes.pop(package_id, None)
        else:
            try:
                self._path(package_id).unlink(missing_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot delete the firmware package {package_id}: {exc}") from exc
        return package_from_json(rows[0][0])
