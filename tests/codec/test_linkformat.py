"""RFC 6690 link format: LwM2M registration and Discover payloads, quoting, errors, round trips, fuzz."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.codec.linkformat import Link, parse_links, serialize_links
from lwm2m.errors import LinkFormatError


def test_registration_payload() -> None:
    # LwM2M-TS-Core 1.2 §6.2.1.1
    links = parse_links(b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1')
    assert [link.target for link in links] == ["/", "/1/0", "/3/0", "/3303"]
    root = links[0]
    assert root.resource_types == ("oma.lwm2m",)
    assert root.content_formats == (110,)
    assert root.get("rt") == "oma.lwm2m"
    assert links[1].attributes == ()
    assert links[3].ver == "1.1"
    assert serialize_links(links) == '</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1'


def test_discover_answer_attributes() -> None:
    # LwM2M-TS-Core 1.2 §6.3.4: Discover with attributes
    text = (
        "</3/0>;pmin=10;pmax=60,</3/0/1>,"
        "</3/0/7>;dim=2;gt=50.5;lt=-3;st=0.5;epmin=1;epmax=5;edge=1;con=0;hqmax=3"
    )
    inst, model, voltage = parse_links(text)
    assert (inst.pmin, inst.pmax, inst.dim) == (10, 60, None)
    assert model.attributes == ()
    assert voltage.dim == 2
    assert (voltage.gt, voltage.lt, voltage.st) == (50.5, -3.0, 0.5)
    assert (voltage.epmin, voltage.epmax, voltage.hqmax) == (1, 5, 3)
    assert (voltage.edge, voltage.con) == (True, False)
    assert serialize_links([inst, model, voltage]) == text


def test_bootstrap_discover_lwm2m_version_and_ssid() -> None:
    links = parse_links('</>;lwm2m="1.2",</0/1>;ssid=101;uri="coap://server:5683",</1/0>;ssid=101')
    assert links[0].lwm2m == "1.2"
    assert links[1].get_int("ssid") == 101
    assert links[1].get("uri") == "coap://server:5683"


def test_quoted_values_may_hold_commas_semicolons_and_escapes() -> None:
    (link,) = parse_links(r'</a>;title="x, y; z";note="say \"hi\" \\ ok";ct="40 110"')
    assert link.get("title") == "x, y; z"
    assert link.get("note") == 'say "hi" \\ ok'
    assert link.content_formats == (40, 110)
    assert parse_links(serialize_links([link])) == [link]


def test_valueless_attributes_case_and_whitespace() -> None:
    (a, b) = parse_links(' </a> ; obs ; CT = 0 ,\n</b>;ct=""')
    assert a.attributes == (("obs", None), ("ct", "0"))
    assert "obs" in a and a.get("obs") is None and a.get("missing", "d") == "d"
    assert b.get("ct") == ""
    assert str(a) == "</a>;obs;ct=0"
    assert str(b) == '</b>;ct=""'


def test_empty_document_and_repeated_attributes() -> None:
    assert parse_links("") == []
    assert parse_links("  ") == []
    (link,) = parse_links('</a>;rt="x";rt="y"')
    assert link.get_all("rt") == ["x", "y"]


def test_building_links() -> None:
    link = Link.of("/3/0/7", pmin=10, gt=20.5, edge=True, obs=None)
    assert str(link) == "</3/0/7>;pmin=10;gt=20.5;edge=1;obs"
    assert link.with_attributes(pmin=5, dim=2).attributes == (
        ("gt", "20.5"),
        ("edge", "1"),
        ("obs", None),
        ("pmin", "5"),
        ("dim", "2"),
    )
    assert str(Link("/", (("rt", "oma.lwm2m"),))) == '</>;rt="oma.lwm2m"'


@pytest.mark.parametrize(
    "text",
    [
        "/3/0",
        "<3/0",
        '</a>;rt="x',
        '</a>;rt="x\\',
        "</a>,",
        "</a>;",
        "</a>;=1",
        "</a> x",
        "</a>;a=b c",
        '</a>;a="b"c',
        "</a>,,</b>",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(LinkFormatError):
        parse_links(text)


def test_non_utf8_and_bad_typed_values() -> None:
    with pytest.raises(LinkFormatError):
        parse_links(b"</\xff>")
    (link,) = parse_links("</a>;pmin=x;gt=nan;edge=2;ct=abc")
    for getter in (lambda: link.pmin, lambda: link.gt, lambda: link.edge, lambda: link.content_formats):
        with pytest.raises(LinkFormatError):
            getter()
    with pytest.raises(LinkFormatError):
        Link("a>b")
    with pytest.raises(LinkFormatError):
        Link("/a", (("bad name", "1"),))


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8)
VALUES = st.none() | st.text(max_size=12)
LINKS = st.builds(
    Link,
    st.text(max_size=12).filter(lambda t: ">" not in t),
    st.lists(st.tuples(NAMES, VALUES), max_size=4).map(tuple),
)


@given(st.lists(LINKS, max_size=5))
def test_round_trip(links: list[Link]) -> None:
    assert parse_links(serialize_links(links)) == links
    assert parse_links(serialize_links(links).encode()) == links


SEED = '</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>;pmin=10,</3/0/7>;dim=2;title="a,b;c\\"d",</3303>;ver=1.1'


@given(st.data())
@settings(max_examples=500)
def test_fuzz_raises_only_link_format_error(data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        text = data.draw(st.text(alphabet='<>;,="\\ /abc123\n', max_size=80))
    else:
        chars = list(SEED)
        for _ in range(data.draw(st.integers(1, 5))):
            i = data.draw(st.integers(0, len(chars) - 1))
            chars[i] = data.draw(st.sampled_from('<>;,="\\ x'))
        text = "".join(chars)
    start = time.perf_counter()
    with contextlib.suppress(LinkFormatError):
        for link in parse_links(text):
            for name, _ in link.attributes:
                with contextlib.suppress(LinkFormatError):
                    link.get_int(name)
                with contextlib.suppress(LinkFormatError):
                    link.get_float(name)
            with contextlib.suppress(LinkFormatError):
                _ = link.content_formats
    assert time.perf_counter() - start < 0.5
