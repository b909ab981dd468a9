"""The stored form of a registration in Redis fuzzed with hypothesis: any MessagePack value gives
a registration or ``msgspec.DecodeError``, never another exception; every registration, with any
transport, reads back as written."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.protocol.registration import Registration
from lwm2m.storage.redis_registrations import _registration, registration_bytes

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
values: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=30
)


@settings(max_examples=150, deadline=None)
@given(form=st.sampled_from([1, 2, 3, None]), rest=st.lists(values, max_size=18))
def test_any_value_is_a_registration_or_a_decode_error(form: Any, rest: list[Any]) -> None:
    data = msgspec.msgpack.encode([form, *rest])
    try:
        registration = _registration(data)
    except msgspec.DecodeError:
        return
    assert isinstance(registration, Registration)


@settings(max_examples=50, deadline=None)
@given(transport=st.sampled_from(["udp", "dtls", "tcp", "tls"]), port=st.integers(0, 65535))
def test_a_registration_reads_back_with_its_transport(transport: str, port: int) -> None:
    registration = Registration("ep", "r1", ("192.0.2.1", port), transport=transport)
    assert _registration(registration_bytes(registration)) == registration


@given(data=st.binary(max_size=64))
def test_any_bytes_are_a_registration_or_a_decode_error(data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):
        _registration(data)
