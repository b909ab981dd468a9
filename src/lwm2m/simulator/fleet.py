"""Many virtual LwM2M devices in one process: a :class:`Fleet`.

::

    config = FleetConfig(count=1000, profile="mixed", rate=200)
    async with Fleet("coap://127.0.0.1:5683", config) as fleet:
        await fleet.wait_registered(timeout=60)
        print(fleet.stats())

Each device is an :class:`~lwm2m.client.role.Client` on its own UDP
port, named ``{prefix}-{index:05d}``. Devices are started (and so register)
at up to ``rate`` per second. One task moves every simulated value: every
``tick`` seconds it steps the devices whose turn it is, each device once per
``update_interval`` (devices are spread over the interval so the work is
even), plus the devices a Write or Execute changed since the last tick. That
loop, the clients' own registration tasks and their sockets are all there is:
no task per device per resource, so ten thousand devices fit in one process.

With ``security="psk"`` each device has a PSK of its own (16 random bytes, its
endpoint name as identity) for a ``coaps://`` or ``coaps+tcp://`` server; with ``security="oscore"`` an OSCORE
context of its own (RFC 8613) for a ``coap://`` server, derived from the fleet's master secret
and its index; with ``bootstrap=URI`` each
starts with only a bootstrap server account and registers with the server its
bootstrap gives it. :mod:`lwm2m.simulator.provision` gives the servers those
keys and configurations before the fleet starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import ipaddress
import logging
import random
import re
import secrets
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import ServerUri
from lwm2m.client.gateway import MAX_END_DEVICES, Gateway
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.role import Client
from lwm2m.coap.config import EndpointConfig
from lwm2m.errors import ConfigError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.registration import SUPPORTED_VERSIONS
from lwm2m.simulator.geography import CITIES, City, city_for
from lwm2m.simulator.lorawan import ClassARadio
from lwm2m.simulator.objects import Simulated
from lwm2m.simulator.profiles import DeviceSpec, Profile, build_device, get_profile
from lwm2m.simulator.values import Tick, hour_of_day
from lwm2m.storage.base import OscoreSecrets, SecurityInfo
from lwm2m.transport.address import resolve
from lwm2m.transport.dtls.config import MAX_PSK_LENGTH, PskCredentials
from lwm2m.transport.shared import SharedUdp

if TYPE_CHECKING:  # lwm2m.coap.oscore needs the cryptography package, which plain CoAP does without
    from lwm2m.coap.oscore import OscoreConfig

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"[A-Za-z0-9._~:-]+")  # endpoint names travel in a URI query: keep them plain
STOP_CONCURRENCY = 100  # de-registrations in flight at once when the fleet stops
STEP_SLICE = 250  # devices the value loop moves before it lets the sockets in again
# Parts of a tick over which its devices move, evenly spaced: a real fleet's devices do not
# notify in step, and a whole bucket at once makes a burst at the server every tick.
TICK_PARTS = 10
SECURITY_MODES = ("nosec", "psk", "oscore")
# The schemes a device reaches with its PSK: DTLS (RFC 9147) or TLS over TCP (RFC 8323 §9).
PSK_SCHEMES = ("coaps", "coaps+tcp")
KEY_BYTES = 16  # a PSK per device and server; LwM2M keys are usually 16 bytes
SHORT_SERVER_ID = 101  # of the server account a bootstrap configuration of the fleet hands out
OSCORE_PREFIX = 64  # characters of a prefix that is the ID Context of an OSCORE fleet


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One device's PSK for one server. ``repr`` never shows the key."""

    endpoint: str
    identity: str
    key: bytes = field(repr=False)

    @property
    def credentials(self) -> PskCredentials:
        return PskCredentials(self.identity, self.key)

    def security_info(self) -> SecurityInfo:
        return SecurityInfo(self.endpoint, self.identity, self.key)

    def to_json(self) -> dict[str, str]:
        """The body of ``PUT /api/security/clients/{ep}``."""
        return {"pskIdentity": self.identity, "pskKey": self.key.hex()}


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Counters of a fleet, summed over its devices."""

    devices: int  # how many the fleet runs
    started: int  # clients started so far (sockets open)
    registered: int  # registered now
    registrations: int  # successful Registers
    updates: int  # successful registration Updates
    requests: int  # requests from the server served
    notifications: int  # notifications sent
    errors: int  # failed registration exchanges (bootstraps included)
    ticks: int  # ticks of the value loop
    elapsed: float  # seconds since the fleet started
    bootstraps: int = 0  # accepted Bootstrap-Finish (or Bootstrap-Pack)


class SimulatedDevice:
    """One virtual device: its LwM2M client and the object instances the fleet's ticks move."""

    __slots__ = (
        "_fleet",
        "_last",
        "client",
        "end_devices",
        "endpoint",
        "firmware",
        "gateway",
        "index",
        "objects",
        "parts",
        "profile",
    )

    def __init__(self, fleet: Fleet, index: int, endpoint: str, start: Tick) -> None:
        self._fleet = fleet
        self.index = index
        self.endpoint = endpoint
        spec = DeviceSpec(
            index,
            endpoint,
            start,
            fleet.models,
            binding="UQ" if fleet.queue_mode else "U",
            on_reboot=self.reboot,
            install_seconds=fleet.install_seconds,
            city=fleet.city,
        )
        built = build_device(fleet.profile, spec)
        self.profile: Profile = built.profile
        self.objects = built.objects
        self.parts = built.parts
        self.firmware = built.firmware
        wake = self.wake
        for part in self.parts:
            part.on_wake = wake
        self._last = start.now
        self.gateway: Gateway | None = None
        # A gateway's end devices; one empty tuple for every other device (an empty list is 56 bytes).
        self.end_devices: Sequence[SimulatedEndDevice] = ()
        if built.profile.end_devices:
            self.gateway = fleet._gateway(endpoint, built.objects)
            self.client = self.gateway.client
            self.end_devices = [SimulatedEndDevice(self, spec, number) for number in range(fleet.end_devices)]
        else:
            self.client = fleet._client(endpoint, built.objects)

    def __repr__(self) -> str:
        return f"<SimulatedDevice {self.endpoint} {self.profile.name}>"

    def instance(self, object_id: int, instance_id: int = 0) -> ObjectInstance | None:
        return self.client.tree.instance(object_id, instance_id)

    def wake(self) -> None:
        """Step this device at the fleet's next tick (a Write or Execute changed it)."""
        self._fleet._dirty.add(self)

    def step(self, now: float, hour: float, rng: random.Random) -> None:
        t = Tick(now, hour, max(0.0, now - self._last), rng)
        self._last = now
        for part in self.parts:
            part.tick(t)

    def reboot(self) -> None:
        """Executed Reboot (3/0/4): go silent, then register again from a new port, as a device does."""
        self._fleet._spawn(self._reboot())

    async def _reboot(self) -> None:
        # The Device object calls this once its 2.04 has left.
        await self.client.stop(deregister=False)
        await asyncio.sleep(self._fleet.reboot_seconds)
        if not self._fleet.stopping:
            await self.client.start()


