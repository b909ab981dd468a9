"""What a bootstrap server writes into one device: its Bootstrap Information (LwM2M-TS-Core 1.2 §6.1.2).

A :class:`BootstrapConfig` names the paths to delete first, the server
accounts to write (a Security (0) and a Server (1) instance each, §E.1, §E.2),
Access Control (2) instances (§E.3), optional extra object values, and
whether to start with a Bootstrap-Discover (the default). Its JSON form is the body of
``PUT /api/bootstrap/{ep}``::

    {"servers": [{"uri": "coaps://host:5684", "shortServerId": 101, "lifetime": 300,
                  "binding": "U", "security": {"mode": "psk", "identity": "dev-1", "key": "<hex>"}}],
     "deletePaths": ["/0", "/1"], "bootstrapDiscover": true,
     "accessControl": [{"objectId": 3, "objectInstanceId": 0, "acl": {"101": 31}, "owner": 101}],
     "objects": {"records": [{"path": "/3/0/14", "value": "+01:00"}]}}

Security modes: ``psk`` (``identity``, ``key``), ``rpk`` (``publicKey``,
``privateKey``, ``serverPublicKey``), ``x509`` (``certificate``,
``privateKey``, ``serverCertificate``: DER, hex), ``nosec``, and ``oscore``
(``masterSecret``, ``masterSalt``, ``senderId``, ``recipientId``, ``idContext``: OSCORE,
RFC 8613, over coap://; the account's Security instance says NoSec and links /0/x/17 to an
OSCORE instance, /21/x with the Security instance's ID, written with it, §E.5). Keys are hex.

:meth:`BootstrapConfig.from_json` checks everything and raises
:class:`ConfigError` naming the first bad field, so that a configuration that
would leave a device without a usable server account is refused before any
device sees it.

Instance IDs: :meth:`BootstrapConfig.plan` places the configuration on what the device
holds (a :class:`DeviceLayout`, from its Bootstrap-Discover, §6.1.7.3). The device's
bootstrap server account is never written nor deleted (§6.1.7.6 keeps it through a
Bootstrap-Delete, and without it the Bootstrap-Request Trigger /1/x/9 cannot work); a
server account goes to the Security and Server instances that already hold its Short
Server ID, else to free instance IDs. An explicit instance ID that is the device's
bootstrap account is refused with :class:`LayoutConflict` (a failed session), or at input
when the configuration itself says where that account is (``bootstrapAccountId``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lwm2m.errors import ConfigError, InvalidPath, JsonFormError, LayoutConflict
from lwm2m.model.jsonform import record_from_json, record_to_json
from lwm2m.model.path import MAX_ID, Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink

DEFAULT_ENDPOINT = "*"  # the configuration for endpoints that have none of their own
BOOTSTRAP_OWNER = 65535  # Access Control Owner of instances managed by the bootstrap server (§E.3)
# Resource /0/x/2 (§E.1); OSCORE is NoSec at that level, with /0/x/17 linking its parameters (§E.5).
SECURITY_MODES = {"psk": 0, "rpk": 1, "x509": 2, "nosec": 3, "oscore": 3}
OSCORE_OBJECT = 21
MAX_OSCORE_ID_BYTES = 7  # RFC 8613 §3.3 with AES-CCM-16-64-128
SECURE_SCHEMES = ("coaps", "coaps+tcp")
PLAIN_SCHEMES = ("coap", "coap+tcp")
BINDING_LETTERS = "UTSNMHQ"  # LwM2M 1.2 binding letters, and Q of 1.0 (§E.2, resource 7)
MAX_KEY_BYTES = 1024  # a DER certificate fits; anything longer is a mistake
MAX_IDENTITY_BYTES = 128
MAX_PSK_BYTES = 64  # what the LwM2M server's security store takes (RFC 4279 allows more, DTLS stacks less)
# Hex digits in pairs, colons anywhere ("0a:1b" as tools print keys): what _hex takes, also the
# pattern of the keys in the OpenAPI document.
HEX_BYTE = "[0-9A-Fa-f]:*[0-9A-Fa-f]:*"
_HEX = re.compile(f":*({HEX_BYTE})*")
# A server URI as written to the device (Security /0/x/0): scheme, a host name, an IPv4 or a
# bracketed IPv6 address, an optional port, then a path of printable characters; the OpenAPI
# document gives the same pattern.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URI_PATTERN = rf"^coaps?(\+tcp)?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(:{_PORT})?(/[!-~]*)?$"
# An ACL key: a Short Server ID, or 0 for the default (LwM2M-TS-Core 1.2 §E.3), no leading zero.
ACL_KEY_PATTERN = (
    r"^(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-4])$"
)


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {problem}" if where else problem)


# --- reading JSON ----------------------------------------------------------------------------


def _object(data: Any, where: str, known: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _fail(where, f"expected an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r} (known: {', '.join(known)})")
    return data


def _int(data: Mapping[str, Any], name: str, where: str, lo: int, hi: int, default: Any = ...) -> Any:
    if name not in data or data[name] is None:
        if default is ...:
            raise _fail(where, f"{name} is missing")
        return default
    value = data[name]
    if type(value) is not int or not lo <= value <= hi:
        raise _fail(f"{where}.{name}", f"{value!r} is not an integer from {lo} to {hi}")
    return value


def _str(data: Mapping[str, Any], name: str, where: str, default: Any = ...) -> Any:
    if name not in data or data[name] is None:
        if default is ...:
            raise _fail(where, f"{name} is missing")
        return default
    value = data[name]
    if not isinstance(value, str):
        raise _fail(f"{where}.{name}", f"{value!r} is not a string")
    return value


def _bool(data: Mapping[str, Any], name: str, where: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise _fail(f"{where}.{name}", f"{value!r} is not true or false")
    return value


def _hex(data: Mapping[str, Any], name: str, where: str) -> bytes:
    text = _str(data, name, where, "")
    if not _HEX.fullmatch(text):  # bytes.fromhex alone would also take spaces and tabs
        raise _fail(f"{where}.{name}", "not hexadecimal")
    value = bytes.fromhex(text.replace(":", ""))
    if len(value) > MAX_KEY_BYTES:
        raise _fail(f"{where}.{name}", f"{len(value)} bytes; at most {MAX_KEY_BYTES}")
    return value


def _list(data: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = data.get(name, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"{where}.{name}" if where else name, "expected a list")
    return value


# --- the parts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """How the device secures its link to one server: the Security (0) instance's mode and keys."""

    mode: str = "nosec"
    identity: str = ""  # PSK identity (psk)
    key: bytes = field(default=b"", repr=False)  # PSK key (psk) or private key (rpk, x509)
    public_key: bytes = b""  # client public key (rpk) or DER certificate (x509)
    server_public_key: bytes = b""  # server public key (rpk) or DER certificate (x509)
    # OSCORE (oscore; ``key`` is its Master Secret): the device's Sender and Recipient IDs.
    sender_id: bytes = b""
    recipient_id: bytes = b""
    salt: bytes = field(default=b"", repr=False)
    id_context: bytes | None = None

    _FIELDS = {
        "psk": ("mode", "identity", "key"),
        "rpk": ("mode", "publicKey", "privateKey", "serverPublicKey"),
        "x509": ("mode", "certificate", "privateKey", "serverCertificate"),
        "nosec": ("mode",),
        "oscore": ("mode", "masterSecret", "masterSalt", "senderId", "recipientId", "idContext"),
    }

    @property
    def mode_number(self) -> int:
        return SECURITY_MODES[self.mode]

    @property
    def identity_resource(self) -> bytes:
        """Resource 3, Public Key or Identity: the PSK identity, or the client's key or certificate."""
        return self.identity.encode() if self.mode == "psk" else self.public_key

    def check(self, where: str) -> None:
        if self.mode not in SECURITY_MODES:
            raise _fail(f"{where}.mode", f"{self.mode!r}: expected one of {', '.join(SECURITY_MODES)}")
        if self.mode == "psk":
            if not self.identity:
                raise _fail(where, "a PSK needs an identity")
            if len(self.identity.encode()) > MAX_IDENTITY_BYTES:
                raise _fail(f"{where}.identity", f"longer than {MAX_IDENTITY_BYTES} bytes")
            if not self.key:
                raise _fail(where, "a PSK needs a key (hex)")
            if len(self.key) > MAX_PSK_BYTES:
                raise _fail(f"{where}.key", f"{len(self.key)} bytes; a PSK has at most {MAX_PSK_BYTES}")
        elif self.mode == "oscore":
            if not self.key:
                raise _fail(where, "OSCORE needs a masterSecret (hex)")
            if len(self.key) > MAX_PSK_BYTES or len(self.salt) > MAX_PSK_BYTES:
                raise _fail(where, f"an OSCORE masterSecret or masterSalt has at most {MAX_PSK_BYTES} bytes")
            for name, value in (("senderId", self.sender_id), ("recipientId", self.recipient_id)):
                if len(value) > MAX_OSCORE_ID_BYTES:
                    raise _fail(f"{where}.{name}", f"{len(value)} bytes; at most {MAX_OSCORE_ID_BYTES}")
            if self.sender_id == self.recipient_id:
                raise _fail(where, "the OSCORE senderId and recipientId must differ")
            if self.id_context is not None and len(self.id_context) > 255:
                raise _fail(f"{where}.idContext", "at most 255 bytes")
        elif self.mode in ("rpk", "x509"):
            names = ("publicKey", "privateKey") if self.mode == "rpk" else ("certificate", "privateKey")
            if not self.public_key:
                raise _fail(where, f"mode {self.mode} needs {names[0]} (hex)")
            if not self.key:
                raise _fail(where, f"mode {self.mode} needs {names[1]} (hex)")

    @classmethod
    def from_json(cls, data: Any, where: str) -> SecurityConfig:
        if not isinstance(data, Mapping):
            raise _fail(where, f"expected an object, got {type(data).__name__}")
        mode = data.get("mode", "nosec")
        if type(mode) is not str or mode not in SECURITY_MODES:
            raise _fail(f"{where}.mode", f"{mode!r}: expected one of {', '.join(SECURITY_MODES)}")
        data = _object(data, where, cls._FIELDS[mode])
        if mode == "psk":
            config = cls(mode, identity=_str(data, "identity", where, ""), key=_hex(data, "key", where))
        elif mode == "rpk":
            config = cls(
                mode,
                key=_hex(data, "privateKey", where),
                public_key=_hex(data, "publicKey", where),
                server_public_key=_hex(data, "serverPublicKey", where),
            )
        elif mode == "x509":
            config = cls(
                mode,
                key=_hex(data, "privateKey", where),
                public_key=_hex(data, "certificate", where),
                server_public_key=_hex(data, "serverCertificate", where),
            )
        elif mode == "oscore":
            for name in ("senderId", "recipientId"):
                if name not in data:
                    raise _fail(where, f'OSCORE needs {name} (hex; "" for an empty ID)')
            config = cls(
                mode,
                key=_hex(data, "masterSecret", where),
                sender_id=_hex(data, "senderId", where),
                recipient_id=_hex(data, "recipientId", where),
                salt=_hex(data, "masterSalt", where),
                id_context=_hex(data, "idContext", where) if "idContext" in data else None,
            )
        else:
            config = cls()
        config.check(where)
        return config

    def to_json(self, *, secrets: bool = True) -> dict[str, Any]:
        """The JSON form; ``secrets=False`` leaves out the PSK and private keys."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "psk":
            out["identity"] = self.identity
            if secrets:
                out["key"] = self.key.hex()
        elif self.mode in ("rpk", "x509"):
            public, server = (
                ("publicKey", "serverPublicKey")
                if self.mode == "rpk"
                else ("certificate", "serverCertificate")
            )
            out[public] = self.public_key.hex()
            if secrets:
                out["privateKey"] = self.key.hex()
            if self.server_public_key:
                out[server] = self.server_public_key.hex()
        elif self.mode == "oscore":
            out["senderId"] = self.sender_id.hex()
            out["recipientId"] = self.recipient_id.hex()
            if self.id_context is not None:
                out["idContext"] = self.id_context.hex()
            if secrets:
                out["masterSecret"] = self.key.hex()
                out["masterSalt"] = self.salt.hex()
        return out

    def oscore_records(self, instance_id: int) -> tuple[Record, ...]:
        """The OSCORE (21) instance of an oscore account (LwM2M-TS-Core 1.2 §E.5): its Master
        Secret, Sender ID, Recipient ID, AEAD (10, AES-CCM-16-64-128) and HKDF (-10,
        SHA-256) algorithms, Master Salt and, if given, ID Context."""
        base = Path.of(OSCORE_OBJECT, instance_id)
        values: list[tuple[int, Any]] = [
            (0, self.key),
            (1, self.sender_id),
            (2, self.recipient_id),
            (3, 10),
            (4, -10),
            (5, self.salt),
        ]
        if self.id_context is not None:
            values.append((6, self.id_context))
        return tuple(Record(base.child(rid), value) for rid, value in values)


@dataclass(frozen=True, slots=True)
class ServerAccountConfig:
    """One LwM2M server account: a Security (0) and a Server (1) instance sharing ``short_server_id``."""

    uri: str
    short_server_id: int
    lifetime: int = 86400
    binding: str = "U"
    security: SecurityConfig = field(default_factory=SecurityConfig)
    default_pmin: int | None = None
    default_pmax: int | None = None
    notification_storing: bool = True
    security_instance_id: int | None = None  # None: chosen when the session runs
    server_instance_id: int | None = None

    _FIELDS = (
        "uri",
        "shortServerId",
        "lifetime",
        "binding",
        "security",
        "defaultMinPeriod",
        "defaultMaxPeriod",
        "notificationStoring",
        "securityInstanceId",
        "serverInstanceId",
    )

    def check(self, where: str) -> None:
        if not re.fullmatch(URI_PATTERN, self.uri):
            raise _fail(
                f"{where}.uri", f"{self.uri[:200]!r}: expected coap:// or coaps:// (or +tcp), a host, a port"
            )
        try:
            parts = urlsplit(self.uri)
        except ValueError as exc:  # an unclosed IPv6 bracket, ...
            raise _fail(f"{where}.uri", f"{self.uri!r}: {exc}") from None
        if parts.scheme not in SECURE_SCHEMES + PLAIN_SCHEMES:
            raise _fail(f"{where}.uri", f"{self.uri!r}: expected coap:// or coaps:// (or +tcp)")
        try:
            parts.port  # noqa: B018  (raises ValueError for a bad port)
        except ValueError:
            raise _fail(f"{where}.uri", f"{self.uri!r} has a bad port") from None
        if not parts.hostname:
            raise _fail(f"{where}.uri", f"{self.uri!r} has no host")
        if not 1 <= self.short_server_id <= MAX_ID:
            raise _fail(f"{where}.shortServerId", f"{self.short_server_id} is not from 1 to {MAX_ID}")
        if self.lifetime <= 0:
            raise _fail(f"{where}.lifetime", f"{self.lifetime} is not a positive number of seconds")
        letters = self.binding
        if not letters or set(letters) - set(BINDING_LETTERS) or len(set(letters)) != len(letters):
            raise _fail(
                f"{where}.binding", f"{letters!r}: letters {', '.join(BINDING_LETTERS)}, each at most once"
            )
        self.security.check(f"{where}.security")
        secure = parts.scheme in SECURE_SCHEMES
        if secure and self.security.mode in ("nosec", "oscore"):
            raise _fail(
                where, f"{self.uri} is coaps: give security mode psk, rpk or x509, not {self.security.mode}"
            )
        if not secure and self.security.mode not in ("nosec", "oscore"):
            raise _fail(where, f"{self.uri} is plain coap: security mode {self.security.mode} needs coaps://")
        if (
            self.default_pmin is not None
            and self.default_pmax is not None
            and self.default_pmin > self.default_pmax
        ):
            raise _fail(
                where, f"defaultMinPeriod {self.default_pmin} is over defaultMaxPeriod {self.default_pmax}"
            )

    @classmethod
    def from_json(cls, data: Any, where: str) -> ServerAccountConfig:
        data = _object(data, where, cls._FIELDS)
        config = cls(
            uri=_str(data, "uri", where),
            short_server_id=_int(data, "shortServerId", where, 1, MAX_ID),
            lifetime=_int(data, "lifetime", where, 1, 0x7FFFFFFF, 86400),
            binding=_str(data, "binding", where, "U"),
            security=SecurityConfig.from_json(data.get("security", {"mode": "nosec"}), f"{where}.security"),
            default_pmin=_int(data, "defaultMinPeriod", where, 0, 0x7FFFFFFF, None),
            default_pmax=_int(data, "defaultMaxPeriod", where, 0, 0x7FFFFFFF, None),
            notification_storing=_bool(data, "notificationStoring", where, True),
            security_instance_id=_int(data, "securityInstanceId", where, 0, MAX_ID, None),
            server_instance_id=_int(data, "serverInstanceId", where, 0, MAX_ID, None),
        )
        config.check(where)
        return config

    def to_json(self, *, secrets: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uri": self.uri,
            "shortServerId": self.short_server_id,
            "lifetime": self.lifetime,
            "binding": self.binding,
            "security": self.security.to_json(secrets=secrets),
        }
        if self.default_pmin is not None:
            out["defaultMinPeriod"] = self.default_pmin
        if self.default_pmax is not None:
            out["defaultMaxPeriod"] = self.default_pmax
        if not self.notification_storing:
            out["notificationStoring"] = False
        if self.security_instance_id is not None:
            out["securityInstanceId"] = self.security_instance_id
        if self.server_instance_id is not None:
            out["serverInstanceId"] = self.server_instance_id
        return out

    def security_records(self, instance_id: int) -> tuple[Record, ...]:
        """The Security (0) instance for this account (§E.1)."""
        base = Path.of(0, instance_id)
        sec = self.security
        values: list[tuple[int, Any]] = [
            (0, self.uri),
            (1, False),  # not the bootstrap server
            (2, sec.mode_number),
            (3, sec.identity_resource),
            (4, sec.server_public_key),
            (5, sec.key if sec.mode != "oscore" else b""),
            (10, self.short_server_id),
        ]
        if sec.mode == "oscore":
            values.append((17, ObjLink(OSCORE_OBJECT, instance_id)))  # /21/{the same ID} (§E.5)
        return tuple(Record(base.child(rid), value) for rid, value in values)

    def server_records(self, instance_id: int) -> tuple[Record, ...]:
        """The Server (1) instance for this account (§E.2)."""
        base = Path.of(1, instance_id)
        values: list[tuple[int, Any]] = [(0, self.short_server_id), (1, self.lifetime)]
        if self.default_pmin is not None:
            values.append((2, self.default_pmin))
        if self.default_pmax is not None:
            values.append((3, self.default_pmax))
        values += [(6, self.notification_storing), (7, self.binding)]
        return tuple(Record(base.child(rid), value) for rid, value in values)


@dataclass(frozen=True, slots=True)
class AccessControlConfig:
    """One Access Control (2) instance: who may do what on ``/object_id/object_instance_id`` (§E.3)."""

    object_id: int
    object_instance_id: int
    acl: tuple[tuple[int, int], ...] = ()  # (Short Server ID, 0 for the default; rights bits)
    owner: int = BOOTSTRAP_OWNER
    instance_id: int | None = None

    _FIELDS = ("objectId", "objectInstanceId", "acl", "owner", "instanceId")

    @classmethod
    def from_json(cls, data: Any, where: str) -> AccessControlConfig:
        data = _object(data, where, cls._FIELDS)
        raw = data.get("acl")
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise _fail(f"{where}.acl", 'expected {"SHORT_SERVER_ID": RIGHTS, ...}')
        acl: list[tuple[int, int]] = []
        for key, rights in raw.items():
            text = str(key)
            if not re.fullmatch(ACL_KEY_PATTERN, text):
                raise _fail(f"{where}.acl", f"{key!r} is not a Short Server ID (0 for the default)")
            if type(rights) is not int or not 0 <= rights <= 31:
                raise _fail(f"{where}.acl.{key}", f"{rights!r}: rights are bits 0..31 (R1 W2 E4 D8 C16)")
            acl.append((int(text), rights))
        return cls(
            object_id=_int(data, "objectId", where, 1, MAX_ID),
            object_instance_id=_int(data, "objectInstanceId", where, 0, 65535),
            acl=tuple(sorted(acl)),
            owner=_int(data, "owner", where, 1, 65535, BOOTSTRAP_OWNER),
            instance_id=_int(data, "instanceId", where, 0, MAX_ID, None),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "objectId": self.object_id,
            "objectInstanceId": self.object_instance_id,
            "acl": {str(ssid): rights for ssid, rights in self.acl},
            "owner": self.owner,
        }
        if self.instance_id is not None:
            out["instanceId"] = self.instance_id
        return out

    def records(self, instance_id: int) -> tuple[Record, ...]:
        base = Path.of(2, instance_id)
        out = [Record(base.child(0), self.object_id), Record(base.child(1), self.object_instance_id)]
        out += [Record(base.child(2).child(ssid), rights) for ssid, rights in self.acl]
        out.append(Record(base.child(3), self.owner))
        return tuple(out)


# --- the whole -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceWrite:
    """One Bootstrap-Write: a whole instance, or one resource of another object."""

    path: Path
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class DeviceLayout:
    """The accounts and instances a device holds, as far as the bootstrap server knows them.

    From a Bootstrap-Discover (LwM2M-TS-Core 1.2 §6.1.7.3): every Security instance carries
    ``ssid`` and ``uri`` except the bootstrap server account's, every Server instance ``ssid``.
    ``known`` is False for a layout assumed without one (the bootstrap account at /0/0, where
    clients usually keep it): explicit instance IDs are then taken as they are given.
    """

    bootstrap_accounts: frozenset[int] = frozenset({0})  # Security instance IDs never touched
    security: Mapping[int, int] = field(default_factory=dict)  # Security instance -> its ssid
    servers: Mapping[int, int | None] = field(default_factory=dict)  # Server instance -> its ssid
    instances: Mapping[int, frozenset[int]] = field(default_factory=dict)  # other objects' instances
    known: bool = False

    @classmethod
    def assumed(cls, bootstrap_account_id: int | None = None) -> DeviceLayout:
        """Without a Discover: the account where the configuration says, else at /0/0."""
        if bootstrap_account_id is None:
            return cls()
        return cls(frozenset({bootstrap_account_id}), known=True)

    def instance_ids(self, object_id: int) -> frozenset[int]:
        if object_id == 0:
            return self.bootstrap_accounts | frozenset(self.security)
        if object_id == 1:
            return frozenset(self.servers)
        return self.instances.get(object_id, frozenset())


@dataclass(frozen=True, slots=True)
class BootstrapPlan:
    """The Bootstrap-Deletes and -Writes of one session, and the layout they leave."""

    deletes: tuple[Path, ...]
    writes: tuple[InstanceWrite, ...]
    after: DeviceLayout


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    servers: tuple[ServerAccountConfig, ...]
    delete_paths: tuple[Path, ...] = ()
    bootstrap_discover: bool = True
    access_control: tuple[AccessControlConfig, ...] = ()
    records: tuple[Record, ...] = ()  # values of other objects, written instance by instance
    # The Security instance of the device's own bootstrap server account, when known ahead
    # (a factory layout): what a Bootstrap-Pack (no Discover there) keeps clear of.
    bootstrap_account_id: int | None = None

    _FIELDS = (
        "servers",
        "deletePaths",
        "bootstrapDiscover",
        "bootstrapAccountId",
        "accessControl",
        "objects",
    )

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ConfigError unless the configuration leaves the device a usable server account."""
        if not self.servers:
            raise ConfigError(
                "servers: no LwM2M server given: the device would be left without a server account"
            )
        ssids: dict[int, int] = {}
        for i, server in enumerate(self.servers):
            where = f"servers[{i}]"
            server.check(where)
            if server.short_server_id in ssids:
                raise _fail(
                    f"{where}.shortServerId",
                    f"{server.short_server_id} is already used by servers[{ssids[server.short_server_id]}]",
                )
            ssids[server.short_server_id] = i
        for name, ids in (
            ("securityInstanceId", [s.security_instance_id for s in self.servers]),
            ("serverInstanceId", [s.server_instance_id for s in self.servers]),
            ("accessControl[].instanceId", [a.instance_id for a in self.access_control]),
        ):
            given = [i for i in ids if i is not None]
            if len(set(given)) != len(given):
                raise ConfigError(f"{name}: the same instance ID is given twice")
        if self.bootstrap_account_id is not None and not 0 <= self.bootstrap_account_id <= MAX_ID:
            raise _fail("bootstrapAccountId", f"{self.bootstrap_account_id} is not from 0 to {MAX_ID}")
        for path in self.delete_paths:
            if path.level > 2:
                raise _fail("deletePaths", f"{path}: delete /, an object or an instance")
        if self.bootstrap_account_id is not None:
            # Known at input: the same refusals a Discover-based session would make.
            _check_layout(self, DeviceLayout.assumed(self.bootstrap_account_id), "bootstrapAccountId")
        for i, aco in enumerate(self.access_control):
            if aco.object_id in (0, 21):
                raise _fail(
                    f"accessControl[{i}].objectId", f"{aco.object_id}: Security and OSCORE have no ACL"
                )
            if aco.owner != BOOTSTRAP_OWNER and aco.owner not in ssids:
                known = ", ".join(map(str, ssids))
                raise _fail(
                    f"accessControl[{i}].owner",
                    f"{aco.owner} is not a shortServerId of servers[] ({known}) nor {BOOTSTRAP_OWNER}",
                )
            for ssid, _ in aco.acl:
                if ssid != 0 and ssid not in ssids:
                    raise _fail(f"accessControl[{i}].acl", f"{ssid} is not a server's shortServerId")
        for r in self.records:
            if r.path.level < 3 or r.value is None:
                raise _fail("objects.records", f"{r.path}: give resource values")
            if r.path.ids[0] in (0, 1, 2):
                raise _fail(
                    "objects.records",
                    f"{r.path}: Security, Server and Access Control come from servers[] and accessControl[]",
                )

    # --- JSON -----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Any, models: ObjectRegistry | None = None) -> BootstrapConfig:
        """Parse and check the JSON form; ConfigError names the first problem."""
        data = _object(data, "", cls._FIELDS)
        servers = tuple(
            ServerAccountConfig.from_json(s, f"servers[{i}]")
            for i, s in enumerate(_list(data, "servers", ""))
        )
        paths: list[Path] = []
        for raw in _list(data, "deletePaths", ""):
            try:
                path = Path.parse(raw)
            except InvalidPath as exc:
                raise _fail("deletePaths", str(exc)) from None
            if str(path) != raw:  # Path.parse forgives "", "3/0", "/3/0/" and spaces; a body says it once
                raise _fail("deletePaths", f"{raw[:40]!r}: write it as {path}")
            paths.append(path)
        acos = tuple(
            AccessControlConfig.from_json(a, f"accessControl[{i}]")
            for i, a in enumerate(_list(data, "accessControl", ""))
        )
        records: list[Record] = []
        objects = data.get("objects")
        if objects is not None:
            objects = _object(objects, "objects", ("records",))
            for item in _list(objects, "records", "objects"):
                try:
                    records.append(record_from_json(item, models))
                except (JsonFormError, InvalidPath, ValueError) as exc:
                    raise _fail("objects.records", str(exc)) from None
        return cls(
            servers=servers,
            delete_paths=tuple(paths),
            bootstrap_discover=_bool(data, "bootstrapDiscover", "", True),
            access_control=acos,
            records=tuple(records),
            bootstrap_account_id=_int(data, "bootstrapAccountId", "", 0, MAX_ID, None),
        )

    def to_json(self, *, secrets: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"servers": [s.to_json(secrets=secrets) for s in self.servers]}
        if self.delete_paths:
            out["deletePaths"] = [str(p) for p in self.delete_paths]
        if not self.bootstrap_discover:
            out["bootstrapDiscover"] = False  # the default is to discover
        if self.bootstrap_account_id is not None:
            out["bootstrapAccountId"] = self.bootstrap_account_id
        if self.access_control:
            out["accessControl"] = [a.to_json() for a in self.access_control]
        if self.records:
            out["objects"] = {"records": [record_to_json(r) for r in self.records]}
        return out

    # --- the writes -------------------------------------------------------------------------

    def assumed_layout(self) -> DeviceLayout:
        """The device's layout as far as the configuration alone tells (no Discover)."""
        return DeviceLayout.assumed(self.bootstrap_account_id)

    def plan(self, layout: DeviceLayout | None = None) -> BootstrapPlan:
        """The Bootstrap-Deletes and -Writes that put this configuration on a device of ``layout``
        (by default :meth:`assumed_layout`).

        Raises LayoutConflict when a delete path or an explicit securityInstanceId names the
        device's bootstrap server account (LwM2M-TS-Core 1.2 §6.1.7.6: it is never removed).
        Otherwise: a server account is written over the Security and Server instances that hold
        its Short Server ID already (after the deletes), else at the lowest free instance IDs,
        never at the bootstrap account's; other instances with that Short Server ID are deleted
        so that the device is left one account per server (§6.1.7.2 checks it on Finish).
        """
        layout = layout if layout is not None else self.assumed_layout()
        if layout.known:
            _check_layout(self, layout, "on this device")
        protected = layout.bootstrap_accounts
        security = dict(layout.security)
        servers = dict(layout.servers)
        others = {oid: set(ids) for oid, ids in layout.instances.items()}
        for path in self.delete_paths:
            _forget(path, security, servers, others)
        deletes = list(self.delete_paths)

        used = {i for s in self.servers if (i := s.security_instance_id) is not None}
        security_ids: list[int] = []
        for server in self.servers:
            chosen = server.security_instance_id
            if chosen is None:
                chosen = _reuse(security, server.short_server_id, used)
            if chosen is None:
                chosen = _lowest_free(protected | set(security) | used)
            used.add(chosen)
            security_ids.append(chosen)
        used_srv = {i for s in self.servers if (i := s.server_instance_id) is not None}
        server_ids: list[int] = []
        for server in self.servers:
            chosen = server.server_instance_id
            if chosen is None:
                chosen = _reuse(servers, server.short_server_id, used_srv)
            if chosen is None:
                chosen = _lowest_free(set(servers) | used_srv)
            used_srv.add(chosen)
            server_ids.append(chosen)
        # Another instance holding a configured Short Server ID would make a second account for
        # that server: it goes.
        configured = {s.short_server_id for s in self.servers}
        for oid, held, chosen_ids in ((0, security, security_ids), (1, servers, server_ids)):
            for iid, ssid in sorted(held.items()):
                if ssid in configured and iid not in chosen_ids:
                    deletes.append(Path.of(oid, iid))
                    del held[iid]

        out: list[InstanceWrite] = []
        for server, sec_id in zip(self.servers, security_ids, strict=True):
            if server.security.mode == "oscore":  # the parameters first, then the link to them
                out.append(
                    InstanceWrite(Path.of(OSCORE_OBJECT, sec_id), server.security.oscore_records(sec_id))
                )
                others.setdefault(OSCORE_OBJECT, set()).add(sec_id)
            out.append(InstanceWrite(Path.of(0, sec_id), server.security_records(sec_id)))
            security[sec_id] = server.short_server_id
        for server, srv_id in zip(self.servers, server_ids, strict=True):
            out.append(InstanceWrite(Path.of(1, srv_id), server.server_records(srv_id)))
            servers[srv_id] = server.short_server_id
        acl_taken = others.setdefault(2, set())
        aco_ids = _allocate([a.instance_id for a in self.access_control], set(acl_taken))
        for aco, aco_id in zip(self.access_control, aco_ids, strict=True):
            out.append(InstanceWrite(Path.of(2, aco_id), aco.records(aco_id)))
            acl_taken.add(aco_id)
        # Other objects are written resource by resource: a Bootstrap-Write of a whole instance
        # could wipe the device's other values there, which the configuration did not mean.
        by_resource: dict[Path, list[Record]] = {}
        for r in self.records:
            by_resource.setdefault(r.path.resource_path(), []).append(r)
        out += [InstanceWrite(path, tuple(recs)) for path, recs in sorted(by_resource.items())]
        after = DeviceLayout(
            protected,
            security,
            servers,
            {oid: frozenset(ids) for oid, ids in others.items()},
            layout.known,
        )
        return BootstrapPlan(tuple(deletes), tuple(out), after)

    def writes(self, layout: DeviceLayout | None = None) -> list[InstanceWrite]:
        """Every Bootstrap-Write of the session in order: the Security, Server and Access Control
        instances, then the resources of other objects (see :meth:`plan`)."""
        return list(self.plan(layout).writes)

    def pack(self, layout: DeviceLayout | None = None) -> list[Record]:
        """Every value of :meth:`writes` in one list: the content of a Bootstrap-Pack (§6.1.7.7).

        A pack is asked for without a Discover: ``layout`` is what the bootstrap server learnt
        of the device before, else what the configuration says (``bootstrapAccountId``)."""
        return [r for w in self.plan(layout).writes for r in w.records]


