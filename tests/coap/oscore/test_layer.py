"""The OSCORE layer of an endpoint, sans-IO: which context verifies a request (by kid and kid
context), the unprotected errors of RFC 8613 §8.2, the bindings of observe relations and of our
requests in flight (bounded), and the Echo retry of RFC 9175 §2.4."""

from __future__ import annotations

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.oscore import (
    OSCORE_OPTION,
    OscoreConfig,
    OscoreContext,
    OscoreLayer,
    OscoreLookup,
    OscoreRequestReceived,
    PendingRequest,
)
from lwm2m.coap.oscore.context import ECHO_OPTION

DEVICE = OscoreConfig(b"0123456789abcdef", sender_id=b"\x01", recipient_id=b"")
PEER = ("10.0.0.1", 5683)


def get(path: str = "/3/0", **kw: object) -> Message:
    return Message.build(Type.CON, Code.GET, 9, b"tk", uri_path=path, **kw)  # type: ignore[arg-type]


def served() -> tuple[OscoreLayer, OscoreContext]:
    layer = OscoreLayer(max_entries=4)
    layer.add(OscoreContext(DEVICE.peer()))
    return layer, OscoreContext(DEVICE)


def test_a_request_is_verified_bound_to_its_peer_and_answered_protected() -> None:
    layer, device = served()
    outer, sent = device.protect_request(get())
    inner = layer.unprotect_request(RequestReceived(PEER, outer), 0.0)
    assert isinstance(inner, OscoreRequestReceived) and inner.message.uri_path == ("3", "0")
    assert inner.protected is not None and inner.protected.message is outer
    assert layer.context_for(PEER) is inner.context  # our requests to that peer: protected too
    event, answer = layer.protect_response(inner, Message(Type.ACK, Code.CONTENT, payload=b"x"))
    assert event is inner.protected and answer.code == Code.CHANGED
    assert device.unprotect_response(answer, sent)[0].payload == b"x"
    plain = RequestReceived(PEER, get())
    assert layer.protect_response(plain, Message(Type.ACK, Code.CONTENT)) == (
        plain,
        Message(Type.ACK, Code.CONTENT),
    )


def test_requests_that_do_not_verify_get_the_unprotected_errors_of_8_2() -> None:
    layer, device = served()
    outer, _ = device.protect_request(get())
    stranger = OscoreContext(OscoreConfig(b"k", sender_id=b"\x07", recipient_id=b""))
    cases = (
        (outer.with_option(OSCORE_OPTION, b"\xe0"), Code.BAD_OPTION, b"reserved flag bits"),
        (stranger.protect_request(get())[0], Code.UNAUTHORIZED, b"Security context not found"),
        (outer.replace(payload=outer.payload[:-1] + b"\0"), Code.BAD_REQUEST, b"Decryption failed"),
    )
    for message, code, diagnostic in cases:
        answer = layer.unprotect_request(RequestReceived(PEER, message), 0.0)
        assert isinstance(answer, Message) and answer.code == code and diagnostic in answer.payload
        assert answer.option(OSCORE_OPTION) is None and answer.option(OptionNumber.MAX_AGE) == b""
    assert isinstance(layer.unprotect_request(RequestReceived(PEER, outer), 0.0), OscoreRequestReceived)
    replay = layer.unprotect_request(RequestReceived(PEER, outer), 0.0)
    assert isinstance(replay, Message) and replay.payload == b"Replay detected"


def test_notifications_of_an_accepted_registration_are_protected_until_an_error() -> None:
    layer, device = served()
    outer, sent = device.protect_request(get(observe=0))
    inner = layer.unprotect_request(RequestReceived(PEER, outer, observe=0), 0.0)
    assert isinstance(inner, OscoreRequestReceived)
    layer.protect_response(inner, Message.build(Type.ACK, Code.CONTENT, observe=0, payload=b"1"))
    assert layer.relations == 1
    note = layer.protect_notification(inner.relation, Message(Type.NON, Code.CONTENT, payload=b"2"))
    assert note is not None and note.option(OSCORE_OPTION) not in (None, b"")
    assert device.unprotect_response(note.with_option(OptionNumber.OBSERVE, 5), sent)[0].payload == b"2"
    end = layer.protect_notification(inner.relation, Message(Type.NON, Code.NOT_FOUND))
    assert end is not None and layer.relations == 0
    assert layer.protect_notification(inner.relation, Message(Type.NON, Code.CONTENT)) is None


def test_state_is_bounded() -> None:
    layer, device = served()
    for n in range(10):
        layer.track(bytes((n,)), device_pending(device))
        layer.bind_peer(("10.0.0.9", n), device)
    assert len(layer.pending) == 4 and list(layer.pending) == [bytes((n,)) for n in range(6, 10)]


def device_pending(device: OscoreContext) -> PendingRequest:
    _, binding = device.protect_request(get())
    return PendingRequest(device, binding, get())


def test_an_echo_challenge_is_answered_once() -> None:
    layer = OscoreLayer()
    device = OscoreContext(DEVICE)
    layer.add(device, peer=PEER)
    outer, pending = layer.protect_request(get(), PEER) or (None, None)
    assert outer is not None and pending is not None
    layer.track(b"tk", pending)
    challenge = Message(Type.ACK, Code.UNAUTHORIZED, options=((ECHO_OPTION, b"e1"),))
    again = layer.echo_retry(b"tk", challenge)
    assert again is not None and again.option(ECHO_OPTION) == b"e1"
    _, second = layer.protect_request(again, PEER) or (None, None)
    assert second is not None
    layer.track(b"tk", second)
    assert layer.echo_retry(b"tk", challenge) is None  # carried an Echo already: no loop
    assert layer.echo_retry(b"tk", Message(Type.ACK, Code.UNAUTHORIZED)) is None


class Directory:
    """A directory that knows ``DEVICE``'s context and tells of each look-up and verified request."""

    def __init__(self, layer: OscoreLayer) -> None:
        self.layer = layer
        self.asked: list[tuple[bytes, bytes | None]] = []
        self.verified_with: list[OscoreContext] = []

    def lookup(self, kid: bytes, kid_context: bytes | None, now: float) -> object:
        self.asked.append((kid, kid_context))
        self.layer.add(OscoreContext(DEVICE.peer()))
        return "the look-up"

    def verified(self, context: OscoreContext, now: float) -> None:
        self.verified_with.append(context)


def test_a_context_the_layer_lacks_is_looked_up_then_the_request_tried_again() -> None:
    layer = OscoreLayer()
    directory = Directory(layer)
    layer.directory = directory  # type: ignore[assignment]
    outer, _ = OscoreContext(DEVICE).protect_request(get())
    event = RequestReceived(PEER, outer)
    wait = layer.unprotect_request(event, 0.0)
    assert isinstance(wait, OscoreLookup) and wait.done == "the look-up"
    assert directory.asked == [(b"\x01", None)]
    inner = layer.unprotect_request(event, 0.0, lookup=False)
    assert isinstance(inner, OscoreRequestReceived) and directory.verified_with == [inner.context]
    # Tried again without a look-up: an unknown kid is the 4.01 of §8.2, the directory not asked.
    stranger = OscoreContext(OscoreConfig(b"k", sender_id=b"\x07", recipient_id=b""))
    refused = layer.unprotect_request(
        RequestReceived(PEER, stranger.protect_request(get())[0]), 0.0, lookup=False
    )
    assert isinstance(refused, Message) and refused.code == Code.UNAUTHORIZED
    assert directory.asked == [(b"\x01", None)]
