"""LwM2M paths: ``/``, ``/3``, ``/3/0``, ``/3/0/7``, ``/3/0/7/1``.

LwM2M-TS-Core 1.2 §7.1: object, object instance, resource and resource
instance IDs are 16-bit unsigned integers; 65535 is reserved (MAX_ID), so a
valid ID is 0..65534.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering

from lwm2m.errors import InvalidPath

MAX_ID = 65534


@total_ordering
@dataclass(frozen=True, slots=True)
class Path:
    """An LwM2M path as a tuple of up to four IDs; ``Path(())`` is the root."""

    ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ids) > 4:
            raise InvalidPath(f"a path has at most 4 levels, got {len(self.ids)}")
        for i in self.ids:
            if type(i) is not int or not 0 <= i <= MAX_ID:
                raise InvalidPath(f"invalid ID {i!r}: IDs are integers 0..{MAX_ID}")

    @classmethod
    def parse(cls, text: str | Path) -> Path:
        """Parse ``/3/0/7``; the leading slash is optional, ``/`` is the root."""
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
        return cls(tuple(ids))

    @classmethod
    def of(cls, *ids: int) -> Path:
        return cls(tuple(ids))

    def __str__(self) -> str:
        return "/" + "/".join(map(str, self.ids)) if self.ids else "/"

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self.ids < other.ids

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def level(self) -> int:
        """0 root, 1 object, 2 instance, 3 resource, 4 resource instance."""
        return len(self.ids)

    @property
    def is_root(self) -> bool:
        return not self.ids

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
        return Path(self.ids[:-1])

    def child(self, id_: int) -> Path:
        return Path((*self.ids, id_))

    def startswith(self, prefix: Path) -> bool:
        """True if ``prefix`` is this path or one of its ancestors."""
        n = len(prefix.ids)
        return self.ids[:n] == prefix.ids

    def is_prefix_of(self, other: Path) -> bool:
        return other.startswith(self)

    def resource_path(self) -> Path:
        """The resource this path names or lies in (needs level >= 3)."""
        if len(self.ids) < 3:
            raise InvalidPath(f"{self} is not a resource path")
        return Path(self.ids[:3])


ROOT = Path(())
