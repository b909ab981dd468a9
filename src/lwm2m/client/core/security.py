"""LwM2M Security (object 0): the client's server accounts and their keys (LwM2M-TS-Core 1.2 §E.1).

Only the bootstrap server may read or write it; LwM2M servers never see it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from lwm2m.client.instance import ObjectInstance
from lwm2m.model.value import ObjLink


class SecurityMode(IntEnum):
    """Resource 2, Security Mode."""

    PSK = 0
    RPK = 1
    CERTIFICATE = 2
    NO_SEC = 3
    CERTIFICATE_EST = 4


class Security(ObjectInstance):
    """One server account: URI, security mode, credentials, Short Server ID."""

    __slots__ = ()

    object_id: ClassVar[int] = 0

    URI, BOOTSTRAP, MODE, IDENTITY, SERVER_KEY, SECRET_KEY = 0, 1, 2, 3, 4, 5
    SHORT_SERVER_ID, HOLD_OFF = 10, 11
    CERTIFICATE_USAGE = 15  # LwM2M 1.1: how /0/x/4 constrains the server's certificate (RFC 6698)
    OSCORE = 17  # LwM2M 1.1: a link to the account's OSCORE instance (object 21, RFC 8613)

    def __init__(
        self,
        instance_id: int = 0,
        *,
        uri: str = "",
        bootstrap: bool = False,
        mode: SecurityMode = SecurityMode.NO_SEC,
        identity: bytes = b"",
        secret_key: bytes = b"",
        server_key: bytes = b"",
        short_server_id: int | None = 1,
        hold_off: int = 0,
        certificate_usage: int | None = None,
        oscore: int | None = None,
    ) -> None:
        values: dict[int, object] = {
            self.URI: uri,
            self.BOOTSTRAP: bootstrap,
            self.MODE: int(mode),
            self.IDENTITY: identity,
            self.SERVER_KEY: server_key,
            self.SECRET_KEY: secret_key,
            self.HOLD_OFF: hold_off,
        }
        if short_server_id is not None and not bootstrap:
            values[self.SHORT_SERVER_ID] = short_server_id
        if certificate_usage is not None:
            values[self.CERTIFICATE_USAGE] = certificate_usage
        if oscore is not None:
            values[self.OSCORE] = ObjLink(21, oscore)  # /21/{oscore}: the mode's parameters
        super().__init__(instance_id, values)

    @property
    def uri(self) -> str:
        return str(self.get(self.URI, ""))

    @property
    def is_bootstrap(self) -> bool:
        return bool(self.get(self.BOOTSTRAP, False))

    @property
    def mode(self) -> SecurityMode:
        return SecurityMode(int(self.get(self.MODE, SecurityMode.NO_SEC)))

    @property
    def short_server_id(self) -> int | None:
        v = self.get(self.SHORT_SERVER_ID)
        return int(v) if v is not None else None

    def __repr__(self) -> str:  # never show the keys
        return f"<Security /0/{self.id} {self.uri!r} mode={self.mode.name}>"
