"""Sans-IO DTLS 1.2 engine (RFC 6347, RFC 9146): records, anti-replay, record protection."""

from lwm2m.tls.protection import (
    AES_128_CCM,
    AES_128_CCM_8,
    AES_128_GCM,
    SUITE_ALGORITHMS,
    AeadAlgorithm,
    AeadProtection,
    NullProtection,
    RecordProtection,
)
from lwm2m.tls.record import DtlsRecord, encode_datagram, parse_datagram, parse_record
from lwm2m.tls.replay import ReplayWindow

__all__ = [
    "AES_128_CCM",
    "AES_128_CCM_8",
    "AES_128_GCM",
    "SUITE_ALGORITHMS",
    "AeadAlgorithm",
    "AeadProtection",
    "DtlsRecord",
    "NullProtection",
    "RecordProtection",
    "ReplayWindow",
    "encode_datagram",
    "parse_datagram",
    "parse_record",
]
