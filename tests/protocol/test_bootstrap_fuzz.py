"""Bootstrap-Request, Bootstrap-Pack-Request and the downlink operations fuzzed: a request or a
BootstrapError, nothing else (LwM2M-TS-Core 1.2 §6.1)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import BootstrapError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.protocol.bootstrap import BootstrapPackRequest, BootstrapRequest, parse_downlink

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = load_catalogue()

VALUES = st.sampled_from(
    [None, "", "dev-1", "112", "11542", "65536", "9" * 5000, "\u0663", "-1", "0x70"]
) | st.text(max_size=6)
PATHS = st.sampled_from(
    [["bs"], ["bspack"], [], ["0"], ["0", "1"], ["1", "0", "1"], ["x"], ["3", "0", "0", "0", "0"]]
)
UINT_OPTIONS = st.sampled_from([b"", b"\x28", b"\x00\x70", b"\x2d\x16", b"\xff" * 5])


@st.composite
def messages(draw: st.DrawFn) -> Message:
    options = [(OptionNumber.URI_PATH, p.encode()) for p in draw(PATHS)]
    for name, value in draw(st.lists(st.tuples(st.sampled_from(["ep", "pct", "x", ""]), VALUES), max_size=3)):
        text = name if value is None else f"{name}={value}"
        options.append((OptionNumber.URI_QUERY, text.encode("utf-8", "surrogatepass")))
    for number in (OptionNumber.CONTENT_FORMAT, OptionNumber.ACCEPT, OptionNumber.OBSERVE):
        value = draw(st.none() | UINT_OPTIONS)
        if value is not None:
            options.append((number, value))
    options.sort(key=lambda o: o[0])
    code = draw(st.sampled_from([Code.POST, Code.GET, Code.PUT, Code.DELETE, Code.FETCH]))
    payload = draw(
        st.sampled_from([b"", b"\xc8\x00\x01x", b"[{", b"\xbf", b"</0/1>"]) | st.binary(max_size=24)
    )
    return Message(Type.CON, code, 1, b"t", tuple(options), payload)


def test_a_preferred_content_format_of_thousands_of_digits() -> None:
    msg = Message.build(Type.CON, Code.POST, uri_path="/bs", uri_query=["ep=dev", "pct=" + "9" * 5000])
    with pytest.raises(BootstrapError, match="pct"):
        BootstrapRequest.from_message(msg)


@FUZZ
@given(messages())
def test_near_valid_messages(msg: Message) -> None:
    for parse in (
        BootstrapRequest.from_message,
        lambda m: BootstrapRequest.from_message(m, endpoint="from-credentials"),
        BootstrapPackRequest.from_message,
        lambda m: parse_downlink(m, MODELS),
        parse_downlink,
    ):
        try:
            parse(msg)
        except BootstrapError as exc:
            assert str(exc)
