"""Link format fuzzed with every typed attribute accessor: only LinkFormatError escapes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.codec.link import LINK, link_paths
from lwm2m.codec.linkformat import parse_links
from lwm2m.errors import CodecError, LinkFormatError
from lwm2m.model.path import Path

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROPERTIES = (
    "content_formats",
    "resource_types",
    "ver",
    "lwm2m",
    "pmin",
    "pmax",
    "epmin",
    "epmax",
    "hqmax",
    "dim",
    "gt",
    "lt",
    "st",
    "edge",
    "con",
)
NAMES = ["ct", "rt", "ssid", *PROPERTIES[2:]]
VALUES = st.sampled_from(
    [
        "",
        "0",
        "1",
        "-1",
        "+5",
        "1.5",
        "1e999",
        "nan",
        "1_000",
        "9" * 5000,
        "\u0663",
        '"110 112"',
        '"110  x"',
        '"' + "1 " * 50 + '"',
        "0x10",
    ]
) | st.text(alphabet="0123456789+-.e ", max_size=12)


def read_everything(payload: str | bytes) -> None:
    try:
        links = parse_links(payload)
    except LinkFormatError:
        return
    for link in links:
        str(link)
        for name in PROPERTIES:
            with contextlib.suppress(LinkFormatError):
                getattr(link, name)
        for name, _ in link.attributes:
            for read in (link.get_int, link.get_float):
                with contextlib.suppress(LinkFormatError):
                    read(name)
    link_paths(links)


@pytest.mark.parametrize("name", ["pmin", "dim", "edge", "ct", "ssid"])
def test_integer_attribute_with_thousands_of_digits(name: str) -> None:
    (link,) = parse_links(f"</3/0>;{name}={'9' * 5000}")
    with pytest.raises(LinkFormatError, match=r"digits|content-format"):
        link.get_int(name) if name != "ct" else link.content_formats


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=5))
def test_known_attributes_with_hostile_values(attrs: list[tuple[str, str]]) -> None:
    text = "</3/0/7>" + "".join(f";{k}={v}" if v else f";{k}" for k, v in attrs)
    read_everything(text)
    read_everything(text.encode())


@FUZZ
@given(st.binary(max_size=120))
def test_random_bytes(data: bytes) -> None:
    read_everything(data)
    with contextlib.suppress(CodecError):
        LINK.decode(data, Path(()))


@FUZZ
@given(st.text(alphabet='<>;,="\\ /0123456789abcdtrmpinx.\u0663', max_size=80))
def test_random_link_like_text(text: str) -> None:
    read_everything(text)
