"""The codec registry: content formats by number and name."""

from __future__ import annotations

import pytest

from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import format_names, get_codec
from lwm2m.errors import CodecError


@pytest.mark.parametrize(
    ("name", "number"),
    [("text", 0), ("link", 40), ("opaque", 42), ("cbor", 60), ("tlv", 11542)],
)
def test_by_name_and_number(name: str, number: int) -> None:
    codec = get_codec(name)
    assert codec is get_codec(number) is get_codec(ContentFormat(number)) is get_codec(name.upper())
    assert codec.name == name
    assert codec.content_format == number
    assert get_codec(str(number)) is codec


def test_all_formats_are_known() -> None:
    names = format_names()
    assert set(names.values()) == {int(f) for f in ContentFormat}
    for name, number in names.items():
        try:
            codec = get_codec(name)
        except CodecError as exc:  # a format whose module is not there yet
            assert "not available" in str(exc)
        else:
            assert codec.content_format == number
            assert get_codec(name.replace("-", "_")) is codec


@pytest.mark.parametrize("fmt", ["xml", 50, "", 11545, True])
def test_unknown_formats_list_the_known_names(fmt: object) -> None:
    with pytest.raises(CodecError) as info:
        get_codec(fmt)  # type: ignore[arg-type]
    assert "senml-json" in str(info.value) and "tlv (11542)" in str(info.value)
