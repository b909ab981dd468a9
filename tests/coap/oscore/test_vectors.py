"""RFC 8613 Appendix C: the test vectors, byte for byte (C.1-C.3 key derivation and nonces,
C.4-C.6 protected requests, C.7 and C.8 protected responses)."""

from __future__ import annotations

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.oscore import OscoreConfig, OscoreContext, RequestBinding, SenderSequence
from lwm2m.coap.oscore.cose import aad, info, nonce

h = bytes.fromhex
SECRET = h("0102030405060708090a0b0c0d0e0f10")
SALT = h("9e7ca92223786340")
C1 = OscoreConfig(SECRET, sender_id=b"", recipient_id=h("01"), master_salt=SALT)
C2 = OscoreConfig(SECRET, sender_id=h("00"), recipient_id=h("01"))
C3 = OscoreConfig(
    SECRET, sender_id=b"", recipient_id=h("01"), master_salt=SALT, id_context=h("37cbf3210017a2d3")
)


@pytest.mark.parametrize(
    ("config", "sender_key", "recipient_key", "common_iv", "sender_nonce", "recipient_nonce"),
    [
        pytest.param(
            C1,
            "f0910ed7295e6ad4b54fc793154302ff",
            "ffb14e093c94c9cac9471648b4f98710",
            "4622d4dd6d944168eefb54987c",
            "4622d4dd6d944168eefb54987c",
            "4722d4dd6d944169eefb54987c",
            id="C.1",
        ),
        pytest.param(
            C2,
            "321b26943253c7ffb6003b0b64d74041",
            "e57b5635815177cd679ab4bcec9d7dda",
            "be35ae297d2dace910c52e99f9",
            "bf35ae297d2dace910c52e99f9",
            "bf35ae297d2dace810c52e99f9",
            id="C.2",
        ),
        pytest.param(
            C3,
            "af2a1300a5e95788b356336eeecd2b92",
            "e39a0c7c77b43f03b4b39ab9a268699f",
            "2ca58fb85ff1b81c0b7181b85e",
            "2ca58fb85ff1b81c0b7181b85e",
            "2da58fb85ff1b81d0b7181b85e",
            id="C.3",
        ),
    ],
)
def test_key_derivation_and_nonces(
    config: OscoreConfig,
    sender_key: str,
    recipient_key: str,
    common_iv: str,
    sender_nonce: str,
    recipient_nonce: str,
) -> None:
    for cfg, keys, nonces in (
        (config, (sender_key, recipient_key), (sender_nonce, recipient_nonce)),
        (config.peer(), (recipient_key, sender_key), (recipient_nonce, sender_nonce)),  # the server's side
    ):
        ctx = OscoreContext(cfg)
        assert (ctx.sender_key.hex(), ctx.recipient_key.hex(), ctx.common_iv.hex()) == (*keys, common_iv)
        assert nonce(ctx.common_iv, cfg.sender_id, b"\0").hex() == nonces[0]
        assert nonce(ctx.common_iv, cfg.recipient_id, b"\0").hex() == nonces[1]


def test_hkdf_info_of_c1() -> None:
    assert info(b"", None, "Key", 16).hex() == "8540f60a634b657910"
    assert info(h("01"), None, "Key", 16).hex() == "854101f60a634b657910"
    assert info(b"", None, "IV", 13).hex() == "8540f60a6249560d"


def test_aad_of_section_5_4() -> None:
    assert aad(h("00"), h("25")).hex() == "8368456e63727970743040498501810a4100412540"


REQUEST_C4 = "44015d1f00003974396c6f63616c686f737483747631"


@pytest.mark.parametrize(
    ("config", "plain", "protected", "request_nonce"),
    [
        pytest.param(
            C1,
            REQUEST_C4,
            "44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e",
            "4622d4dd6d944168eefb549868",
            id="C.4",
        ),
        pytest.param(
            C2,
            "440171c30000b932396c6f63616c686f737483747631",
            "440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0",
            "bf35ae297d2dace910c52e99ed",
            id="C.5",
        ),
        pytest.param(
            C3,
            "44012f8eef9bbf7a396c6f63616c686f737483747631",
            "44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3ff72cd7273fd331ac45cffbe55c3",
            "2ca58fb85ff1b81c0b7181b84a",
            id="C.6",
        ),
    ],
)
def test_protected_requests(config: OscoreConfig, plain: str, protected: str, request_nonce: str) -> None:
    client = OscoreContext(config, sequence=SenderSequence(20))
    assert nonce(client.common_iv, config.sender_id, b"\x14").hex() == request_nonce
    outer, binding = client.protect_request(Message.decode(h(plain)))
    assert outer.encode().hex() == protected
    assert binding == RequestBinding(config.sender_id, b"\x14", 2, True, config.id_context)
    assert client.sequence.next == 21
    server = OscoreContext(config.peer())
    inner, got = server.unprotect_request(Message.decode(h(protected)))
    assert inner.encode().hex() == plain
    assert (got.kid, got.piv) == (config.sender_id, b"\x14")


PLAIN_RESPONSE = "64455d1f00003974ff48656c6c6f20576f726c6421"


@pytest.mark.parametrize(
    ("fresh_piv", "protected", "piv"),
    [
        pytest.param(
            False, "64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106", None, id="C.7"
        ),
        pytest.param(
            True, "64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e", 0, id="C.8"
        ),
    ],
)
def test_protected_responses(fresh_piv: bool, protected: str, piv: int | None) -> None:
    client = OscoreContext(C1, sequence=SenderSequence(20))
    _, sent = client.protect_request(Message.decode(h(REQUEST_C4)))
    server = OscoreContext(C1.peer())
    _, binding = server.unprotect_request(
        Message.decode(h("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e"))
    )
    outer = server.protect_response(Message.decode(h(PLAIN_RESPONSE)), binding, fresh_piv=fresh_piv)
    assert outer.encode().hex() == protected
    inner, seq = client.unprotect_response(Message.decode(h(protected)), sent)
    assert inner.encode().hex() == PLAIN_RESPONSE
    assert seq == piv
