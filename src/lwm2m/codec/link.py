"""Link format, content format 40 (RFC 6690), as LwM2M uses it.

Discover answers and Register/Update payloads (LwM2M-TS-Core 1.2 §6.2.1.1,
§6.3.4) are lists of links; their attributes matter to the protocol layer,
which works with :func:`decode_links` / :func:`encode_links`. The
:data:`LINK` codec gives the record view for tools: one record without
value per link whose target is an LwM2M path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lwm2m.codec.base import ContentFormat, check_under
from lwm2m.codec.linkformat import Link, parse_links, serialize_links
from lwm2m.errors import CodecError, InvalidPath, LinkFormatError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry

__all__ = ["LINK", "LinkCodec", "decode_links", "encode_links", "link_paths"]


def encode_links(links: Iterable[Link]) -> bytes:
    return serialize_links(links).encode("utf-8")


def decode_links(data: bytes) -> list[Link]:
    """The links of a link-format payload; CodecError if it is not link format."""
    try:
        return parse_links(data)
    except LinkFormatError as exc:
        raise CodecError(f"invalid link format: {exc}") from None


def link_paths(links: Iterable[Link], *, prefixed: bool = False) -> list[tuple[Path, Link]]:
    """The links whose target is an LwM2M path, with that path.

    With ``prefixed``, targets may name an end device behind a gateway (``</dev1/3303/0>``,
    LwM2M-TS-Gateway 1.1, object 25); without, such targets are left out as foreign ones.

    A client may host its objects under an alternate path, announced by a
    link with ``rt="oma.lwm2m"`` (LwM2M-TS-Core 1.2 §6.2.1.1, e.g.
    ``</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>``); targets under it are read
    relative to it. Other targets (``</>``, ``</lwm2m>`` itself, foreign
    URIs) are left out.
    """
    root = ""
    for link in links:
        if "oma.lwm2m" in link.resource_types:
            root = link.target.rstrip("/")
            break
    out: list[tuple[Path, Link]] = []
    for link in links:
        target = link.target
        if root:
            if not target.startswith(root + "/"):
                continue
            target = target[len(root) :]
        if target in ("", "/") or not target.startswith("/"):
            continue
        try:
            out.append((Path.parse(target, prefixed=prefixed), link))
        except InvalidPath:
            continue
    return out


class LinkCodec:
    content_format = ContentFormat.LINK
    name = "link"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        check_under(records, base)
        for r in records:
            if r.value is not None:
                raise CodecError(f"link format carries paths, not values ({r.path})")
        paths = sorted({r.path for r in records})
        return encode_links(Link(str(p)) for p in paths)

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        found = {path for path, _ in link_paths(decode_links(data), prefixed=bool(base.prefix))}
        return [Record(p) for p in sorted(found)]


LINK = LinkCodec()
