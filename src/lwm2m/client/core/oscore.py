"""LwM2M OSCORE (object 21): the OSCORE input parameters of a server account (LwM2M-TS-Core 1.2
§E.5, RFC 8613 §3.2), linked from its Security instance's resource 17 (OSCORE Security Mode).

Like Security, only the bootstrap server may read or write it; LwM2M servers never see it.
"""

from __future__ import annotations

from typing import ClassVar

from lwm2m.client.instance import ObjectInstance

AEAD_AES_CCM_16_64_128 = 10  # RFC 8613 §3.2.1, the default and the one supported here
HKDF_SHA_256 = -10  # COSE: HKDF with SHA-256


class Oscore(ObjectInstance):
    """One set of OSCORE parameters: master secret, sender and recipient IDs, master salt, ID
    context (as this device holds them: its Sender ID is the kid of its requests)."""

    object_id: ClassVar[int] = 21

    MASTER_SECRET, SENDER_ID, RECIPIENT_ID, AEAD, HMAC, MASTER_SALT, ID_CONTEXT = 0, 1, 2, 3, 4, 5, 6

    def __init__(
        self,
        instance_id: int = 0,
        *,
        master_secret: bytes = b"",
        sender_id: bytes = b"",
        recipient_id: bytes = b"",
        master_salt: bytes = b"",
        id_context: bytes | None = None,
    ) -> None:
        values: dict[int, object] = {
            self.MASTER_SECRET: master_secret,
            self.SENDER_ID: sender_id,
            self.RECIPIENT_ID: recipient_id,
            self.AEAD: AEAD_AES_CCM_16_64_128,
            self.HMAC: HKDF_SHA_256,
            self.MASTER_SALT: master_salt,
        }
        if id_context is not None:
            values[self.ID_CONTEXT] = id_context
        super().__init__(instance_id, values)

    def __repr__(self) -> str:  # never show the secret
        sender = bytes(self.get(self.SENDER_ID) or b"").hex()  # type: ignore[arg-type]
        return f"<Oscore /21/{self.id} sender={sender or '-'}>"
