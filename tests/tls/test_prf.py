"""The TLS 1.2 key schedule (RFC 5246 §5, §6.3, §7.4.9, §8.1; RFC 7627 §4; RFC 4279 §2;
RFC 5489 §2): a published vector, two constructions we did not share code with (OpenSSL's
TLS1-PRF and a second HMAC built from ``cryptography``), and the shape of every output."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import HandshakeError, KeyScheduleError, SecurityError
from lwm2m.tls import prf as prf_module
from lwm2m.tls.prf import (
    HmacSha256,
    check_finished,
    ecdhe_psk_premaster_secret,
    extended_master_secret,
    key_block,
    master_secret,
    prf,
    psk_premaster_secret,
    verify_data,
)

# The TLS 1.2 PRF-SHA256 test vector circulated on the IETF TLS list (secret, seed, label
# "test label", 100 bytes of output); OpenSSL's TLS1-PRF gives the same bytes.
VECTOR_SECRET = bytes.fromhex("9bbe436ba940f017b17652849a71db35")
VECTOR_SEED = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
VECTOR_OUTPUT = bytes.fromhex(
    "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
    "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
    "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
    "87347b66"
)

CLIENT_RANDOM = bytes(range(32))
SERVER_RANDOM = bytes(range(32, 64))


def _p_sha256_by_cryptography(secret: bytes, seed: bytes, length: int) -> bytes:
    # A second construction of RFC 5246 §5, over cryptography's HMAC rather than hmac.digest:
    # A(i) kept as a list, output concatenated then cut.
    def mac(data: bytes) -> bytes:
        h = HMAC(secret, hashes.SHA256())
        h.update(data)
        return h.finalize()

    chain = [seed]
    blocks = []
    while sum(map(len, blocks)) < length:
        chain.append(mac(chain[-1]))
        blocks.append(mac(chain[-1] + seed))
    return b"".join(blocks)[:length]


def _openssl_prf(secret: bytes, seed: bytes, length: int) -> bytes:
    out = subprocess.run(
        [
            "openssl",
            "kdf",
            "-keylen",
            str(length),
            "-binary",
            "-kdfopt",
            "digest:SHA256",
            "-kdfopt",
            f"hexsecret:{secret.hex()}",
            "-kdfopt",
            f"hexseed:{seed.hex()}",
            "TLS1-PRF",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out.stdout


def test_published_vector() -> None:
    assert prf(VECTOR_SECRET, b"test label", VECTOR_SEED, 100) == VECTOR_OUTPUT


@given(st.binary(max_size=80), st.binary(max_size=40), st.binary(max_size=80), st.integers(0, 200))
def test_agrees_with_a_second_construction(secret: bytes, label: bytes, seed: bytes, length: int) -> None:
    assert prf(secret, label, seed, length) == _p_sha256_by_cryptography(secret, label + seed, length)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
@pytest.mark.parametrize("length", [1, 12, 32, 48, 100, 104])
def test_agrees_with_openssl(length: int) -> None:
    secret = hashlib.sha256(b"secret %d" % length).digest()
    seed = b"key expansion" + SERVER_RANDOM + CLIENT_RANDOM
    assert prf(secret, b"key expansion", SERVER_RANDOM + CLIENT_RANDOM, length) == _openssl_prf(
        secret, seed, length
    )


@given(st.integers(0, 300), st.integers(0, 300))
@settings(max_examples=30)
def test_a_shorter_output_is_a_prefix_of_a_longer(a: int, b: int) -> None:
    short, long = sorted((a, b))
    assert prf(b"k", b"l", b"s", long)[:short] == prf(b"k", b"l", b"s", short)


def test_psk_premaster_secret_is_zeros_then_the_key() -> None:
    # RFC 4279 §2: uint16 N, N zero bytes, uint16 N, the PSK.
    assert psk_premaster_secret(b"\x01\x02\x03") == bytes.fromhex("0003 000000 0003 010203")
    assert len(psk_premaster_secret(bytes(64))) == 2 + 64 + 2 + 64


def test_ecdhe_psk_premaster_secret_carries_the_shared_secret() -> None:
    z = bytes(range(32))
    assert ecdhe_psk_premaster_secret(z, b"key") == b"\x00\x20" + z + b"\x00\x03key"


@pytest.mark.parametrize("psk", [b"", bytes(65), bytes(1000)])
def test_psk_lengths_outside_1_to_64_are_refused(psk: bytes) -> None:
    with pytest.raises(KeyScheduleError):
        psk_premaster_secret(psk)
    with pytest.raises(KeyScheduleError):
        ecdhe_psk_premaster_secret(bytes(32), psk)
    assert issubclass(KeyScheduleError, SecurityError)


def test_ecdhe_psk_refuses_an_empty_shared_secret() -> None:
    with pytest.raises(KeyScheduleError):
        ecdhe_psk_premaster_secret(b"", b"key")


def test_master_secret_is_the_prf_over_both_randoms() -> None:
    pre = psk_premaster_secret(b"secretPSK")
    ms = master_secret(pre, CLIENT_RANDOM, SERVER_RANDOM)
    assert ms == _p_sha256_by_cryptography(pre, b"master secret" + CLIENT_RANDOM + SERVER_RANDOM, 48)
    assert master_secret(pre, SERVER_RANDOM, CLIENT_RANDOM) != ms  # the order matters


def test_extended_master_secret_uses_the_session_hash() -> None:
    pre = psk_premaster_secret(b"secretPSK")
    session_hash = hashlib.sha256(b"transcript").digest()
    ems = extended_master_secret(pre, session_hash)
    assert ems == _p_sha256_by_cryptography(pre, b"extended master secret" + session_hash, 48)
    with pytest.raises(KeyScheduleError):
        extended_master_secret(pre, session_hash[:20])


def test_key_block_splits_in_the_order_of_rfc_5246() -> None:
    ms = master_secret(psk_premaster_secret(b"k"), CLIENT_RANDOM, SERVER_RANDOM)
    raw = _p_sha256_by_cryptography(ms, b"key expansion" + SERVER_RANDOM + CLIENT_RANDOM, 40)
    keys = key_block(ms, CLIENT_RANDOM, SERVER_RANDOM)
    assert keys.client_write_mac_key == keys.server_write_mac_key == b""
    assert (keys.client_write_key, keys.server_write_key) == (raw[:16], raw[16:32])
    assert (keys.client_write_iv, keys.server_write_iv) == (raw[32:36], raw[36:40])


def test_key_block_with_mac_keys_for_the_cbc_suites() -> None:
    ms = bytes(48)
    raw = _p_sha256_by_cryptography(ms, b"key expansion" + SERVER_RANDOM + CLIENT_RANDOM, 2 * (32 + 16 + 16))
    keys = key_block(ms, CLIENT_RANDOM, SERVER_RANDOM, mac_key_length=32, iv_length=16)
    assert keys.client_write_mac_key == raw[:32]
    assert keys.server_write_mac_key == raw[32:64]
    assert keys.client_write_key == raw[64:80]
    assert keys.server_write_iv == raw[112:128]


def test_verify_data_is_12_bytes_and_depends_on_the_label() -> None:
    ms = bytes(48)
    transcript = hashlib.sha256(b"messages").digest()
    client = verify_data(ms, b"client finished", transcript)
    server = verify_data(ms, b"server finished", transcript)
    assert len(client) == len(server) == 12
    assert client != server
    assert client == _p_sha256_by_cryptography(ms, b"client finished" + transcript, 12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: verify_data(bytes(48), b"finished", bytes(32)),
        lambda: verify_data(bytes(47), b"client finished", bytes(32)),
        lambda: verify_data(bytes(48), b"client finished", bytes(31)),
        lambda: master_secret(b"p", bytes(31), bytes(32)),
        lambda: master_secret(b"p", bytes(32), bytes(33)),
        lambda: key_block(bytes(40), bytes(32), bytes(32)),
        lambda: key_block(bytes(48), bytes(32), bytes(32), key_length=-1),
        lambda: prf(b"", b"", b"", prf_module.MAX_PRF_OUTPUT + 1),
        lambda: prf(b"", b"", b"", -1),
    ],
)
def test_wrong_lengths_are_refused(call: object) -> None:
    with pytest.raises(KeyScheduleError):
        call()  # type: ignore[operator]


def test_check_finished_accepts_the_expected_value_only() -> None:
    ms = bytes(range(48))
    transcript = hashlib.sha256(b"messages").digest()
    good = verify_data(ms, b"server finished", transcript)
    check_finished(ms, b"server finished", transcript, good)
    for bad in (good[:-1] + bytes([good[-1] ^ 1]), good[:11], good + b"\x00", b""):
        with pytest.raises(HandshakeError):
            check_finished(ms, b"server finished", transcript, bad)
    with pytest.raises(HandshakeError):
        check_finished(ms, b"client finished", transcript, good)
    assert issubclass(HandshakeError, SecurityError)


@settings(max_examples=100)
@given(
    st.integers(0, 200).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.lists(st.binary(max_size=150), min_size=1, max_size=3),
)
def test_a_prepared_hmac_key_gives_what_hmac_gives(key: bytes, messages: list[bytes]) -> None:
    # Keys above the block size (64 bytes) are hashed first (RFC 2104 §2): a PSK premaster
    # secret of a 64-byte PSK has 132 bytes. One key, several messages, each MAC on its own.
    mac = HmacSha256(key)
    for message in messages:
        assert mac.digest(message) == hmac.digest(key, message, hashlib.sha256)


@pytest.mark.parametrize("length", [0, 1, 32, 63, 64, 65, 100, 128, 132, 200])
def test_a_prepared_hmac_key_of_any_length(length: int) -> None:
    key = bytes(range(length % 256)) if length < 256 else bytes(length)
    assert HmacSha256(key).digest(b"label" + bytes(64)) == hmac.digest(key, b"label" + bytes(64), "sha256")
