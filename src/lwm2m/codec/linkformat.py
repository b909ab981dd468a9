"""RFC 6690 CoRE Link Format: ``</3/0>;pmin=10,</3303>;ver=1.1``.

Used by LwM2M for the Register/Update payload (LwM2M-TS-Core 1.2 §6.2.1.1:
``</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1``), Discover
answers with attributes (LwM2M-TS-Core 1.2 §5.1.2, §6.3.4:
``</3/0>;pmin=10,</3/0/7>;dim=2``) and Bootstrap-Discover.

Parsing is tolerant where RFC 6690 implementations commonly differ
(whitespace around separators, an empty value after ``=``) and strict
where a misread would change meaning (unterminated quotes or targets).
Attribute names are case-insensitive (RFC 8288 §3) and kept in lower case.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lwm2m.errors import LinkFormatError

__all__ = ["Link", "LinkFormatError", "parse_links", "serialize_links"]


# RFC 6690 §2: ptokenchar, the characters a value may use without quotes.
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PTOKEN = frozenset("!#$%&'()*+-./:<=>?@[]^_`{|}~" + _ALNUM)
# RFC 5987 parmname (plus "*" for ext-value names such as title*).
_PARMNAME = frozenset("!#$&+-.^_`|~*" + _ALNUM)
# Values these attributes hold are quoted-strings in RFC 6690 §3 / LwM2M examples even when a
# ptoken would do; quoting them keeps peers with naive parsers happy.
_ALWAYS_QUOTED = frozenset({"rt", "if", "title", "anchor", "uri", "lwm2m", "rel", "rev"})
_WS = " \t\r\n"

# LwM2M-TS-Core 1.2 §5.1.2 (Table 5.1.2-1): attribute value kinds.
_INT_ATTRS = ("pmin", "pmax", "epmin", "epmax", "hqmax", "dim", "edge", "con", "ssid")
_FLOAT_ATTRS = ("gt", "lt", "st")
_MAX_DIGITS = 40  # an integer attribute with more digits is out of any range LwM2M defines


@dataclass(frozen=True, slots=True)
class Link:
    """One link: a target URI and its attributes in the order given.

    ``attributes`` holds ``(name, value)`` pairs; a valueless attribute
    (``;obs``) has the value ``None``. A name may repeat (RFC 6690 allows
    it); :meth:`get` answers the first.
    """

    target: str
    attributes: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or ">" in self.target:
            raise LinkFormatError(f"invalid link target {self.target!r}")
        attrs = tuple((str(k), v) for k, v in self.attributes)
        for name, value in attrs:
            if not name or not _PARMNAME.issuperset(name):
                raise LinkFormatError(f"invalid attribute name {name!r}")
            if value is not None and not isinstance(value, str):
                raise LinkFormatError(f"attribute {name}: value {value!r} is not a string")
        object.__setattr__(self, "attributes", attrs)

    @classmethod
    def of(cls, target: str, **attributes: str | int | float | bool | None) -> Link:
        """``Link.of("/3/0", pmin=10, obs=None)``; True/False become 1/0 (``edge``, ``con``)."""
        attrs: list[tuple[str, str | None]] = []
        for k, v in attributes.items():
            if isinstance(v, bool):
                v = int(v)
            attrs.append((k, None if v is None else str(v)))
        return cls(target, tuple(attrs))

    # -- generic access -------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self.attributes)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``; ``default`` if absent; ``None`` if it has no value."""
        for k, v in self.attributes:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str | None]:
        return [v for k, v in self.attributes if k == name]

    def get_int(self, name: str) -> int | None:
        v = self.get(name)
        if v is None:
            return None
        s = v.strip()
        body = s[1:] if s[:1] in "+-" else s
        if not body or not body.isascii() or not body.isdigit():
            raise LinkFormatError(f"attribute {name}={v[:40]!r} is not an integer")
        if len(body) > _MAX_DIGITS:
            # Far beyond any attribute's range, and int() refuses very long digit strings.
            raise LinkFormatError(f"attribute {name}={v[:40]!r}... has {len(body)} digits: out of range")
        return int(s)

    def get_float(self, name: str) -> float | None:
        v = self.get(name)
        if v is None:
            return None
        try:
            f = float(v)
        except ValueError:
            raise LinkFormatError(f"attribute {name}={v!r} is not a number") from None
        if "_" in v or f != f or f in (float("inf"), float("-inf")):
            raise LinkFormatError(f"attribute {name}={v!r} is not a finite number")
        return f

    def with_attributes(self, **attributes: str | int | float | bool | None) -> Link:
        """A copy with these attributes set (replacing any of the same name, else appended)."""
        new = Link.of(self.target, **attributes).attributes
        names = {k for k, _ in new}
        return Link(self.target, tuple(a for a in self.attributes if a[0] not in names) + new)

    # -- typed access to the attributes LwM2M uses ----------------------------------

    @property
    def content_formats(self) -> tuple[int, ...]:
        """``ct``: one number or a quoted space-separated list (RFC 7252 §7.2.1)."""
        v = self.get("ct")
        if v is None:
            return ()
        parts = v.split()
        if not parts or not all(p.isascii() and p.isdigit() and len(p) <= _MAX_DIGITS for p in parts):
            raise LinkFormatError(f"attribute ct={v[:40]!r} is not a list of content-format numbers")
        return tuple(int(p) for p in parts)

    @property
    def resource_types(self) -> tuple[str, ...]:
        """``rt``: space-separated resource type names (RFC 6690 §3.1)."""
        v = self.get("rt")
        return tuple(v.split()) if v else ()

    @property
    def ver(self) -> str | None:
        """Object version, ``ver=1.1`` (LwM2M-TS-Core 1.2 §6.2.1.1)."""
        return self.get("ver")

    @property
    def lwm2m(self) -> str | None:
        """Enabler version on the root link of Bootstrap-Discover (LwM2M-TS-Core 1.2 §5.2.7.1)."""
        return self.get("lwm2m")

    @property
    def pmin(self) -> int | None:
        return self.get_int("pmin")

    @property
    def pmax(self) -> int | None:
        return self.get_int("pmax")

    @property
    def epmin(self) -> int | None:
        return self.get_int("epmin")

    @property
    def epmax(self) -> int | None:
        return self.get_int("epmax")

    @property
    def hqmax(self) -> int | None:
        return self.get_int("hqmax")

    @property
    def dim(self) -> int | None:
        """Number of instances of a multi-instance resource (LwM2M-TS-Core 1.2 §5.1.2)."""
        return self.get_int("dim")

    @property
    def gt(self) -> float | None:
        return self.get_float("gt")

    @property
    def lt(self) -> float | None:
        return self.get_float("lt")

    @property
    def st(self) -> float | None:
        return self.get_float("st")

    @property
    def edge(self) -> bool | None:
        return self._flag("edge")

    @property
    def con(self) -> bool | None:
        return self._flag("con")

    def _flag(self, name: str) -> bool | None:
        # LwM2M-TS-Core 1.2 §5.1.2: edge and con take 0 or 1.
        v = self.get_int(name)
        if v is None:
            return None
        if v not in (0, 1):
            raise LinkFormatError(f"attribute {name}={v} must be 0 or 1")
        return bool(v)

    # -- text -----------------------------------------------------------------------

    def __str__(self) -> str:
        parts = ["<", self.target, ">"]
        for name, value in self.attributes:
            parts.append(";")
            parts.append(name)
            if value is not None:
                parts.append("=")
                parts.append(_quote(name, value))
        return "".join(parts)


