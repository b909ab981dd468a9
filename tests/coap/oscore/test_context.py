"""OSCORE contexts beyond the vectors: replay window (RFC 8613 §7.4), sender sequence numbers
stored in ranges (Appendix B.1.1), the Echo challenge after a restart (Appendix B.1.2, RFC 9175),
Observe (§4.1.3.5), option classes (§4.1), and the errors of §8.2."""

from __future__ import annotations

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.oscore import OSCORE_OPTION, OscoreConfig, OscoreContext, OscoreReplayWindow, SenderSequence
from lwm2m.coap.oscore.context import ECHO_OPTION
from lwm2m.errors import (
    ConfigError,
    OscoreContextNotFound,
    OscoreDecryptFailed,
    OscoreEchoRequired,
    OscoreOptionError,
    OscoreReplay,
    OscoreSequenceUnavailable,
)

CONFIG = OscoreConfig(b"secret-of-16-byt", sender_id=b"\x0a", recipient_id=b"\x0b", master_salt=b"salt")


def pair() -> tuple[OscoreContext, OscoreContext]:
    return OscoreContext(CONFIG), OscoreContext(CONFIG.peer())


def get(path: str = "/3/0", **kw: object) -> Message:
    return Message.build(Type.CON, Code.GET, 7, b"\x01\x02", uri_path=path, **kw)  # type: ignore[arg-type]


def test_replay_window_refuses_repeats_and_old_numbers() -> None:
    client, server = pair()
    sent = [client.protect_request(get())[0] for _ in range(40)]
    for i in (5, 3, 4, 39):
        server.unprotect_request(sent[i])
    for i in (5, 3, 39, 7):  # 7 lies more than 31 below 39
        with pytest.raises(OscoreReplay, match="Replay detected") as exc:
            server.unprotect_request(sent[i])
        assert exc.value.code == Code.UNAUTHORIZED
    server.unprotect_request(sent[20])


def test_window_alone() -> None:
    w = OscoreReplayWindow(4)
    assert not w.seen(0)
    w.accept(0)
    assert w.seen(0)
    w.accept(10)
    assert w.seen(6) and not w.seen(7) and not w.seen(9) and w.seen(10)
    w.accept(8)
    assert w.seen(8)
    w.initialize(20)
    assert w.seen(20) and w.seen(19) and not w.seen(21)


def test_a_tampered_request_is_refused_and_costs_nothing() -> None:
    client, server = pair()
    outer, _ = client.protect_request(get())
    bad = outer.replace(payload=bytes([outer.payload[0] ^ 1]) + outer.payload[1:])
    with pytest.raises(OscoreDecryptFailed, match="Decryption failed") as exc:
        server.unprotect_request(bad)
    assert exc.value.code == Code.BAD_REQUEST
    server.unprotect_request(outer)  # its Partial IV was not spent by the forgery


def test_unknown_kid_and_bad_option() -> None:
    client, server = pair()
    outer, _ = client.protect_request(get())
    with pytest.raises(OscoreContextNotFound, match="Security context not found") as exc:
        OscoreContext(OscoreConfig(b"k", sender_id=b"\x0b", recipient_id=b"\x0c")).unprotect_request(outer)
    assert exc.value.code == Code.UNAUTHORIZED
    with pytest.raises(OscoreOptionError) as bad:
        server.unprotect_request(outer.with_option(OSCORE_OPTION, b"\x20"))
    assert bad.value.code == Code.BAD_OPTION
    with pytest.raises(OscoreOptionError, match="kid and a Partial IV"):
        server.unprotect_request(outer.with_option(OSCORE_OPTION, b"\x01\x05"))
    with pytest.raises(OscoreOptionError, match="no OSCORE option"):
        server.unprotect_request(get())


def test_class_e_options_are_encrypted_and_class_u_stay_outside() -> None:
    client, server = pair()
    req = get(
        "/1/0", uri_query=["pmin=1"], observe=0, options=[(OptionNumber.URI_HOST, b"h"), (ECHO_OPTION, b"e")]
    )
    outer, _binding = client.protect_request(req)
    assert outer.code == Code.FETCH  # §4.2: Observe goes as FETCH
    assert {n for n, _ in outer.options} == {OptionNumber.URI_HOST, OptionNumber.OBSERVE, OSCORE_OPTION}
    inner, got = server.unprotect_request(outer)
    assert inner == req and got.outer_code == Code.FETCH
    post, _ = client.protect_request(get())
    assert post.code == Code.POST


def test_observe_notifications_carry_their_own_partial_iv() -> None:
    client, server = pair()
    outer, sent = client.protect_request(get(observe=0))
    _, binding = server.unprotect_request(outer)
    first = server.protect_response(
        Message(Type.ACK, Code.CONTENT, options=((6, b"\x01"),), payload=b"1"), binding
    )
    assert first.code == Code.CONTENT and first.option(OSCORE_OPTION) == b""  # the first reuses the nonce
    notes = [
        server.protect_response(
            Message(Type.NON, Code.CONTENT, options=((6, bytes((i,))),), payload=bytes((i,))),
            binding,
            fresh_piv=True,
        )
        for i in (2, 3)
    ]
    pivs = []
    for note in notes:
        assert note.option(OSCORE_OPTION) not in (None, b"")
        inner, piv = client.unprotect_response(note, sent)
        assert inner.observe == note.observe and inner.code == Code.CONTENT
        pivs.append(piv)
    assert pivs[0] is not None and pivs[1] is not None and pivs[1] > pivs[0]
    assert client.unprotect_response(first, sent)[1] is None


