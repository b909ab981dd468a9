"""``/api/security/clients``: the security information of endpoints (LwM2M-TS-Core 1.2 §7.1).

``PUT /api/security/clients/{ep}`` sets it (201 when new, 200 when it replaced an entry) with
``{"pskIdentity": "...", "pskKey": "<hex>"}``, ``{"rpk": "<hex of the client's DER
SubjectPublicKeyInfo>"}`` (a raw public key, RFC 7250), ``{"x509": true}`` (or ``{"mode":
"x509"}``), ``{"mode": "nosec"}`` (plain CoAP, for a server run with ``--nosec-endpoints
deny``) or ``{"oscore": {"masterSecret": "<hex>", "masterSalt": "<hex>", "senderId": "<hex>",
"recipientId": "<hex>"}}`` (OSCORE, RFC 8613, the IDs as the device holds them: its Sender ID
and its Recipient ID); ``GET`` lists or shows it and ``DELETE`` removes it. A PSK or an OSCORE
secret goes in and never comes back out: answers show ``pskKeyHint`` (a PSK's first byte and
length) or the OSCORE IDs alone, and nothing here logs them.
A changed or removed entry ends the DTLS sessions made with the old one.
"""

from __future__ import annotations

import re
from typing import Any

from lwm2m.errors import ConfigError, InvalidRequest
from lwm2m.storage.base import OscoreSecrets, SecurityInfo

__all__ = ["security_info_from_json"]

_HEX = re.compile(r"[0-9a-fA-F]+")
_MODES = ("psk", "rpk", "x509", "nosec", "oscore")


def security_info_from_json(endpoint: str, body: dict[str, Any]) -> SecurityInfo:
    """The entry a PUT body describes; InvalidRequest names what is wrong (never echoing the key)."""
    unknown = set(body) - {"pskIdentity", "pskKey", "rpk", "x509", "endpoint", "mode", "oscore"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    if body.get("endpoint", endpoint) != endpoint:
        raise InvalidRequest("the body's endpoint differs from the one in the path")
    mode = body.get("mode")
    if "mode" in body and mode not in _MODES:  # null too: a mode given must be one of them
        raise InvalidRequest(f'"mode" must be one of {", ".join(_MODES)}')
    x509 = body.get("x509", False)
    if not isinstance(x509, bool):
        raise InvalidRequest('"x509" must be true or false')
    if x509 and mode not in (None, "x509"):
        raise InvalidRequest(f'"x509": true contradicts "mode": "{mode}"')
    psk = "pskIdentity" in body or "pskKey" in body
    if "oscore" in body or mode == "oscore":
        if psk or "rpk" in body or x509 or mode not in (None, "oscore"):
            raise InvalidRequest('give "oscore" alone: no PSK, "rpk", "x509" or other mode with it')
        return _oscore(endpoint, body.get("oscore"))
    if mode == "nosec":
        if psk or "rpk" in body:
            raise InvalidRequest('mode nosec takes no "pskIdentity", "pskKey" or "rpk"')
        return SecurityInfo(endpoint, nosec=True)
    if x509 or mode == "x509":
        if psk or "rpk" in body:
            raise InvalidRequest('give "x509": true, a PSK or "rpk", not several')
        return _checked(endpoint, None, None, x509=True)
    if "rpk" in body or mode == "rpk":
        if psk:
            raise InvalidRequest('give a PSK or "rpk", not both')
        rpk = body.get("rpk")
        if not isinstance(rpk, str) or not _HEX.fullmatch(rpk) or len(rpk) % 2:
            raise InvalidRequest('"rpk" must be the hex of a DER SubjectPublicKeyInfo')
        return _checked(endpoint, None, None, rpk=bytes.fromhex(rpk))
    identity, key = body.get("pskIdentity"), body.get("pskKey")
    if not isinstance(identity, str) or not identity:
        raise InvalidRequest(
            'give "pskIdentity" and "pskKey" (hex), "rpk" (hex), "x509": true or "mode": "nosec"'
        )
    if not isinstance(key, str) or not _HEX.fullmatch(key) or len(key) % 2:
        raise InvalidRequest('"pskKey" must be an even number of hexadecimal digits')
    return _checked(endpoint, identity, bytes.fromhex(key))


def _oscore(endpoint: str, data: Any) -> SecurityInfo:
    """The OSCORE entry; InvalidRequest names the bad field (never echoing the secret)."""
    if not isinstance(data, dict):
        raise InvalidRequest('"oscore" must be an object with "masterSecret", "senderId" and "recipientId"')
    if "sequence" in data:
        raise InvalidRequest('unknown field(s) in "oscore": sequence')
    for name in ("masterSecret", "masterSalt", "senderId", "recipientId", "idContext"):
        value = data.get(name)
        if value is not None and (
            not isinstance(value, str) or len(value) % 2 or (value and not _HEX.fullmatch(value))
        ):
            raise InvalidRequest(f'"oscore.{name}" must be an even number of hexadecimal digits')
    try:
        return SecurityInfo(endpoint, oscore=OscoreSecrets.from_dict(data))
    except (ValueError, ConfigError) as exc:
        raise InvalidRequest(str(exc)) from None


def _checked(
    endpoint: str, identity: str | None, key: bytes | None, *, x509: bool = False, rpk: bytes | None = None
) -> SecurityInfo:
    """The entry, with what SecurityInfo refuses (a key too long, a malformed public key, ...) as an
    InvalidRequest."""
    try:
        return SecurityInfo(endpoint, identity, key, x509=x509, rpk=rpk)
    except (ValueError, ConfigError) as exc:
        raise InvalidRequest(str(exc)) from None
