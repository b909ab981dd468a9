"""CBC record protection (RFC 5246 §6.2.3.2, MAC-then-encrypt; RFC 9146 §5 with a CID): the
fragment's layout checked by decrypting it by hand, round trips, and every way a record can fail
giving the one BadRecordMac."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.errors import BadRecordMac, DtlsError, RecordError, RecordOverflow
from lwm2m.tls.cbc import BLOCK_SIZE, MAC_LENGTH, CbcProtection
from lwm2m.tls.record import DTLS_1_2, MAX_PLAINTEXT, DtlsRecord

MAC_KEY = bytes(range(32))
KEY = bytes(range(100, 116))
IV = bytes(range(200, 216))
APPLICATION_DATA = 23
NOT_AUTHENTIC = r"^the record does not authenticate$"


def protection(padding: int = 0) -> CbcProtection:
    return CbcProtection(MAC_KEY, KEY, padding=padding, random=lambda n: IV[:n])


def test_the_fragment_is_iv_then_cbc_of_content_mac_and_padding() -> None:
    seq_num = (1 << 48) | 5  # epoch 1, sequence number 5
    content = b"hello, device"
    fragment = protection().seal(seq_num, APPLICATION_DATA, DTLS_1_2, content)
    assert fragment[:BLOCK_SIZE] == IV
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).decryptor()
    block = decryptor.update(fragment[BLOCK_SIZE:]) + decryptor.finalize()
    # 13 + 32 + padding + 1 is a multiple of 16: padding = 2, each byte (and the length) 0x02.
    assert len(block) == 48 and block[-3:] == b"\x02\x02\x02"
    mac_input = seq_num.to_bytes(8, "big") + bytes((APPLICATION_DATA,)) + b"\xfe\xfd" + b"\x00\x0d" + content
    assert block[:13] == content
    assert block[13:45] == hmac.new(MAC_KEY, mac_input, hashlib.sha256).digest()


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 47, 100, 1024, MAX_PLAINTEXT])
def test_round_trip(size: int) -> None:
    content = bytes(i % 251 for i in range(size))
    record = DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 7, content)
    sealed = protection().encrypt(record)
    assert (len(sealed.fragment) - BLOCK_SIZE) % BLOCK_SIZE == 0
    assert protection().decrypt(sealed) == record


def test_connection_id_records_carry_the_real_type_inside() -> None:
    record = DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 9, b"coap", cid=b"\x07abcde")
    sealed = protection(padding=5).encrypt(record)
    assert sealed.content_type == 25 and sealed.cid == record.cid
    assert protection().decrypt(sealed) == record
    # The CID is under the MAC: another CID does not authenticate.
    with pytest.raises(BadRecordMac):
        protection().decrypt(DtlsRecord(25, DTLS_1_2, 1, 9, sealed.fragment, cid=b"\x07abcdf"))


def test_every_changed_byte_and_header_fails_alike() -> None:
    record = DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 3, b"x" * 40)
    sealed = protection().encrypt(record)
    for at in range(len(sealed.fragment)):
        changed = bytearray(sealed.fragment)
        changed[at] ^= 0x01
        with pytest.raises(BadRecordMac, match=NOT_AUTHENTIC):
            protection().decrypt(DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 3, bytes(changed)))
    for other in (
        DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 4, sealed.fragment),  # another sequence number
        DtlsRecord(APPLICATION_DATA, DTLS_1_2, 2, 3, sealed.fragment),  # another epoch
        DtlsRecord(22, DTLS_1_2, 1, 3, sealed.fragment),  # another type
    ):
        with pytest.raises(BadRecordMac, match=NOT_AUTHENTIC):
            protection().decrypt(other)


def test_bad_padding_with_a_good_mac_is_refused_the_same_way() -> None:
    """A sender that pads wrongly but MACs right (what a padding oracle probes for) gets the same
    answer as a bad MAC."""
    content = b"y" * 13
    mac = hmac.new(MAC_KEY, (1 << 48).to_bytes(8, "big") + b"\x17\xfe\xfd\x00\x0d" + content, hashlib.sha256)
    for padding in (b"\x02\x01\x02", b"\x03\x03\x03", b"\x00\x00\x02"):
        encryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
        fragment = IV + encryptor.update(content + mac.digest() + padding) + encryptor.finalize()
        with pytest.raises(BadRecordMac, match=NOT_AUTHENTIC):
            protection().open(1 << 48, APPLICATION_DATA, DTLS_1_2, fragment)


@pytest.mark.parametrize("length", [0, 15, 16, 31, 32, 47, 63, 65])
def test_fragments_of_impossible_lengths(length: int) -> None:
    with pytest.raises(BadRecordMac):
        protection().open(0, APPLICATION_DATA, DTLS_1_2, bytes(length))


def test_limits_and_bad_keys() -> None:
    with pytest.raises(RecordOverflow):
        protection().seal(0, APPLICATION_DATA, DTLS_1_2, bytes(MAX_PLAINTEXT + 1))
    with pytest.raises(RecordOverflow):
        protection().open(0, APPLICATION_DATA, DTLS_1_2, bytes(MAX_PLAINTEXT + 2048 + 16))
    with pytest.raises(RecordError):
        protection().encrypt(DtlsRecord(25, DTLS_1_2, 1, 1, b"x"))
    with pytest.raises(RecordError):
        protection().decrypt(DtlsRecord(25, DTLS_1_2, 1, 1, bytes(64)))
    for mac_key, key in ((bytes(31), KEY), (MAC_KEY, bytes(32))):
        with pytest.raises(DtlsError):
            CbcProtection(mac_key, key)
    with pytest.raises(DtlsError):
        CbcProtection(MAC_KEY, KEY, padding=-1)
    with pytest.raises(DtlsError):
        CbcProtection(MAC_KEY, KEY, random=lambda n: b"short").seal(0, APPLICATION_DATA, DTLS_1_2, b"")


@given(st.binary(max_size=200), st.integers(0, 2**48 - 1), st.binary(max_size=4))
def test_any_fragment_opens_or_fails_with_bad_record_mac(fragment: bytes, seq: int, cid: bytes) -> None:
    with contextlib.suppress(BadRecordMac, RecordError):
        protection().open(seq, 25 if cid else APPLICATION_DATA, DTLS_1_2, fragment, cid)


@given(st.binary(max_size=300), st.integers(0, 2**48 - 1))
def test_sealed_content_always_opens(content: bytes, seq: int) -> None:
    sealed = protection().seal(seq, APPLICATION_DATA, DTLS_1_2, content)
    assert (len(sealed) - BLOCK_SIZE) % BLOCK_SIZE == 0 and len(sealed) >= BLOCK_SIZE + MAC_LENGTH + 1
    assert protection().open(seq, APPLICATION_DATA, DTLS_1_2, sealed) == (APPLICATION_DATA, content)