def _check_layout(config: BootstrapConfig, layout: DeviceLayout, where: str) -> None:
    """LayoutConflict when ``config`` would delete or overwrite a bootstrap account of ``layout``."""
    for account in sorted(layout.bootstrap_accounts):
        own = f"/0/{account} is the device's bootstrap server account"
        if Path.of(0, account) in config.delete_paths:
            raise LayoutConflict(
                f"deletePaths: {own} ({where}); LwM2M-TS-Core 1.2 §6.1.7.6: it is never deleted"
            )
        for i, server in enumerate(config.servers):
            if server.security_instance_id == account:
                raise LayoutConflict(
                    f"servers[{i}].securityInstanceId: {own} ({where}); writing a server account "
                    "there would lose it (and with it the Bootstrap-Request Trigger /1/x/9)"
                )


def _forget(
    path: Path, security: dict[int, int], servers: dict[int, Any], others: dict[int, set[int]]
) -> None:
    """What a Bootstrap-Delete of ``path`` removes (§6.1.7.6: never the bootstrap account, which
    is not in ``security``, nor the Device object)."""
    if path.is_root:
        security.clear()
        servers.clear()
        for oid in others:
            if oid != 3:
                others[oid].clear()
        return
    oid = path.ids[0]
    held: Any = security if oid == 0 else servers if oid == 1 else others.get(oid)
    if held is None:
        return
    if path.is_object:
        held.clear()
    elif isinstance(held, dict):
        held.pop(path.ids[1], None)
    else:
        held.discard(path.ids[1])


def _reuse(held: Mapping[int, Any], ssid: int, used: set[int]) -> int | None:
    """The instance that holds ``ssid`` already, when no other account of the session took it."""
    for iid, holder in sorted(held.items()):
        if holder == ssid and iid not in used:
            return iid
    return None


def _lowest_free(taken: AbstractSet[int]) -> int:
    candidate = 0
    while candidate in taken:
        candidate += 1
    return candidate


def _allocate(given: list[int | None], taken: set[int]) -> list[int]:
    """The instance IDs: those given, and the lowest free ones for the others."""
    used = set(taken) | {i for i in given if i is not None}
    out: list[int] = []
    candidate = 0
    for i in given:
        if i is not None:
            out.append(i)
            continue
        while candidate in used:
            candidate += 1
        used.add(candidate)
        out.append(candidate)
    return out