class SimulatedEndDevice:
    """One uCIFI end device behind a simulated LoRaWAN gateway: its objects (a Device object of
    its own), moved only when it speaks (an uplink every ``uplink_period`` simulated seconds), and
    its class A radio, which holds the requests to it until then."""

    __slots__ = ("_last", "parts", "prefix", "profile", "radio")

    def __init__(self, gateway: SimulatedDevice, spec: DeviceSpec, number: int) -> None:
        fleet = gateway._fleet
        rng = spec.start.rng
        self.profile = gateway.profile.end_device(rng)
        # Each end device its own DEV EUI-like prefix: the gateway's index and its number.
        self.prefix = f"ed{gateway.index:x}-{number:x}"
        own = replace(
            spec, index=spec.index * 1000 + number, endpoint=f"{spec.endpoint}-{self.prefix}", on_reboot=None
        )
        built = build_device(self.profile, own)
        self.parts: tuple[Simulated, ...] = built.parts
        wake = gateway.wake
        for part in self.parts:
            part.on_wake = wake
        period = fleet.uplink_period
        self.radio = ClassARadio(period, spec.start.now + rng.uniform(0.0, period))
        self._last = spec.start.now
        assert gateway.gateway is not None
        gateway.gateway.add(
            self.prefix, built.objects, device_id=f"urn:dev:{own.endpoint}", downlink=self.radio.downlink
        )

    def step(self, now: float, hour: float, rng: random.Random) -> None:
        if not self.radio.uplink_due(now):
            return  # silent between uplinks: its values stand still
        t = Tick(now, hour, max(0.0, now - self._last), rng)
        self._last = now
        for part in self.parts:
            part.tick(t)


def _city(city: City | str | None, prefix: str) -> City:
    if isinstance(city, City):
        return city
    if city is None:
        return city_for(prefix)
    for known in CITIES:
        if known.name.lower() == city.lower():
            return known
    raise ConfigError(f"city {city!r}: expected one of {', '.join(c.name for c in CITIES)}")


