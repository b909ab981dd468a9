"""Fuzzing the OSCORE decoders: any option value, and any protected request or response, gives
the message or an OscoreError (whose ``code`` is a 4.xx of RFC 8613 §8.2), never anything else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.oscore import OSCORE_OPTION, OscoreConfig, OscoreContext, OscoreOption, RequestBinding
from lwm2m.errors import OscoreError

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG = OscoreConfig(b"0123456789abcdef", sender_id=b"\x01", recipient_id=b"")
SERVER = OscoreContext(CONFIG.peer())
CLIENT = OscoreContext(CONFIG)


@FUZZ
@given(st.binary(max_size=40))
def test_option_values(value: bytes) -> None:
    try:
        option = OscoreOption.decode(value)
    except OscoreError as exc:
        assert exc.code == Code.BAD_OPTION
        return
    assert option.encode() == value  # what decodes encodes back to the same bytes


@FUZZ
@given(
    st.builds(
        OscoreOption,
        st.none() | st.binary(max_size=5),
        st.none() | st.binary(max_size=7),
        st.none() | st.binary(max_size=20),
    )
)
def test_option_round_trip(option: OscoreOption) -> None:
    assert OscoreOption.decode(option.encode()) == OscoreOption(
        option.piv or None, option.kid, option.kid_context
    )


@FUZZ
@given(st.binary(max_size=12), st.binary(max_size=60), st.sampled_from([Code.POST, Code.FETCH, Code.GET]))
def test_protected_requests(option: bytes, payload: bytes, code: int) -> None:
    message = Message(Type.CON, code, 1, b"t", ((OSCORE_OPTION, option),), payload)
    try:
        SERVER.unprotect_request(message)
    except OscoreError as exc:
        assert exc.code >> 5 == 4


@FUZZ
@given(st.binary(max_size=60), st.integers(0, 255))
def test_authentic_plaintexts(plaintext: bytes, code: int) -> None:
    # Bytes that pass the AEAD but are no CoAP message inside: refused as malformed.
    from lwm2m.coap.oscore.cose import aad, nonce

    piv = CLIENT.sequence.take().to_bytes(5, "big").lstrip(b"\0") or b"\0"
    sealed = CLIENT._seal.encrypt(
        nonce(CLIENT.common_iv, b"\x01", piv), bytes((code,)) + plaintext, aad(b"\x01", piv)
    )
    value = OscoreOption(piv, b"\x01").encode()
    message = Message(Type.CON, Code.POST, 1, b"t", ((OSCORE_OPTION, value),), sealed)
    try:
        SERVER.unprotect_request(message)
    except OscoreError as exc:
        assert exc.code >> 5 == 4


@FUZZ
@given(st.binary(max_size=12), st.binary(max_size=60))
def test_protected_responses(option: bytes, payload: bytes) -> None:
    message = Message(Type.ACK, Code.CHANGED, 1, b"t", ((OSCORE_OPTION, option),), payload)
    try:
        CLIENT.unprotect_response(message, RequestBinding(b"\x01", b"\x05"))
    except OscoreError as exc:
        assert exc.code >> 5 == 4


class _Directory:
    def __init__(self) -> None:
        self.asked: set[tuple[bytes, bytes | None]] = set()

    def lookup(self, kid: bytes, kid_context: bytes | None, now: float) -> object:
        self.asked.add((kid, kid_context))
        return "wait"

    def verified(self, context: OscoreContext, now: float) -> None:
        pass


@FUZZ
@given(st.binary(max_size=12), st.binary(max_size=60))
def test_protected_requests_with_a_directory(option: bytes, payload: bytes) -> None:
    # A layer that looks contexts up: any request is answered, looked up, or (tried again) answered.
    from lwm2m.coap.events import RequestReceived
    from lwm2m.coap.oscore import OscoreLayer, OscoreLookup

    layer = OscoreLayer()
    layer.add(OscoreContext(CONFIG.peer()))
    layer.directory = _Directory()  # type: ignore[assignment]
    event = RequestReceived(
        ("10.0.0.1", 5683), Message(Type.CON, Code.POST, 1, b"t", ((OSCORE_OPTION, option),), payload)
    )
    first = layer.unprotect_request(event, 0.0)
    assert isinstance(first, (Message, OscoreLookup))
    again = layer.unprotect_request(event, 0.0, lookup=False)
    assert isinstance(again, Message) and again.code >> 5 == 4
