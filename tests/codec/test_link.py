"""Link format (40) as a codec: LwM2M paths of a Register or Discover payload as records."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.codec.link import LINK, decode_links, encode_links, link_paths
from lwm2m.codec.linkformat import Link
from lwm2m.errors import CodecError
from lwm2m.model import Path, Record

P = Path.parse


def test_registration_payload_gives_one_record_per_lwm2m_path() -> None:
    data = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1,</rd>,<coap://x/1>'
    assert LINK.decode(data, P("/")) == [Record(P("/1/0")), Record(P("/3/0")), Record(P("/3303"))]


def test_alternate_root_path() -> None:
    # LwM2M-TS-Core 1.2 §6.2.1.1: objects hosted under /lwm2m
    data = b'</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>,</other/5>'
    assert LINK.decode(data, P("/")) == [Record(P("/1/0")), Record(P("/3/0"))]
    paths = link_paths(decode_links(data))
    assert [str(p) for p, _ in paths] == ["/1/0", "/3/0"]


def test_discover_answer_keeps_attributes_through_decode_links() -> None:
    links = decode_links(b"</3/0>;pmin=10,</3/0/7>;dim=2")
    assert [(str(p), link.pmin, link.dim) for p, link in link_paths(links)] == [
        ("/3/0", 10, None),
        ("/3/0/7", None, 2),
    ]
    assert encode_links(links) == b"</3/0>;pmin=10,</3/0/7>;dim=2"


def test_encode_paths() -> None:
    records = [Record(P("/3/0/7")), Record(P("/3/0")), Record(P("/3/0"))]
    assert LINK.encode(records, P("/3")) == b"</3/0>,</3/0/7>"
    with pytest.raises(CodecError):
        LINK.encode([Record(P("/3/0/1"), "x")], P("/3"))
    with pytest.raises(CodecError):
        LINK.encode([Record(P("/4/0"))], P("/3"))


def test_bad_payloads_raise_codec_error() -> None:
    for data in (b"</a", b"\xff", b'</a>;x="', b"junk"):
        with pytest.raises(CodecError):
            LINK.decode(data, P("/"))


PATHS = st.lists(st.integers(0, 65534), min_size=1, max_size=4).map(lambda ids: Path(tuple(ids)))


@given(st.lists(PATHS, max_size=8))
def test_round_trip(paths: list[Path]) -> None:
    records = [Record(p) for p in paths]
    expected = [Record(p) for p in sorted(set(paths))]
    assert LINK.decode(LINK.encode(records, P("/")), P("/")) == expected


@given(st.binary(max_size=80))
def test_fuzz(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        LINK.decode(data, P("/"))


def test_link_targets_survive() -> None:
    assert encode_links([Link.of("/1/0", ssid=1)]) == b"</1/0>;ssid=1"
