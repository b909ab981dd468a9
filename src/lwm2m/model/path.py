"""LwM2M paths: ``/``, ``/3``, ``/3/0``, ``/3/0/7``, ``/3/0/7/1``, and prefixed ``/dev1/3303/0/5700``.

LwM2M-TS-Core 1.2 §7.1: object, object instance, resource and resource
instance IDs are 16-bit unsigned integers; 65535 is reserved (MAX_ID), so a
valid ID is 0..65534.

LwM2M-TS-Gateway 1.1, object 25: an LwM2M Gateway exposes the objects of
each end device behind it under that device's Prefix resource (/25/x/1), the
first segment of the path (``/dev1/3303/0/5700``). A path without a prefix
(``prefix == ""``) names the gateway's own objects, or a plain device's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from lwm2m.errors import InvalidPath

MAX_ID = 65534
MAX_PREFIX_LENGTH = 64

# URI-unreserved characters only (RFC 3986 §2.3), so a prefix needs no escaping in a Uri-Path, a
# SenML name or a REST URL; not all digits (it would read as an object ID) and not "." or "..".
_PREFIX = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*")
# The same rules as one pattern without look-arounds (for a JSON schema): a first character that
# is neither a digit nor ".", or digits and then a non-digit; then any unreserved characters.
PREFIX_SEGMENT = r"([A-Za-z_~-]|[0-9]+[A-Za-z._~-])[A-Za-z0-9._~-]*"
PREFIX_PATTERN = f"^{PREFIX_SEGMENT}$"


def check_prefix(prefix: object) -> str:
    """``prefix`` if it can name an end device behind a gateway, else InvalidPath saying why."""
    if type(prefix) is not str:
        raise InvalidPath(f"invalid prefix {prefix!r:.40}: expected a string such as dev1")
    if not prefix or len(prefix) > MAX_PREFIX_LENGTH:
        raise InvalidPath(f"invalid prefix {prefix[:40]!r}: a prefix has 1..{MAX_PREFIX_LENGTH} characters")
    if _PREFIX.fullmatch(prefix) is None or prefix.isdigit():
        raise InvalidPath(
            f"invalid prefix {prefix!r}: letters, digits and -._~ only, not all digits, not starting with ."
        )
    return prefix


@total_ordering
@dataclass(frozen=True, slots=True)
class Path:
    """An LwM2M path as a tuple of up to four IDs; ``Path(())`` is the root.

    ``prefix`` names an end device behind a gateway (LwM2M-TS-Gateway 1.1, object 25): ``Path((3303, 0),
    "dev1")`` is ``/dev1/3303/0`` and ``Path((), "dev1")`` that device's root.
    """

    ids: tuple[int, ...] = ()
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix:
            check_prefix(self.prefix)
        if len(self.ids) > 4:
            raise InvalidPath(f"a path has at most 4 levels, got {len(self.ids)}")
        for i in self.ids:
            if type(i) is not int or not 0 <= i <= MAX_ID:
                raise InvalidPath(f"invalid ID {i!r}: IDs are integers 0..{MAX_ID}")

    @classmethod
    def parse(cls, text: str | Path, *, prefixed: bool = False) -> Path:
        """Parse ``/3/0/7``; the leading slash is optional, ``/`` is the root.

        With ``prefixed``, a first segment that is not a number is an end device's prefix
        (``/dev1/3303/0``, LwM2M-TS-Gateway 1.1, object 25); without, it is an error as any other.
        """
        if isinstance(text, Path):
            return text
        if not isinstance(text, str):
            raise InvalidPath(f"invalid path {text!r}: expected a string such as /3/0/1")
        s = text.strip()
        if s in ("", "/"):
            return ROOT
        body = s[1:] if s.startswith("/") else s
        if body.endswith("/"):
            body = body[:-1]
        parts = body.split("/")
        prefix = ""
        if prefixed and parts[0] and not parts[0].isdigit():
            try:
                prefix = check_prefix(parts[0])
            except InvalidPath as exc:
                raise InvalidPath(f"invalid path {text[:80]!r}: {exc}") from None
            parts = parts[1:]
            if not parts:
                return cls((), prefix)
        ids = []
        for p in parts:
            if not p:
                raise InvalidPath(f"invalid path {text!r}: empty ID between two slashes")
            if not p.isascii() or not p.isdigit():
                raise InvalidPath(f"invalid path {text!r}: {p!r} is not a numeric ID")
            if len(p) > 1 and p[0] == "0":
                raise InvalidPath(f"invalid path {text!r}: {p!r} has a leading zero")
            if len(p) > 5:  # over MAX_ID; int() would refuse thousands of digits with its own error
                raise InvalidPath(f"invalid path {text[:40]!r}: ID {p[:10]!r}... is over {MAX_ID}")
            ids.append(int(p))
        if len(ids) > 4:
            raise InvalidPath(f"invalid path {text!r}: at most 4 levels (object/instance/resource/instance)")
        for i in ids:
            if i > MAX_ID:
                raise InvalidPath(f"invalid path {text!r}: ID {i} is over {MAX_ID}")
        return cls(tuple(ids), prefix)

    @classmethod
    def of(cls, *ids: int) -> Path:
        return cls(tuple(ids))

    def __str__(self) -> str:
        if self.prefix:
            return "/" + "/".join((self.prefix, *map(str, self.ids)))
        return "/" + "/".join(map(str, self.ids)) if self.ids else "/"

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return (self.prefix, self.ids) < (other.prefix, other.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def level(self) -> int:
        """0 root, 1 object, 2 instance, 3 resource, 4 resource instance."""
        return len(self.ids)

    @property
    def is_root(self) -> bool:
        """The root of a device: ``/``, or ``/dev1`` for an end device behind a gateway."""
        return not self.ids

    @property
    def segments(self) -> tuple[str, ...]:
        """The Uri-Path segments of this path (RFC 7252 §6.4): ``("dev1", "3303", "0")``."""
        ids = tuple(map(str, self.ids))
        return (self.prefix, *ids) if self.prefix else ids

    def without_prefix(self) -> Path:
        """The same IDs on the gateway itself (or a plain device)."""
        return Path(self.ids) if self.prefix else self

    def with_prefix(self, prefix: str) -> Path:
        """The same IDs on the end device ``prefix`` ("" for none)."""
        return self if prefix == self.prefix else Path(self.ids, prefix)

    def within(self, base: Path) -> bool:
        """True if this path lies at or under ``base`` as content of a request at ``base``: as
        :meth:`startswith`, and the bare root ``/`` also holds the end devices behind a gateway
        (a Send or a composite request carries their paths beside the gateway's own)."""
        if self.ids[: len(base.ids)] != base.ids:
            return False
        return self.prefix == base.prefix or (not base.prefix and not base.ids)

    @property
    def is_object(self) -> bool:
        return len(self.ids) == 1

    @property
    def is_instance(self) -> bool:
        return len(self.ids) == 2

    @property
    def is_resource(self) -> bool:
        return len(self.ids) == 3

    @property
    def is_resource_instance(self) -> bool:
        return len(self.ids) == 4

    def _at(self, index: int) -> int | None:
        return self.ids[index] if len(self.ids) > index else None

    @property
    def object_id(self) -> int | None:
        return self._at(0)

    @property
    def instance_id(self) -> int | None:
        return self._at(1)

    @property
    def resource_id(self) -> int | None:
        return self._at(2)

    @property
    def resource_instance_id(self) -> int | None:
        return self._at(3)

    @property
    def parent(self) -> Path:
        if not self.ids:
            raise InvalidPath("the root path has no parent")
        return Path(self.ids[:-1], self.prefix)

    def child(self, id_: int) -> Path:
        return Path((*self.ids, id_), self.prefix)

    def startswith(self, prefix: Path) -> bool:
        """True if ``prefix`` is this path or one of its ancestors (on the same device)."""
        n = len(prefix.ids)
        return self.ids[:n] == prefix.ids and self.prefix == prefix.prefix

    def is_prefix_of(self, other: Path) -> bool:
        return other.startswith(self)

    def resource_path(self) -> Path:
        """The resource this path names or lies in (needs level >= 3)."""
        if len(self.ids) < 3:
            raise InvalidPath(f"{self} is not a resource path")
        return Path(self.ids[:3], self.prefix)


ROOT = Path(())
