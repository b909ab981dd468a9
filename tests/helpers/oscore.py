"""OSCORE in tests: a pair of configurations, and aiocoap's security context from ours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lwm2m.coap.oscore import OscoreConfig

SECRET = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
SALT = bytes.fromhex("9e7ca92223786340")
# The client's side (sender 01, recipient 02); ``.peer()`` is the server's.
CLIENT = OscoreConfig(SECRET, sender_id=b"\x01", recipient_id=b"\x02", master_salt=SALT)


def aiocoap_context(
    directory: Path, config: OscoreConfig, *, window_unknown: bool = False, next_seq: int = 0
) -> Any:
    """aiocoap's ``FilesystemSecurityContext`` holding ``config`` (its settings written to
    ``directory``); ``window_unknown`` makes it start as after an unclean restart (its replay
    window unknown: it asks for Echo, RFC 8613 Appendix B.1.2)."""
    from aiocoap.oscore import FilesystemSecurityContext

    directory.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "sender-id_hex": config.sender_id.hex(),
        "recipient-id_hex": config.recipient_id.hex(),
        "secret_hex": config.master_secret.hex(),
        "salt_hex": config.master_salt.hex(),
    }
    if config.id_context is not None:
        settings["id-context_hex"] = config.id_context.hex()
    (directory / "settings.json").write_text(json.dumps(settings))
    if window_unknown or next_seq:
        sequence = {
            "next-to-send": next_seq,
            "received": "unknown" if window_unknown else {"index": 0, "bitfield": 0},
        }
        (directory / "sequence.json").write_text(json.dumps(sequence))
    return FilesystemSecurityContext(str(directory))
