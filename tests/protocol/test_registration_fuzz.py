"""Register, Update and De-register parsing fuzzed: a request or a RegistrationError, nothing else
(LwM2M-TS-Core 1.2 §6.2.1-§6.2.3), whatever the query, payload and options hold."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import RegistrationError
from lwm2m.protocol.registration import (
    DeregisterRequest,
    ObjectList,
    RegisterRequest,
    Registration,
    UpdateRequest,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = ["ep", "lt", "lwm2m", "b", "Q", "sms", "x", ""]
VALUES = st.sampled_from(
    [
        None,
        "",
        "dev-1",
        "60",
        "0",
        "-1",
        "1.1",
        "1.0",
        '"1.0"',
        "U",
        "UQ",
        "UQS",
        "T",
        "Z",
        "9" * 30,
        "9" * 5000,
        "\u0663",
        "\udcff",
    ]
) | st.text(max_size=8)
PAYLOADS = st.sampled_from(
    [
        b"",
        b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303>;ver=1.1',
        b'</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>',
        b"</>;ct=" + b"9" * 5000,
        b"</" + b"9" * 5000 + b">",
        b"</3/" + b"9" * 5000 + b">",
        b"</3303>;ver=" + b"1" * 5000,
        b'</a>,</b>;rt="oma.lwm2m",</c>;rt="oma.lwm2m"',
        b"\xff\xfe",
        b"<",
    ]
) | st.binary(max_size=40)


def query_item(name: str, value: str | None) -> bytes:
    text = name if value is None else f"{name}={value}"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def messages(draw: st.DrawFn) -> Message:
    path = draw(st.sampled_from([["rd"], ["rd", "abc"], ["rd", ""], [], ["x"], ["rd", "a", "b"]]))
    options = [(OptionNumber.URI_PATH, p.encode()) for p in path]
    options += [
        (OptionNumber.URI_QUERY, query_item(n, v))
        for n, v in draw(st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=5))
    ]
    fmt = draw(st.sampled_from([None, b"", b"\x28", b"\x00\x28", b"\x6e", b"\xff" * 5]))
    if fmt is not None:
        options.append((OptionNumber.CONTENT_FORMAT, fmt))
    options.sort(key=lambda o: o[0])
    code = draw(st.sampled_from([Code.POST, Code.DELETE, Code.GET, Code.PUT]))
    return Message(Type.CON, code, 1, b"t", tuple(options), draw(PAYLOADS))


def parse_or_registration_error(msg: Message) -> None:
    for parse in (
        lambda m: RegisterRequest.from_message(m),
        lambda m: RegisterRequest.from_message(m, endpoint="from-credentials"),
        lambda m: UpdateRequest.from_message(m),
        lambda m: UpdateRequest.from_message(m, lwm2m_version="1.0"),
        lambda m: DeregisterRequest.from_message(m),
    ):
        try:
            request = parse(msg)
        except RegistrationError as exc:
            assert str(exc)
            continue
        if isinstance(request, RegisterRequest):
            registration = Registration.from_request(request, ("127.0.0.1", 5683), 0.0)
            assert Registration.from_dict(registration.to_dict()) == registration


@pytest.mark.parametrize(
    ("query", "payload"),
    [
        ([b"ep=dev"], b"</3/" + b"9" * 5000 + b">"),
        ([b"ep=dev"], b"</" + b"9" * 5000 + b">"),
        ([b"ep=dev"], b"</>;ct=" + b"9" * 5000),
    ],
    ids=["instance-id", "object-id", "content-format"],
)
def test_thousands_of_digits_are_registration_errors(query: list[bytes], payload: bytes) -> None:
    options = [(OptionNumber.URI_PATH, b"rd"), *((OptionNumber.URI_QUERY, q) for q in query)]
    msg = Message(Type.CON, Code.POST, 1, b"t", tuple(options), payload)
    with pytest.raises(RegistrationError):
        RegisterRequest.from_message(msg)


def test_a_lifetime_of_thousands_of_digits_is_no_foreign_error() -> None:
    query = (b"ep=dev", b"lt=" + b"9" * 5000)
    options = [(OptionNumber.URI_PATH, b"rd"), *((OptionNumber.URI_QUERY, q) for q in query)]
    with contextlib.suppress(RegistrationError):  # clamped or refused, as the server is configured
        RegisterRequest.from_message(Message(Type.CON, Code.POST, 1, b"t", tuple(options)))


@FUZZ
@given(messages())
def test_near_valid_requests(msg: Message) -> None:
    parse_or_registration_error(msg)


@FUZZ
@given(st.binary(max_size=100))
def test_random_payloads(payload: bytes) -> None:
    with contextlib.suppress(RegistrationError):
        ObjectList.parse(payload)