def _uri(text: str | None) -> ServerUri | None:
    try:
        return None if text is None else ServerUri.parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What a :class:`Fleet` runs: ``count`` simulated devices of ``profile`` registering with
    ``server_uri``. Every value is checked on construction (ConfigError naming it).

    ``rate``: devices started per second (None: as fast as sockets open).
    ``seed``: the same seed gives the same devices and, tick for tick, the same values.
    ``tick``: seconds between two steps of the value loop; each device steps once per
    ``update_interval`` (at least one tick).
    ``time_scale``: simulated seconds per real second (60: a day passes in 24 minutes).
    ``start_time``: the simulated Unix time at start (None: now).
    ``utc_offset``: seconds east of UTC of the devices' local time (None: this machine's).
    ``city``: where the devices with a Location (6) stand, a :class:`~lwm2m.simulator.geography.City`
    or the name of one of ``CITIES`` (None: one chosen by the prefix, the same every run).
    ``dedup_entries``: CoAP exchanges each device remembers to recognise retransmissions.
    ``reboot_seconds``: how long a device stays silent after an executed Reboot;
    ``install_seconds``: how long its firmware update takes.
    ``freeze_gc``: move the devices' objects out of the cyclic garbage collector's reach
    (``gc.freeze()``) as they start; with thousands of devices a full collection otherwise
    pauses the whole process for a second or more; from 500 devices on, young collections
    wait for ``GC_YOUNG`` new objects (not 700). For a process that runs a fleet until
    it exits (the ``lwm2m simulate`` command); it affects every object of the process.

    ``security`` ``"oscore"``: every device has an OSCORE context of its own (RFC 8613) for a
    ``coap://`` server (no bootstrap): its Master Secret derived from ``oscore_secret`` (the
    fleet's, random when None) and its index, its Sender ID the index, its ID Context the
    prefix, so fleets with other prefixes never share an identity (:meth:`Fleet.oscore_entries`).

    ``shared_network``: the devices share one UDP socket, each at an address of its own of this
    IPv4 network (``"127.64.0.0/10"``: any of 127.0.0.0/8 is local on Linux), instead of a
    socket each: for fleets beyond the process's file descriptors or the host's ephemeral ports
    (some 28,000 per address). Plain ``coap://`` only (security ``"nosec"`` or ``"oscore"``); the
    server sees each device at ``address:port`` as it sees a device with a socket of its own.

    ``end_devices``: how many end devices each gateway (profile ``ucifi-lorawan-gateway``) has
    behind it; ``uplink_period``: simulated seconds between two uplinks of one end device
    (LoRaWAN class A: requests to it are answered at its next uplink).
    ``security``: ``"nosec"``, or ``"psk"``: every device has a PSK of its own (``KEY_BYTES``
    random bytes, its endpoint name as identity) for each ``coaps://`` or ``coaps+tcp://`` server, found in
    :meth:`Fleet.server_keys` and :meth:`Fleet.bootstrap_server_keys`. ``keys`` and
    ``bootstrap_keys`` give some or all of them by endpoint name instead (e.g. those a store
    holds already). ``bootstrap``: the devices start with only an account on this bootstrap
    server (LwM2M-TS-Core 1.2 §6.1) and register with the server it gives them; ``server_uri``
    (or None: whatever the bootstrap server hands out) is then the server the fleet's
    :meth:`Fleet.bootstrap_config` names.
    """

    server_uri: str | None = None
    count: int = 1
    profile: str | Profile = "mixed"
    prefix: str = "sim"
    rate: float | None = 100.0
    lifetime: int = 300
    lwm2m_version: str = "1.1"
    queue_mode: bool = False
    seed: int | None = None
    tick: float = 1.0
    update_interval: float = 10.0
    time_scale: float = 1.0
    start_time: float | None = None
    utc_offset: float | None = None
    local_host: str | None = None
    models: ObjectRegistry | None = field(default=None, repr=False, compare=False)
    reboot_seconds: float = 1.0
    install_seconds: float = 2.0
    dedup_entries: int = 16
    freeze_gc: bool = False
    security: str = "nosec"
    bootstrap: str | None = None
    keys: Mapping[str, bytes] | None = field(default=None, repr=False, compare=False)
    bootstrap_keys: Mapping[str, bytes] | None = field(default=None, repr=False, compare=False)
    city: City | str | None = None
    oscore_secret: bytes | None = field(default=None, repr=False, compare=False)
    end_devices: int = 20
    uplink_period: float = 30.0
    shared_network: str | None = None

    def __post_init__(self) -> None:
        if type(self.count) is not int or self.count < 1:
            raise ConfigError(f"count {self.count!r}: expected a whole number of devices, 1 or more")
        if not isinstance(self.profile, Profile):
            try:
                get_profile(self.profile)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if not isinstance(self.prefix, str) or not _PREFIX.fullmatch(self.prefix):
            raise ConfigError(f"prefix {self.prefix!r}: use letters, digits and . _ ~ : - only")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate {self.rate!r}: expected devices per second above 0")
        if type(self.lifetime) is not int or self.lifetime < 1:
            raise ConfigError(f"lifetime {self.lifetime!r}: expected whole seconds, 1 or more")
        if self.lwm2m_version not in SUPPORTED_VERSIONS:
            versions = ", ".join(SUPPORTED_VERSIONS)
            raise ConfigError(f"lwm2m_version {self.lwm2m_version!r}: expected one of {versions}")
        if not self.tick > 0:
            raise ConfigError(f"tick {self.tick!r}: expected seconds above 0")
        if not self.update_interval >= self.tick:
            raise ConfigError(
                f"update_interval {self.update_interval!r}: expected at least the tick ({self.tick} s)"
            )
        if not self.time_scale > 0:
            raise ConfigError(f"time_scale {self.time_scale!r}: expected a factor above 0")
        for name in ("reboot_seconds", "install_seconds"):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"{name} {value!r}: expected seconds, 0 or more")
        if type(self.end_devices) is not int or not 1 <= self.end_devices <= MAX_END_DEVICES:
            raise ConfigError(
                f"end_devices {self.end_devices!r}: expected a whole number from 1 to {MAX_END_DEVICES}"
            )
        if not self.uplink_period > 0:
            raise ConfigError(f"uplink_period {self.uplink_period!r}: expected seconds above 0")
        if type(self.dedup_entries) is not int or self.dedup_entries < 1:
            raise ConfigError(f"dedup_entries {self.dedup_entries!r}: expected a whole number, 1 or more")
        if self.security not in SECURITY_MODES:
            raise ConfigError(f"security {self.security!r}: expected one of {', '.join(SECURITY_MODES)}")
        _check_keys(self.keys or {})
        _check_keys(self.bootstrap_keys or {})
        _city(self.city, self.prefix)
        server, bootstrap = _uri(self.server_uri), _uri(self.bootstrap)
        for name, text, uri in (
            ("server", self.server_uri, server),
            ("bootstrap", self.bootstrap, bootstrap),
        ):
            if uri is not None and uri.scheme == "coaps+tcp" and name == "bootstrap":
                raise ConfigError(
                    f"{name} {text}: a fleet that bootstraps over coaps+tcp:// is not simulated"
                )
            if uri is not None and uri.scheme in PSK_SCHEMES and self.security != "psk":
                raise ConfigError(f"{name} {text}: {uri.scheme}:// needs security 'psk'")
        if self.security == "oscore":
            if self.bootstrap is not None:
                raise ConfigError("security 'oscore': a fleet that bootstraps over OSCORE is not simulated")
            if server is not None and server.scheme != "coap":
                raise ConfigError(f"security 'oscore': the server {self.server_uri} must be coap://")
            if len(self.prefix) > OSCORE_PREFIX:
                raise ConfigError(
                    f"prefix {self.prefix!r}: at most {OSCORE_PREFIX} characters with OSCORE (the ID Context)"
                )
        if self.oscore_secret is not None and not 1 <= len(self.oscore_secret) <= 64:
            raise ConfigError("oscore_secret: 1 to 64 bytes")
        if self.shared_network is not None:
            _check_network(self.shared_network, self.security, server, bootstrap)
        if server is not None and server.scheme in ("coap", "coap+tcp") and self.security == "psk":
            raise ConfigError(
                f"security 'psk': the server {self.server_uri} is plain CoAP;"
                " give a coaps:// (or coaps+tcp://) one"
            )


class Fleet:
    """The simulated devices a :class:`FleetConfig` describes: ``Fleet(config)``, or
    ``Fleet(server_uri, config)`` for that config with that server (None: the config's;
    ``Fleet(server_uri)``: one device with the defaults). The servers must know the keys and
    configurations before the devices start: :mod:`lwm2m.simulator.provision`.
    """

    def __init__(self, server: str | FleetConfig | None, config: FleetConfig | None = None, /) -> None:
        if isinstance(server, FleetConfig):
            if config is not None:
                raise TypeError("Fleet(config) or Fleet(server_uri, config), not two configs")
            config = server
        elif config is None:
            config = FleetConfig(server_uri=server)
        elif server is not None:
            config = replace(config, server_uri=server)
        self.config = config
        if config.server_uri is None and config.bootstrap is None:
            raise ConfigError("server_uri None: give a server, a bootstrap server, or both")
        server_uri, bootstrap, security = config.server_uri, config.bootstrap, config.security
        self._server = _uri(server_uri)
        self._bootstrap = _uri(bootstrap)
        self.profile = config.profile if isinstance(config.profile, Profile) else get_profile(config.profile)
        self.security = security
        self.server_psk = self._server is not None and self._server.scheme in PSK_SCHEMES
        self.bootstrap_psk = self._bootstrap is not None and self._bootstrap.scheme in PSK_SCHEMES
        # Checked here, with the server known: a config may leave the server to Fleet(server, config).
        if security == "psk" and not (self.server_psk or self.bootstrap_psk):
            raise ConfigError(
                "security 'psk': neither the server nor the bootstrap server is coaps:// or coaps+tcp://"
            )
        self.server_uri = server_uri
        self.client_uri = server_uri  # the same with the host resolved once for all devices
        self.bootstrap_uri = bootstrap
        self.client_bootstrap_uri = bootstrap  # the same, resolved
        self.count = config.count
        self.prefix = config.prefix
        self.city = _city(config.city, config.prefix)
        self.rate = config.rate
        self.lifetime = config.lifetime
        self.lwm2m_version = config.lwm2m_version
        self.queue_mode = config.queue_mode
        self.seed = seed = config.seed
        self.tick = config.tick
        self.update_interval = config.update_interval
        self.time_scale = config.time_scale
        self.local_host = config.local_host
        self.models = config.models if config.models is not None else load_catalogue()
        self.reboot_seconds = config.reboot_seconds
        self.install_seconds = config.install_seconds
        # A constrained device remembers few exchanges for duplicate detection (RFC 7252 §4.5):
        # with the endpoint's default (up to 100,000, each kept for 247 s) a fleet read every
        # second would grow by some 70 KB per device in four minutes, and every full garbage
        # collection would walk those entries.
        self.coap_config = EndpointConfig(max_dedup_entries=config.dedup_entries)
        self.freeze_gc = config.freeze_gc
        self.end_devices = config.end_devices
        self.uplink_period = config.uplink_period
        self._start_time = config.start_time
        utc_offset = config.utc_offset
        self.utc_offset = float(time.localtime().tm_gmtoff) if utc_offset is None else utc_offset
        self.rng = random.Random(seed)
        # Keys come from the OS's generator, never from the seed: the seed is no secret.
        self._keys = self._new_keys(config.keys) if self.server_psk else {}
        self._bootstrap_keys = self._new_keys(config.bootstrap_keys) if self.bootstrap_psk else {}
        self.oscore = security == "oscore"
        self._oscore_secret = config.oscore_secret or secrets.token_bytes(KEY_BYTES)
        self.devices: list[SimulatedDevice] = []
        self._by_name: dict[str, SimulatedDevice] = {}
        # Each device steps once per update_interval: at the tick of its bucket.
        buckets = max(1, round(self.update_interval / self.tick))
        self._buckets: list[list[SimulatedDevice]] = [[] for _ in range(buckets)]
        # Gateways: their end devices' uplinks are looked at every tick (a downlink waits for one).
        self._gateways: list[SimulatedDevice] = []
        self._dirty: set[SimulatedDevice] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._starter: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0  # loop time of start()
        self._sim0 = 0.0  # simulated time at start()
        self.ticks = 0
        self.step_seconds = 0.0  # spent moving values in the value loop
        self.tick_errors = 0
        self.start_error: OSError | None = None  # why starting devices stopped early
        self.stopping = False
        self._hurry = False
        self.stopped = 0  # devices stopped by stop()
        self.shared_network = config.shared_network
        self.shared_udp: SharedUdp | None = None  # the devices' socket, with shared_network
        self._client_config: ClientConfig | None = None  # of the devices without keys of their own

    # --- identity and lookup ---------------------------------------------------------------------

    def endpoint_name(self, index: int) -> str:
        return f"{self.prefix}-{index:05d}"

    def endpoint_names(self) -> list[str]:
        """Every device's endpoint name, in the order they start."""
        return [self.endpoint_name(i) for i in range(self.count)]

    # --- keys and bootstrap configurations ---------------------------------------------------------

    def _new_keys(self, given: Mapping[str, bytes] | None) -> dict[str, bytes]:
        given = given or {}
        _check_keys(given)
        return {ep: given.get(ep) or secrets.token_bytes(KEY_BYTES) for ep in self.endpoint_names()}

    def adopt_keys(self, keys: Mapping[str, bytes], *, bootstrap: bool = False) -> None:
        """Use these keys (by endpoint name) instead of those the fleet made, before it starts:
        for the LwM2M server, or (``bootstrap``) for the bootstrap server."""
        if self._loop is not None:
            raise RuntimeError("the fleet has started: its keys are in use")
        mine = self._bootstrap_keys if bootstrap else self._keys
        _check_keys(keys)
        mine.update((ep, key) for ep, key in keys.items() if ep in mine)

    def server_keys(self) -> list[DeviceKey]:
        """The devices' PSKs for the LwM2M server (none unless it is ``coaps://``): what its
        security store must hold, e.g. through ``PUT /api/security/clients/{ep}``."""
        return [DeviceKey(ep, ep, key) for ep, key in self._keys.items()]

    def bootstrap_server_keys(self) -> list[DeviceKey]:
        """The devices' PSKs for the bootstrap server (none unless it is ``coaps://``): what the
        bootstrap server's own security store must hold."""
        return [DeviceKey(ep, ep, key) for ep, key in self._bootstrap_keys.items()]

    def bootstrap_config(self, endpoint: str) -> dict[str, Any]:
        """The bootstrap configuration of ``endpoint`` (its JSON form, the body of ``PUT
        /api/bootstrap/{ep}``): an account on the fleet's server, with the device's PSK for a
        ``coaps://`` one."""
        if self.server_uri is None:
            raise ValueError("the fleet has no server to hand out (server_uri is None)")
        security: dict[str, Any] = {"mode": "nosec"}
        if self.server_psk:
            security = {"mode": "psk", "identity": endpoint, "key": self._keys[endpoint].hex()}
        server = {
            "uri": self.server_uri,
            "shortServerId": SHORT_SERVER_ID,
            "lifetime": self.lifetime,
            "binding": "U",
            "security": security,
        }
        return {"servers": [server], "deletePaths": ["/0", "/1"]}

    def oscore_secrets(self, index: int) -> OscoreSecrets:
        """The OSCORE parameters of device ``index`` as it holds them: its Master Secret
        HMAC-SHA256(fleet secret, index)[:16], its Sender ID the index (big-endian, the fewest
        bytes), the server's Sender ID empty, the prefix as ID Context (RFC 8613 §3.3)."""
        number = index.to_bytes(4, "big")
        secret = hmac.new(self._oscore_secret, b"lwm2m simulate " + number, hashlib.sha256).digest()[
            :KEY_BYTES
        ]
        sender = index.to_bytes(max(1, (index.bit_length() + 7) // 8), "big")
        return OscoreSecrets(secret, sender, b"", id_context=self.prefix.encode())

    def oscore_entries(self) -> list[SecurityInfo]:
        """The security entries of mode oscore the LwM2M server must hold (none unless the fleet's
        security is ``"oscore"``), e.g. through ``PUT /api/security/clients/{ep}``."""
        if not self.oscore:
            return []
        return [SecurityInfo(self.endpoint_name(i), oscore=self.oscore_secrets(i)) for i in range(self.count)]

    def _oscore_config(self, endpoint: str) -> OscoreConfig | None:
        if not self.oscore:
            return None
        from lwm2m.coap.oscore import OscoreConfig

        o = self.oscore_secrets(int(endpoint.rsplit("-", 1)[1]))
        return OscoreConfig(o.master_secret, o.sender_id, o.recipient_id, o.master_salt, o.id_context)

    def _gateway(self, endpoint: str, objects: Any) -> Gateway:
        """A gateway with the client of :meth:`_client` (its end devices are added to it)."""
        return Gateway.for_client(self._client(endpoint, objects))

    def _client(self, endpoint: str, objects: Any) -> Client:
        """The LwM2M client of a new device: with a server account, or a bootstrap account only."""
        bootstrap = self.client_bootstrap_uri
        key = (self._bootstrap_keys if bootstrap is not None else self._keys).get(endpoint)
        oscore = self._oscore_config(endpoint)
        config = self._client_config
        if config is None or key is not None or oscore is not None:
            config = ClientConfig(
                lifetime=self.lifetime,
                queue_mode=self.queue_mode,
                lwm2m_version=self.lwm2m_version,
                local_host=self.local_host,
                coap_config=self.coap_config,
                psk=None if key is None else PskCredentials(endpoint, key),
                oscore=oscore,
                shared_udp=self.shared_udp,
            )
            if key is None and oscore is None:
                self._client_config = config  # nothing of its own: one config for all such devices
        if bootstrap is not None:
            return Client(endpoint, None, objects, bootstrap=bootstrap, models=self.models, config=config)
        return Client(endpoint, self.client_uri, objects, models=self.models, config=config)

    def device(self, endpoint: str) -> SimulatedDevice:
        """The device named ``endpoint``; KeyError if it is not (yet) started."""
        return self._by_name[endpoint]

    def __len__(self) -> int:
        return len(self.devices)

    # --- time --------------------------------------------------------------------------------------

    def now(self) -> float:
        """The simulated Unix time."""
        if self._loop is None:
            return self._start_time if self._start_time is not None else time.time()
        return self._sim0 + (self._loop.time() - self._t0) * self.time_scale

    def hour(self, now: float | None = None) -> float:
        return hour_of_day(self.now() if now is None else now, self.utc_offset)

    # --- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the value loop and the devices (in the background, at ``rate``); returns at once."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._sim0 = self._start_time if self._start_time is not None else time.time()
        # Resolve the server's name once, not once per device (a bootstrap server's, when the
        # devices bootstrap: the server's comes in their configurations).
        if self._bootstrap is not None:
            self.client_bootstrap_uri = await _resolved(self._bootstrap)
        elif self._server is not None:
            self.client_uri = await _resolved(self._server)
        if self.shared_network is not None:
            resolved = self.client_bootstrap_uri or self.client_uri or ""
            if "[" in resolved:
                raise ConfigError(f"shared_network {self.shared_network}: {resolved} is IPv6; IPv4 only")
            self.shared_udp = await SharedUdp.create(self.shared_network)
        self._starter = self._loop.create_task(self._start_devices(), name="fleet-starter")
        self._ticker = self._loop.create_task(self._tick_loop(), name="fleet-ticker")

    async def stop(self, *, deregister: bool = True, timeout: float | None = 30.0) -> None:
        """Stop the value loop and every device, de-registering them ``STOP_CONCURRENCY`` at a time.

        After ``timeout`` seconds (or once :meth:`hurry` was called) the devices left
        stop without de-registering: an unreachable server must not hold the process.
        """
        self.stopping = True
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for task in (self._starter, self._ticker, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._starter, self._ticker, *list(self._tasks)):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._starter = self._ticker = None
        gate = asyncio.Semaphore(STOP_CONCURRENCY)

        async def stop_one(device: SimulatedDevice) -> None:
            async with gate:
                late = self._hurry or (deadline is not None and loop.time() >= deadline)
                try:
                    await device.firmware.close()
                    await device.client.stop(deregister=deregister and not late)
                except Exception:
                    log.exception("%s: stopping failed", device.endpoint)
                self.stopped += 1

        await asyncio.gather(*(stop_one(d) for d in self.devices))
        if self.shared_udp is not None:
            self.shared_udp.close()

    def hurry(self) -> None:
        """Make a running :meth:`stop` stop the remaining devices without de-registering them."""
        self._hurry = True

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_devices(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for index in range(self.count):
            delay = t0 + index / self.rate - loop.time() if self.rate is not None else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            elif index % 64 == 63:
                # Behind the rate (or none asked): let answers in while thousands start, or the
                # first devices' exchanges wait until the last has started.
                await asyncio.sleep(0)
            now = self.now()
            device = SimulatedDevice(
                self, index, self.endpoint_name(index), Tick(now, self.hour(now), 0.0, self.rng)
            )
            try:
                await device.client.start()
            except OSError as exc:
                # Out of ports or file descriptors: run the devices that did start.
                self.start_error = exc
                log.error("device %s could not start: %s; %d devices run", device.endpoint, exc, index)
                return
            self.devices.append(device)
            self._by_name[device.endpoint] = device
            self._buckets[index % len(self._buckets)].append(device)
            if device.end_devices:
                self._gateways.append(device)
            if self.freeze_gc and (index % 500 == 499 or index == self.count - 1):
                gc.freeze()
                if index == 499:
                    _young_collections_later()

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.tick
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                due = loop.time()  # fell behind: do not try to catch up in a burst
                await asyncio.sleep(0)
            clock = time.perf_counter
            t = clock()
            started = loop.time()
            for done in self._steps():
                # A slice at a time, spread over the tick: a tick of 5,000 devices would keep
                # the loop from the sockets for a good part of a second.
                now = clock()
                self.step_seconds += now - t
                await asyncio.sleep(max(0.0, started + done * self.tick - loop.time()))
                t = clock()
            self.step_seconds += clock() - t

    def step(self) -> None:
        """One tick: move the devices whose turn it is and those a server request changed."""
        for _ in self._steps():
            pass

    def _steps(self) -> Iterator[float]:
        """One tick, pausing after every ``STEP_SLICE`` devices, or every ``TICK_PARTS``-th
        part of the bucket when that is fewer; each pause yields the share of the bucket moved
        so far, which the value loop spreads over the tick (the next part moves at that share
        of it)."""
        now = self.now()
        hour = self.hour(now)
        rng = self.rng
        bucket = self._buckets[self.ticks % len(self._buckets)]
        self.ticks += 1
        dirty, self._dirty = self._dirty, set()
        pause_every = min(STEP_SLICE, max(1, -(-len(bucket) // TICK_PARTS)))
        for stepped, device in enumerate(bucket, 1):
            dirty.discard(device)
            self._step(device, now, hour, rng)
            if stepped % pause_every == 0 and stepped < len(bucket):
                yield stepped / len(bucket)
        for device in dirty:
            self._step(device, now, hour, rng)
        for device in self._gateways:
            for end_device in device.end_devices:
                self._step_end_device(device, end_device, now, hour, rng)

    def _step_end_device(
        self,
        gateway: SimulatedDevice,
        end_device: SimulatedEndDevice,
        now: float,
        hour: float,
        rng: random.Random,
    ) -> None:
        try:
            end_device.step(now, hour, rng)
        except Exception:
            self.tick_errors += 1
            if self.tick_errors <= 10:
                log.exception("%s/%s: a simulated value failed to move", gateway.endpoint, end_device.prefix)

    def _step(self, device: SimulatedDevice, now: float, hour: float, rng: random.Random) -> None:
        try:
            device.step(now, hour, rng)
        except Exception:
            self.tick_errors += 1
            if self.tick_errors <= 10:
                log.exception("%s: a simulated value failed to move", device.endpoint)

    # --- progress ------------------------------------------------------------------------------------

    @property
    def started(self) -> int:
        return len(self.devices)

    @property
    def registered(self) -> int:
        return sum(1 for d in self.devices if d.client.location is not None)

    @property
    def starting(self) -> bool:
        """Whether devices are still being started."""
        return self._starter is not None and not self._starter.done()

    def stats(self) -> FleetStats:
        registered = registrations = updates = requests = notifications = errors = bootstraps = 0
        for d in self.devices:
            c = d.client
            bootstraps += c.bootstraps
            if c.location is not None:
                registered += 1
            registrations += c.registrations
            updates += c.updates
            errors += c.errors
            requests += c.handler.served
            if c.observer is not None:
                notifications += c.observer.sent
        elapsed = self._loop.time() - self._t0 if self._loop is not None else 0.0
        return FleetStats(
            self.count,
            len(self.devices),
            registered,
            registrations,
            updates,
            requests,
            notifications,
            errors,
            self.ticks,
            elapsed,
            bootstraps,
        )

    async def wait_registered(self, timeout: float | None = None, *, poll: float = 0.05) -> None:
        """Wait until every device has started and is registered (TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while True:
                if self.start_error is not None and not self.starting:
                    raise self.start_error
                if len(self.devices) == self.count and self.registered == self.count:
                    return
                await asyncio.sleep(poll)


GC_YOUNG = 20_000  # container objects allocated (net) before a young collection, with freeze_gc


def _young_collections_later() -> None:
    """With the default first threshold (700) a young collection runs every few milliseconds
    under load, so the objects of the exchanges in flight reach the oldest generation and full
    collections come every few seconds, pausing the devices' answers for 0.1-0.2 s each."""
    young, *older = gc.get_threshold()
    if young < GC_YOUNG:
        gc.set_threshold(GC_YOUNG, *older)


def _check_network(network: str, security: str, *uris: ServerUri | None) -> None:
    try:
        ipaddress.IPv4Network(network)
    except ValueError as exc:
        raise ConfigError(f"shared_network {network!r}: expected an IPv4 network ({exc})") from None
    if security == "psk":
        raise ConfigError(f"shared_network {network!r}: plain CoAP only; security 'psk' needs a socket each")
    for uri in uris:
        if uri is not None and uri.scheme != "coap":
            raise ConfigError(f"shared_network {network!r}: plain coap:// only, not {uri.scheme}://")


def _check_keys(keys: Mapping[str, bytes]) -> None:
    for endpoint, key in keys.items():
        if not isinstance(key, bytes) or not 1 <= len(key) <= MAX_PSK_LENGTH:
            raise ConfigError(f"the key of {endpoint!r}: expected 1 to {MAX_PSK_LENGTH} bytes")


async def _resolved(uri: ServerUri) -> str:
    addr = await resolve((uri.host, uri.port))
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"{uri.scheme}://{host}:{addr[1]}"