def test_a_response_to_another_request_does_not_verify() -> None:
    client, server = pair()
    a, sent_a = client.protect_request(get())
    _b, sent_b = client.protect_request(get())
    _, bind_a = server.unprotect_request(a)
    answer = server.protect_response(Message(Type.ACK, Code.CONTENT, payload=b"x"), bind_a)
    assert client.unprotect_response(answer, sent_a)[0].payload == b"x"
    with pytest.raises(OscoreDecryptFailed):
        client.unprotect_response(answer, sent_b)


def test_sequence_numbers_are_reserved_in_ranges() -> None:
    stored: list[int] = []

    def reserve(limit: int) -> bool:
        stored.append(limit)
        return True

    seq = SenderSequence(0, reserve=reserve, step=10)
    taken = [seq.take() for _ in range(25)]
    assert taken == list(range(25))
    assert stored == [10, 20, 30]  # asked half a step ahead
    assert all(n < stored[-1] for n in taken)
    after_reboot = SenderSequence(stored[-1], reserve=reserve, step=10)
    assert after_reboot.take() == 30 > max(taken)


def test_no_number_beyond_an_unconfirmed_range() -> None:
    asked: list[int] = []
    seq = SenderSequence(100, reserve=lambda limit: asked.append(limit) is not None, step=4)
    with pytest.raises(OscoreSequenceUnavailable):
        seq.take()
    assert asked == [104]
    seq.reserved(104)
    assert [seq.take() for _ in range(3)] == [100, 101, 102]
    assert asked == [104, 108]  # the next range asked for half a step ahead of need
    assert seq.take() == 103
    with pytest.raises(OscoreSequenceUnavailable):
        seq.take()
    seq.reserved(None)  # the write failed: asked again
    with pytest.raises(OscoreSequenceUnavailable):
        seq.take()
    assert asked == [104, 108, 108]
    seq.reserved(108)
    assert seq.take() == 104


def test_exhausted_context() -> None:
    seq = SenderSequence(1 << 40)
    with pytest.raises(OscoreSequenceUnavailable, match="exhausted"):
        seq.take()


def test_echo_after_a_restart_initializes_the_window() -> None:
    client = OscoreContext(CONFIG, sequence=SenderSequence(500))
    server = OscoreContext(CONFIG.peer(), window=OscoreReplayWindow(initialized=False))
    old, _ = client.protect_request(get())
    first, sent = client.protect_request(get())
    with pytest.raises(OscoreEchoRequired) as exc:
        server.unprotect_request(first)
    challenge = exc.value.challenge
    assert challenge.option(OSCORE_OPTION) not in (None, b"")  # its own Partial IV (B.1.2)
    inner, _ = client.unprotect_response(challenge, sent)
    assert inner.code == Code.UNAUTHORIZED
    echo = inner.option(ECHO_OPTION)
    assert echo == server.echo
    again, _ = client.protect_request(get().with_option(ECHO_OPTION, echo))  # type: ignore[arg-type]
    plain, _ = server.unprotect_request(again)
    assert plain.option(ECHO_OPTION) == echo
    for replayed in (old, first, again):  # at or below the verified number: refused
        with pytest.raises(OscoreReplay):
            server.unprotect_request(replayed)


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="differ"):
        OscoreConfig(b"s", sender_id=b"\x01", recipient_id=b"\x01")
    with pytest.raises(ConfigError, match="at most 7"):
        OscoreConfig(b"s", sender_id=b"12345678", recipient_id=b"")
    with pytest.raises(ConfigError, match="empty"):
        OscoreConfig(b"", sender_id=b"\x01", recipient_id=b"")
    assert "secret" not in repr(CONFIG)


def test_a_store_that_fails_is_asked_again() -> None:
    calls: list[int] = []

    def reserve(limit: int) -> bool:
        calls.append(limit)
        if len(calls) == 1:
            raise OSError("disk full")
        return True

    seq = SenderSequence(0, reserve=reserve, step=8)
    with pytest.raises(OscoreSequenceUnavailable, match="disk full"):
        seq.take()
    assert seq.take() == 0 and calls == [8, 8]


def test_a_range_given_beyond_the_current_one_is_used_once_that_is_spent() -> None:
    # Another holder of the same context (a cluster node) took the numbers between.
    asked: list[int] = []
    seq = SenderSequence(0, reserve=lambda want: asked.append(want) is not None, step=4)
    seq.prepare()
    seq.reserved(4, start=0)
    assert [seq.take(), seq.take(), seq.take()] == [0, 1, 2]
    assert len(asked) == 2  # the next range asked for at half the step
    seq.reserved(24, start=20)
    assert [seq.take(), seq.take()] == [3, 20]
    assert seq.limit == 24 and len(asked) == 2
    assert [seq.take(), seq.take()] == [21, 22]
    assert len(asked) == 3
