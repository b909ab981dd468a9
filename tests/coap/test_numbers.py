"""How CoAP codes print: "2.05 Content" for users, the number for arithmetic (RFC 7252 §12.1)."""

from __future__ import annotations

from lwm2m.coap.numbers import Code, as_code, code_str, code_text


def test_a_code_prints_with_its_name() -> None:
    assert str(Code.CONTENT) == "2.05 Content"
    assert f"{Code.NOT_FOUND}" == "4.04 Not Found"
    assert "%s" % Code.CHANGED == "2.04 Changed"  # noqa: UP031 (as logging formats)
    assert str(Code.UNSUPPORTED_CONTENT_FORMAT) == "4.15 Unsupported Content Format"
    assert str(Code.GET) == "0.01 GET" and str(Code.EMPTY) == "0.00 Empty"
    assert f"{Code.CONTENT:<14}|" == "2.05 Content  |"


def test_a_code_stays_a_number() -> None:
    assert int(Code.CONTENT) == 69 and Code.CONTENT == 69 and Code.CONTENT >> 5 == 2
    assert repr(Code.CONTENT) == "<Code.CONTENT: 69>"
    assert f"{Code.CONTENT:d}" == "69" and f"{Code.CONTENT:02x}" == "45"
    assert "%d" % Code.CONTENT == "69"  # noqa: UP031 (as logging formats)
    assert Code.CONTENT.dotted == "2.05" == code_str(Code.CONTENT)
    assert {Code.CONTENT: 1}[69] == 1


def test_unregistered_codes() -> None:
    assert code_text(71) == "2.07" and code_text(69) == "2.05 Content"
    assert as_code(69) is Code.CONTENT
    assert as_code(71) == 71 and type(as_code(71)) is int
    assert as_code(300) == 300
