"""Raw public keys (RFC 7250 §3): a DER SubjectPublicKeyInfo taken as DER or PEM, anything else
refused with a ConfigError that names the problem."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.errors import ConfigError
from lwm2m.protocol.keys import MAX_PUBLIC_KEY, public_key_der

_P256 = ec.generate_private_key(ec.SECP256R1())
DER = _P256.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
PEM = _P256.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
# The same key as a compressed point (RFC 5480 §2.2): 0x02 or 0x03 and the x coordinate only.
_POINT = _P256.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
)
COMPRESSED = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + _POINT


def test_der_and_pem_give_the_same_bytes() -> None:
    assert len(DER) == 91  # P-256: the algorithm (id-ecPublicKey, prime256v1) and a 65-byte point
    assert public_key_der(DER) == DER
    assert public_key_der(PEM) == DER
    assert public_key_der(b"# the device's key\n" + PEM.replace(b"\n", b"\r\n")) == DER


def test_rsa_keys_fit_under_the_bound() -> None:
    key = rsa.generate_private_key(65537, 4096).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert len(der) <= MAX_PUBLIC_KEY and public_key_der(der) == der


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "1 to"),
        (DER[:-1], "truncated"),
        (DER + b"\x00", "not a DER SubjectPublicKeyInfo"),
        (b"\x30\x03\x02\x01\x00", "no algorithm"),
        (DER[:2] + b"\x30\x13" + bytes(19) + b"\x04" + DER[24:], "no key bits"),
        (b"\x30\x81\x05" + bytes(5), "not in DER"),  # a long length form for a short length
        (bytes(MAX_PUBLIC_KEY + 1), "1 to"),
        (
            _P256.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "PUBLIC KEY block",
        ),
        (b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "PUBLIC KEY block"),
        (b"-----BEGIN PUBLIC KEY-----\nAAA=A\n-----END PUBLIC KEY-----\n", "base64"),
        (COMPRESSED, "compressed EC point"),
    ],
    ids=[
        "empty",
        "truncated",
        "a byte after",
        "no algorithm",
        "no key bits",
        "long length form",
        "too long",
        "private key",
        "not base64",
        "bad padding",
        "compressed",
    ],
)
def test_malformed_keys_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        public_key_der(data)


@given(
    st.binary(max_size=200) | st.builds(lambda b, n: DER[:n] + b, st.binary(max_size=8), st.integers(0, 91))
)
def test_any_bytes_give_a_key_or_a_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        assert public_key_der(data) == data