def _quote(name: str, value: str) -> str:
    if value and name not in _ALWAYS_QUOTED and _PTOKEN.issuperset(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_links(links: Iterable[Link]) -> str:
    """Links joined by commas, values quoted only where needed (RFC 6690 §2)."""
    return ",".join(str(link) for link in links)


def parse_links(text: str | bytes | bytearray | memoryview) -> list[Link]:
    """Parse a link-format document; an empty document has no links.

    Raises :class:`LinkFormatError` on anything that is not link format.
    """
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LinkFormatError(f"link format is not UTF-8: {exc}") from None
    s = text
    n = len(s)
    i = 0
    links: list[Link] = []
    while True:
        while i < n and s[i] in _WS:
            i += 1
        if i >= n:
            if links:  # "a,": a separator with nothing after it
                raise LinkFormatError("link format ends with ','")
            return links
        if s[i] != "<":
            raise LinkFormatError(f"expected '<' at offset {i}, got {s[i]!r}")
        end = s.find(">", i + 1)
        if end < 0:
            raise LinkFormatError(f"unterminated link target starting at offset {i}")
        target = s[i + 1 : end]
        i = end + 1
        attrs: list[tuple[str, str | None]] = []
        while True:
            while i < n and s[i] in _WS:
                i += 1
            if i >= n:
                links.append(Link(target, tuple(attrs)))
                return links
            c = s[i]
            if c == ",":
                links.append(Link(target, tuple(attrs)))
                i += 1
                break
            if c != ";":
                raise LinkFormatError(f"expected ';' or ',' at offset {i}, got {c!r}")
            i += 1
            while i < n and s[i] in _WS:
                i += 1
            start = i
            while i < n and s[i] in _PARMNAME:
                i += 1
            if i == start:
                raise LinkFormatError(f"missing attribute name at offset {start}")
            name = s[start:i].lower()
            while i < n and s[i] in _WS:
                i += 1
            if i < n and s[i] == "=":
                i += 1
                while i < n and s[i] in _WS:
                    i += 1
                value, i = _value(s, i)
                attrs.append((name, value))
            else:
                attrs.append((name, None))


def _value(s: str, i: int) -> tuple[str, int]:
    """A quoted-string or ptoken starting at ``i``; returns (value, next offset)."""
    n = len(s)
    if i < n and s[i] == '"':
        out: list[str] = []
        i += 1
        start = i
        while True:
            q = s.find('"', i)
            b = s.find("\\", i, q if q >= 0 else n)
            if b >= 0:  # quoted-pair: the next character stands for itself
                if b + 1 >= n:
                    raise LinkFormatError("unterminated quoted value")
                out.append(s[start:b])
                out.append(s[b + 1])
                i = start = b + 2
                continue
            if q < 0:
                raise LinkFormatError("unterminated quoted value")
            out.append(s[start:q])
            return "".join(out), q + 1
    start = i
    while i < n and s[i] in _PTOKEN:
        i += 1
    return s[start:i], i
