"""Firmware update campaigns: one package to many devices, in waves, followed through object 5.

A :class:`Campaigns` runner drives the server's Python API. A campaign (:class:`CampaignSpec`)
names a package (:class:`~lwm2m.fleet.packages.Packages`), a :class:`Target` (an endpoint glob,
an object the device has, its current firmware version at /3/0/3 or /5/0/7 equal or not equal to
a value, and a ``select`` hook for further filters), a delivery (``pull``: write the Package URI
/5/0/1; ``push``: write the package to /5/0/0, block-wise; ``auto``: what Delivery Method /5/0/9
says the device supports, pull first), :class:`Waves` (a canary alone first, then batches of at
most ``batch`` devices, ``in_flight`` of them at a time), :class:`Retries` with back-off, an
optional daily time window (UTC) and an auto-halt when failures pass a count or a percentage.

Each device is followed through the state machine of LwM2M-TS-Core 1.2 Appendix E.6 (Firmware
Update object): the runner observes State /5/0/3 and Update Result /5/0/5 (reading them when no
notification comes), waits for Downloaded (2), executes Update /5/0/2, waits for Idle (0) with
Update Result 1 (success); an Idle with results 2..9 is a failure whose meaning is recorded
(:data:`RESULTS`). Every step is recorded with its time and saved in the store's ``campaigns``
role, so that :meth:`Campaigns.start` after a server restart takes up running campaigns where
they were: a device caught mid-way is re-checked by reading /5/0/3. Queue-mode devices are
updated when they wake: the server's requests to a sleeping client wait for it (§6.5).

One runner at a time drives a campaign: the one that holds its lease in the store
(:class:`~lwm2m.storage.campaigns.CampaignStore`, ``acquire``/``renew``/``release``), renewed
every third of :attr:`CampaignsConfig.lease` while it runs; each of its writes carries the
lease's fencing token, and a write refused (:class:`~lwm2m.errors.CampaignFenced`: another runner
took the campaign over) stops it at once. On a cluster (``CampaignsConfig.shared``), every node's
runner looks at the stored campaigns as often, and takes over a running or paused one whose lease
lapsed (its runner was killed), from its stored per-device state as after a restart; what a
runner does not hold it reads from the store, so every node answers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from lwm2m.errors import (
    CampaignFenced,
    CampaignNotFound,
    CampaignStateError,
    InvalidCampaign,
    InvalidLabels,
    LwM2MError,
    QueueTimeout,
)
from lwm2m.fleet.labels import labels_match, parse_selector
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import Registration
from lwm2m.server.backlog import Backlog
from lwm2m.storage.campaigns import CampaignStore
from lwm2m.storage.firmware import FirmwarePackage
from lwm2m.storage.ids import random_id

__all__ = [
    "RESULTS",
    "Campaign",
    "CampaignEvent",
    "CampaignEvents",
    "CampaignServer",
    "CampaignSpec",
    "Campaigns",
    "CampaignsConfig",
    "DeviceProgress",
    "Retries",
    "Target",
    "Waves",
]

log = logging.getLogger(__name__)

Delivery = Literal["auto", "pull", "push"]
Status = Literal["running", "paused", "halted", "cancelled", "done"]
FINISHED = frozenset({"done", "cancelled"})  # statuses no campaign leaves (but for its deletion)

# Update Result (/5/0/5), LwM2M-TS-Core 1.2 Appendix E.6.
RESULTS: dict[int, str] = {
    0: "initial",
    1: "success",
    2: "not enough flash memory",
    3: "out of RAM",
    4: "connection lost during download",
    5: "integrity check failure",
    6: "unsupported package type",
    7: "invalid URI",
    8: "firmware update failed",
    9: "unsupported protocol",
    10: "cancelled",
}
IDLE, DOWNLOADING, DOWNLOADED, UPDATING = 0, 1, 2, 3
SUCCESS = 1
# Firmware Update Protocol Support (/5/0/8) -> the URI scheme (E.6: 0 CoAP, 1 CoAPS, 2 HTTP, 3 HTTPS).
PROTOCOL_SCHEMES = {0: "coap", 1: "coaps", 2: "http", 3: "https"}
FINAL = ("succeeded", "failed", "cancelled", "skipped")
MAX_STEPS = 64  # steps kept per device (the oldest dropped beyond)
CANCEL_TIMEOUT = 10.0  # seconds a cancelled campaign waits for a device to take Cancel /5/0/10
LET_GO_TIMEOUT = 2.0  # seconds a device's follower waits for its observations to be cancelled


class CampaignServer(Protocol):
    """What a campaign needs of :class:`lwm2m.server.role.Server`."""

    async def registrations(self) -> list[Registration]: ...

    async def read(self, endpoint: str, path: str | Path) -> Any: ...

    async def write(
        self, endpoint: str, path: str | Path, records: Any, *, timeout: float | None = ...
    ) -> Any: ...

    async def execute(self, endpoint: str, path: str | Path) -> Any: ...

    async def observe(self, endpoint: str, path: str | Path) -> Any: ...

    def secure(self, endpoint: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class CampaignsConfig:
    """How a runner shares the store's campaigns with other runners. ``node``: its name in the
    campaigns' leases (a cluster node's id); ``lease``: seconds a lease lasts unless renewed (it
    is renewed, and the stored campaigns looked at, every third of that); ``shared``: other
    nodes' runners use the same store (a cluster): campaigns this runner does not hold are read
    from the store, and those whose lease lapsed are taken over."""

    node: str = "local"
    lease: float = 15.0
    shared: bool = False

    def __post_init__(self) -> None:
        if not self.node or " " in self.node:
            raise InvalidCampaign(f"runner node {self.node!r}: a name without spaces")
        if not (math.isfinite(self.lease) and self.lease > 0):
            raise InvalidCampaign(f"lease {self.lease!r}: a positive number of seconds")

    @property
    def period(self) -> float:
        """Seconds between renewals of the leases (and looks at the stored campaigns)."""
        return self.lease / 3


class CampaignPackages(Protocol):
    """What a campaign needs of :class:`lwm2m.fleet.packages.Packages`."""

    async def get(self, package_id: str) -> FirmwarePackage: ...

    async def read(
        self, package: FirmwarePackage, start: int = 0, end: int | None = None
    ) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Which registered devices a campaign updates. ``version_path`` is /3/0/3 (Firmware Version)
    or /5/0/7 (PkgVersion); ``version_equal``/``version_not_equal`` compare it when set;
    ``labels``, (key, value) pairs or a mapping, the device labels it must all have."""

    endpoints: str = "*"
    object_id: int | None = 5
    version_path: str = "/3/0/3"
    version_equal: str | None = None
    version_not_equal: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # every one of them, key and value (fleet.labels)

    def __post_init__(self) -> None:
        pairs = self.labels.items() if isinstance(self.labels, Mapping) else self.labels
        try:
            selector = parse_selector(f"{key}={value}" for key, value in pairs)
        except InvalidLabels as exc:
            raise InvalidCampaign(f"target labels: {exc}") from None
        object.__setattr__(self, "labels", tuple(sorted(selector.items())))  # as a stored dict reads back
        if self.version_path not in ("/3/0/3", "/5/0/7"):
            raise InvalidCampaign(f"target version path {self.version_path!r}: /3/0/3 or /5/0/7")
        if not self.endpoints:
            raise InvalidCampaign("target endpoints: a glob such as 'lamp-*'")


@dataclass(frozen=True, slots=True)
class Waves:
    """The canary (``canary`` devices, or ``canary_percent`` of the targets, at least one) runs
    first and alone; then batches of ``batch`` devices, ``in_flight`` at most at a time."""

    canary: int = 1
    canary_percent: float | None = None
    batch: int = 100
    in_flight: int = 10

    def __post_init__(self) -> None:
        if self.canary < 0 or self.batch < 1 or self.in_flight < 1:
            raise InvalidCampaign("waves: canary >= 0, batch >= 1, in_flight >= 1")
        if self.canary_percent is not None and not 0 < self.canary_percent <= 100:
            raise InvalidCampaign("waves: canary_percent in (0, 100]")

    def plan(self, endpoints: Sequence[str]) -> list[list[str]]:
        if self.canary_percent is not None:
            size = max(1, math.ceil(len(endpoints) * self.canary_percent / 100))
        else:
            size = self.canary
        size = min(size, len(endpoints))
        waves = [list(endpoints[:size])] if size else []
        rest = endpoints[size:]
        waves += [list(rest[i : i + self.batch]) for i in range(0, len(rest), self.batch)]
        return waves


@dataclass(frozen=True, slots=True)
class Retries:
    """``attempts`` more tries after a failed one, waiting ``backoff`` seconds times ``factor``
    to the power of the tries made so far."""

    attempts: int = 2
    backoff: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.backoff < 0 or self.factor < 1:
            raise InvalidCampaign("retries: attempts >= 0, backoff >= 0, factor >= 1")

    def delay(self, tried: int) -> float:
        """Seconds before the next try (at most a day)."""
        return float(min(self.backoff * self.factor ** min(tried - 1, 64), 86400.0))


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What a campaign does (see the module's docstring). ``window``: seconds of the UTC day
    ``(start, end)`` devices are started in (end < start wraps past midnight); ``halt_after``:
    failures tolerated, ``halt_percent``: of the targets; ``step_timeout``: seconds a device
    may stay in a step (download, update) before the try counts as failed."""

    package_id: str
    target: Target = field(default_factory=Target)
    delivery: Delivery = "auto"
    waves: Waves = field(default_factory=Waves)
    retries: Retries = field(default_factory=Retries)
    window: tuple[float, float] | None = None
    halt_after: int | None = None
    halt_percent: float | None = None
    step_timeout: float = 600.0
    poll_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.delivery not in ("auto", "pull", "push"):
            raise InvalidCampaign(f"delivery {self.delivery!r}: auto, pull or push")
        if self.window is not None and not all(0 <= s <= 86400 for s in self.window):
            raise InvalidCampaign("window: (start, end) seconds of the UTC day")
        if self.halt_after is not None and self.halt_after < 0:
            raise InvalidCampaign("halt_after: failures tolerated, >= 0")
        if self.halt_percent is not None and not 0 <= self.halt_percent <= 100:
            raise InvalidCampaign("halt_percent in [0, 100]")
        if self.step_timeout <= 0 or self.poll_interval <= 0:
            raise InvalidCampaign("step_timeout and poll_interval are positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignSpec:
        try:
            window = data.get("window")
            return cls(
                package_id=str(data["package_id"]),
                target=Target(**data.get("target", {})),
                delivery=data.get("delivery", "auto"),
                waves=Waves(**data.get("waves", {})),
                retries=Retries(**data.get("retries", {})),
                window=None if window is None else (float(window[0]), float(window[1])),
                halt_after=data.get("halt_after"),
                halt_percent=data.get("halt_percent"),
                step_timeout=float(data.get("step_timeout", 600.0)),
                poll_interval=float(data.get("poll_interval", 10.0)),
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            if isinstance(exc, InvalidCampaign):
                raise
            raise InvalidCampaign(f"campaign: {exc}") from None


@dataclass(slots=True)
class DeviceProgress:
    """One device of a campaign. ``state``: pending, downloading, downloaded, updating, waiting
    (for a retry), succeeded, failed, cancelled, skipped (its version is not the target's);
    ``result``: the last Update Result seen; ``steps``: ``(time, what)`` pairs."""

    endpoint: str
    wave: int
    state: str = "pending"
    attempts: int = 0
    result: int | None = None
    delivery: str | None = None
    steps: list[tuple[float, str]] = field(default_factory=list)

    def step(self, what: str) -> None:
        self.steps.append((time.time(), what))
        del self.steps[:-MAX_STEPS]

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def view(self) -> dict[str, Any]:
        """The API's form: ``resultText`` is the Update Result's meaning."""
        return {
            "endpoint": self.endpoint,
            "wave": self.wave,
            "state": self.state,
            "attempts": self.attempts,
            "result": self.result,
            "resultText": None if self.result is None else RESULTS.get(self.result, "unknown"),
            "delivery": self.delivery,
            "steps": [list(step) for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceProgress:
        return cls(
            endpoint=data["endpoint"],
            wave=int(data["wave"]),
            state=data["state"],
            attempts=int(data["attempts"]),
            result=data["result"],
            delivery=data["delivery"],
            steps=[(float(t), str(s)) for t, s in data["steps"]],
        )


@dataclass(slots=True)
class Campaign:
    """A campaign's state: its spec, status, waves (endpoints) and devices."""

    id: str
    spec: CampaignSpec
    status: Status
    created_at: float
    waves: list[list[str]]
    devices: dict[str, DeviceProgress]
    wave: int = 0  # the wave running (or to run)
    reason: str = ""  # why it halted or ended
    finished_at: float | None = None

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for device in self.devices.values():
            counts[device.state] = counts.get(device.state, 0) + 1
        return counts

    def failures(self) -> int:
        return sum(1 for d in self.devices.values() if d.state == "failed")

    def wave_progress(self) -> list[dict[str, int]]:
        progress = []
        for endpoints in self.waves:
            states = [self.devices[ep].state for ep in endpoints]
            progress.append(
                {
                    "devices": len(states),
                    "succeeded": states.count("succeeded"),
                    "failed": states.count("failed"),
                    "cancelled": states.count("cancelled"),
                    "skipped": states.count("skipped"),
                    "pending": states.count("pending"),
                }
            )
        return progress

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "createdAt": self.created_at,
            "finishedAt": self.finished_at,
            "packageId": self.spec.package_id,
            "wave": self.wave,
            "devices": len(self.devices),
            "counts": self.counts(),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "spec": _camel(self.spec.to_dict()),
            "waves": self.wave_progress(),
            "deviceDetail": [d.view() for d in self.devices.values()],
        }

    def header(self) -> bytes:
        """The campaign without its devices, as stored."""
        return msgspec.json.encode(
            {
                "id": self.id,
                "spec": self.spec.to_dict(),
                "status": self.status,
                "created_at": self.created_at,
                "waves": self.waves,
                "wave": self.wave,
                "reason": self.reason,
                "finished_at": self.finished_at,
            }
        )

    @classmethod
    def decode(cls, header: bytes, devices: dict[str, bytes]) -> Campaign:
        data = msgspec.json.decode(header)
        progress = {ep: DeviceProgress.from_dict(msgspec.json.decode(raw)) for ep, raw in devices.items()}
        return cls(
            id=data["id"],
            spec=CampaignSpec.from_dict(data["spec"]),
            status=data["status"],
            created_at=data["created_at"],
            waves=data["waves"],
            devices=progress,
            wave=data["wave"],
            reason=data["reason"],
            finished_at=data["finished_at"],
        )


@dataclass(frozen=True, slots=True)
class CampaignEvent:
    """A change of a campaign: ``kind`` CAMPAIGN_STARTED, CAMPAIGN_DEVICE (``endpoint``'s state
    changed to ``state``), CAMPAIGN_PAUSED, CAMPAIGN_RESUMED, CAMPAIGN_HALTED, CAMPAIGN_CANCELLED or
    CAMPAIGN_DONE; ``status`` and ``counts`` are the campaign's at that time."""

    kind: str
    campaign_id: str
    status: str
    counts: dict[str, int]
    endpoint: str | None = None
    state: str | None = None
    result: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "status": self.status,
            "counts": self.counts,
            "endpoint": self.endpoint,
            "state": self.state,
            "result": self.result,
        }


class CampaignEvents:
    """An async iterator over campaign events; at most ``backlog`` unread (the oldest dropped
    beyond); ``close()`` unsubscribes."""

    def __init__(self, subscribers: set[Backlog[CampaignEvent]], backlog: int = 10_000) -> None:
        self._backlog: Backlog[CampaignEvent] = Backlog(backlog)
        self._subscribers = subscribers
        subscribers.add(self._backlog)

    def __aiter__(self) -> CampaignEvents:
        return self

    async def __anext__(self) -> CampaignEvent:
        backlog = self._backlog
        if not backlog:
            await backlog.wait()
        return backlog.pop()

    @property
    def pending(self) -> int:
        return len(self._backlog)

    def close(self) -> None:
        self._subscribers.discard(self._backlog)


def _camel(value: Any) -> Any:
    """``value`` with the keys of its dicts in camelCase (the API's form)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            head, *rest = str(k).split("_")
            out[head + "".join(part.title() for part in rest)] = _camel(v)
        return out
    if isinstance(value, list | tuple):
        return [_camel(v) for v in value]
    return value


def _status_of(header: bytes) -> str:
    """The status of a stored campaign record (without decoding its spec)."""
    try:
        return str(msgspec.json.decode(header).get("status", ""))
    except (msgspec.DecodeError, AttributeError):
        return ""


def pull_uri(uris: dict[str, str], supported: Any, *, secure: bool) -> str:
    """The URI a device pulls from, of ``uris`` (``Packages.uris``: by kind, the ``http`` one
    with the scheme of the app's base). ``supported``: the value(s) of Firmware Update Protocol
    Support /5/0/8 (E.6: 0 CoAP, 1 CoAPS, 2 HTTP, 3 HTTPS; None: not readable).

    A device that registered over DTLS pulls over coaps://, or https:// when it names no CoAPS,
    never in the clear; any other device over coap://, else the first of coaps, http, https it
    names (http(s) only when the app knows its HTTP base)."""
    values = supported if isinstance(supported, list) else [] if supported is None else [supported]
    named = [scheme for v in values if (scheme := PROTOCOL_SCHEMES.get(v)) is not None]
    offered = {uri.split(":", 1)[0]: uri for uri in uris.values()}
    order = ["coaps", "https"] if secure else ["coap", "coaps", "http", "https"]
    # /5/0/8 not readable: the CoAP of the transport it registered on.
    order = [scheme for scheme in order if scheme in named] if named else order[:1]
    uri = next((offered[scheme] for scheme in order if scheme in offered), None)
    if uri is None:
        over = "DTLS" if secure else "plain CoAP"
        raise CampaignStateError(
            f"no URI for a device on {over} that pulls over {named or 'CoAP'}: "
            f"the server offers {sorted(offered)}"
        )
    return uri


def in_window(window: tuple[float, float] | None, now: float) -> float:
    """Seconds until ``now`` is inside the daily UTC ``window`` (0 inside it)."""
    if window is None:
        return 0.0
    start, end = window
    day = now % 86400
    inside = start <= day < end if start <= end else (day >= start or day < end)
    if inside:
        return 0.0
    return (start - day) % 86400


class Campaigns:
    """The campaigns of one server (see the module's docstring).

    ``uris(package)`` gives the package's device URIs by scheme (``Packages.uris`` with the
    server's base URIs); ``select(registration)`` is a further target filter (None: every device
    the :class:`Target` matches); ``labels(endpoint)`` gives a device's labels (the store's
    ``labels`` role) for targets that name some; ``on_event(kind, campaign, endpoint)`` is told
    of every change (kinds ``CAMPAIGN_STARTED``, ``CAMPAIGN_DEVICE``, ``CAMPAIGN_HALTED``,
    ``CAMPAIGN_PAUSED``, ``CAMPAIGN_RESUMED``, ``CAMPAIGN_CANCELLED``, ``CAMPAIGN_DONE``);
    ``config`` says how it shares the store with other runners (:class:`CampaignsConfig`)."""

    def __init__(
        self,
        server: CampaignServer,
        packages: CampaignPackages,
        store: CampaignStore,
        uris: Callable[[FirmwarePackage], dict[str, str]],
        *,
        select: Callable[[Registration], bool] | None = None,
        labels: Callable[[str], Awaitable[Mapping[str, str]]] | None = None,
        on_event: Callable[[str, Campaign, str | None], None] | None = None,
        clock: Callable[[], float] = time.time,
        config: CampaignsConfig | None = None,
    ) -> None:
        self.server = server
        self.packages = packages
        self.store = store
        self.uris = uris
        self.select = select
        self.labels = labels
        self.on_event = on_event
        self.clock = clock
        self.config = config or CampaignsConfig()
        self._campaigns: dict[str, Campaign] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._fences: dict[str, int] = {}  # the leases this runner holds: campaign id -> token
        # Stored campaigns seen done or cancelled: final, so not read again at each look for
        # campaigns to take up (the store keeps every campaign until it is deleted).
        self._finished: set[str] = set()
        # Campaigns this runner finished since it started, by status: a Prometheus counter per
        # node (lwm2m.fleet.campaigns_metrics), which a cluster's nodes add up.
        self.finished_here: dict[str, int] = dict.fromkeys(sorted(FINISHED), 0)
        self._keeper: asyncio.Task[None] | None = None
        self._resumed: dict[str, asyncio.Event] = {}
        self._subscribers: set[Backlog[CampaignEvent]] = set()

    # --- life -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the stored campaigns and take up those running (or paused) that no other runner
        holds; then keep the leases and, every ``config.period`` seconds, take up those whose
        lease lapsed."""
        if not self.config.shared:
            for campaign_id in await self.store.ids():
                header = await self.store.load(campaign_id)
                if header is not None:
                    campaign = Campaign.decode(header, await self.store.devices(campaign_id))
                    self._campaigns[campaign.id] = campaign
        await self._take_up()
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep(), name="campaign leases")

    async def stop(self) -> None:
        """Stop driving campaigns and give their leases up (their state stays stored, to be taken
        up by ``start`` or by another node's runner)."""
        keeper, self._keeper = self._keeper, None
        tasks = list(self._tasks.values()) + ([keeper] if keeper is not None else [])
        for task in tasks:
            task.cancel()
        # Their ends are waited for; a cancellation of this stop itself goes on to the caller.
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for campaign_id in list(self._fences):
            with contextlib.suppress(LwM2MError):
                await self._release(campaign_id)

    # --- leases -------------------------------------------------------------------------------------

    async def _keep(self) -> None:
        """Renew the leases held, take up the campaigns whose lease lapsed; every period."""
        while True:
            await asyncio.sleep(self.config.period)
            try:
                await self._renew()
                await self._take_up()
            except Exception as exc:  # the store away for a moment: the next period tries again
                log.warning(
                    "campaigns: keeping the leases failed: %s", exc, exc_info=not isinstance(exc, LwM2MError)
                )

    async def _renew(self) -> None:
        for campaign_id, token in list(self._fences.items()):
            renewed = await self.store.renew(campaign_id, self.config.node, token, self.config.lease)
            if not renewed and self._fences.get(campaign_id) == token:
                self._lost(campaign_id, "its lease lapsed")

    def _lost(self, campaign_id: str, why: str) -> None:
        """Stop driving a campaign whose lease this runner lost (another runner may hold it)."""
        if self._fences.pop(campaign_id, None) is not None:
            log.warning("campaign %s: no longer run here (%s)", campaign_id, why)
        task = self._tasks.pop(campaign_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self.config.shared:
            self._campaigns.pop(campaign_id, None)

    async def _release(self, campaign_id: str) -> None:
        token = self._fences.pop(campaign_id, None)
        if self.config.shared:
            self._campaigns.pop(campaign_id, None)
        if token is not None:
            await self.store.release(campaign_id, self.config.node, token)

    async def _take_up(self) -> None:
        """Take the lease of every stored running or paused campaign nobody holds, and run it."""
        ids = await self.store.ids()
        self._finished.intersection_update(ids)  # the deleted ones forgotten: bounded by the store
        for campaign_id in ids:
            if campaign_id in self._fences or campaign_id in self._finished:
                continue
            header = await self.store.load(campaign_id)
            status = _status_of(header) if header is not None else ""
            if status in FINISHED:
                self._finished.add(campaign_id)
            if status not in ("running", "paused"):
                continue
            token = await self.store.acquire(campaign_id, self.config.node, self.config.lease)
            if token is None:
                continue  # another runner drives it
            self._fences[campaign_id] = token
            try:
                campaign = await self._held_copy(campaign_id)
            except CampaignNotFound:
                await self._release(campaign_id)  # deleted meanwhile
                continue
            if campaign.status in ("running", "paused") and campaign_id not in self._tasks:
                self._launch(campaign)

    async def _held_copy(self, campaign_id: str) -> Campaign:
        """The campaign whose lease this runner just took: its own copy (one runner of one node),
        or the store's (the previous runner's last word)."""
        campaign = None if self.config.shared else self._campaigns.get(campaign_id)
        if campaign is None:
            header = await self.store.load(campaign_id)
            if header is None:
                raise CampaignNotFound(f"no campaign {campaign_id[:80]!r}")
            campaign = Campaign.decode(header, await self.store.devices(campaign_id))
            self._campaigns[campaign_id] = campaign
        return campaign

    async def _runnable(self, campaign_id: str) -> Campaign:
        """The campaign, its lease held by this runner, for an action (pause, resume, cancel): the
        runner's own, or taken over from the store (one nobody runs; one whose runner was killed,
        once its lease lapsed: up to ``config.lease`` seconds). A finished one comes as stored,
        not held: it is not run again."""
        if campaign_id in self._fences:
            return self._campaigns[campaign_id]
        campaign = await self.find(campaign_id)
        if campaign.status in ("done", "cancelled"):
            return campaign
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.lease + self.config.period
        while (token := await self.store.acquire(campaign_id, self.config.node, self.config.lease)) is None:
            if campaign_id in self._fences:  # this runner's own look at the store took it meanwhile
                return self._campaigns[campaign_id]
            if loop.time() >= deadline:
                holder = await self.store.holder(campaign_id)
                raise CampaignStateError(f"campaign {campaign_id} is run by {holder}, which does not let go")
            await asyncio.sleep(min(0.25, self.config.period))
        self._fences[campaign_id] = token
        try:
            campaign = await self._held_copy(campaign_id)
        except CampaignNotFound:
            await self._release(campaign_id)
            raise
        if campaign.status in ("running", "paused") and campaign_id not in self._tasks:
            self._launch(campaign)
        return campaign

    async def _refuse(self, campaign: Campaign, why: str) -> None:
        """CampaignStateError for an action the status does not allow; a lease taken for it
        and not needed (nothing runs the campaign here) is given up first."""
        if campaign.id in self._fences and campaign.id not in self._tasks:
            await self._release(campaign.id)
        raise CampaignStateError(why)

    async def runner(self, campaign_id: str) -> str | None:
        """The node whose runner holds the campaign's lease now (None: none runs it)."""
        if campaign_id in self._fences:
            return self.config.node
        return await self.store.holder(campaign_id)

    async def __aenter__(self) -> Campaigns:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the API's operations --------------------------------------------------------------------------

    async def create(self, spec: CampaignSpec) -> Campaign:
        await self.packages.get(spec.package_id)  # PackageNotFound
        endpoints = await self.targets(spec.target)
        waves = spec.waves.plan(endpoints)
        devices = {ep: DeviceProgress(ep, index) for index, wave in enumerate(waves) for ep in wave}
        campaign = Campaign(
            id=random_id(9),  # taken as an argument by `lwm2m campaign`: no leading '-'
            spec=spec,
            status="running",
            created_at=self.clock(),
            waves=waves,
            devices=devices,
        )
        # Its lease before its record: no other runner takes a campaign up between the two.
        token = await self.store.acquire(campaign.id, self.config.node, self.config.lease)
        if token is None:
            raise CampaignStateError(f"campaign {campaign.id}: its new lease is held already")
        self._fences[campaign.id] = token
        self._campaigns[campaign.id] = campaign
        await self._save(campaign)
        for device in devices.values():
            await self._save_device(campaign, device)
        self._event("CAMPAIGN_STARTED", campaign)
        self._launch(campaign)
        return campaign

    def all(self) -> list[Campaign]:
        """The campaigns this runner has (on a cluster: those it runs)."""
        return list(self._campaigns.values())

    async def listing(self) -> list[Campaign]:
        """Every campaign, oldest first: on a cluster, those another runner holds as stored."""
        if not self.config.shared:
            return self.all()
        out = []
        for campaign_id in await self.store.ids():
            with contextlib.suppress(CampaignNotFound):
                out.append(await self.find(campaign_id))
        return out

    def get(self, campaign_id: str) -> Campaign:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise CampaignNotFound(f"no campaign {campaign_id[:80]!r}")
        return campaign

    async def find(self, campaign_id: str) -> Campaign:
        """The campaign, as this runner has it, or else as stored (one that another server
        sharing the store runs, or ran): read anew at every call, not kept."""
        campaign = self._campaigns.get(campaign_id)
        if campaign is not None and (campaign_id in self._fences or not self.config.shared):
            return campaign
        header = await self.store.load(campaign_id)
        if header is None:
            raise CampaignNotFound(f"no campaign {campaign_id[:80]!r}")
        return Campaign.decode(header, await self.store.devices(campaign_id))

    async def pause(self, campaign_id: str) -> Campaign:
        """No device is started while paused; those in flight go on."""
        campaign = await self._runnable(campaign_id)
        if campaign.status != "running":
            await self._refuse(campaign, f"campaign {campaign_id} is {campaign.status}, not running")
        campaign.status = "paused"
        self._gate(campaign).clear()
        await self._save(campaign)
        self._event("CAMPAIGN_PAUSED", campaign)
        return campaign

    async def resume(self, campaign_id: str) -> Campaign:
        """A paused or halted campaign goes on."""
        campaign = await self._runnable(campaign_id)
        if campaign.status not in ("paused", "halted"):
            await self._refuse(
                campaign, f"campaign {campaign_id} is {campaign.status}: only a paused or halted one resumes"
            )
        halted = campaign.status == "halted"
        campaign.status = "running"
        campaign.reason = "resumed after a halt" if halted else ""
        self._gate(campaign).set()
        await self._save(campaign)
        if campaign.id not in self._tasks:
            self._launch(campaign)
        self._event("CAMPAIGN_RESUMED", campaign)
        return campaign

    async def cancel(self, campaign_id: str) -> Campaign:
        """Stop now: the devices downloading the package, or holding it downloaded, are told to
        drop it (Cancel /5/0/10, E.6); one updating already is left to finish; those not done
        are cancelled."""
        campaign = await self._runnable(campaign_id)
        if campaign.status in ("cancelled", "done"):
            raise CampaignStateError(f"campaign {campaign_id} is {campaign.status} already")
        task = self._tasks.pop(campaign.id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        in_flight = [d for d in campaign.devices.values() if d.state in ("downloading", "downloaded")]
        await asyncio.gather(*(self._cancel_device(device) for device in in_flight))
        campaign.status = "cancelled"
        campaign.finished_at = self.clock()
        self.finished_here["cancelled"] += 1
        for device in campaign.devices.values():
            if not device.final:
                device.state = "cancelled"
                device.step("cancelled")
                await self._save_device(campaign, device)
        await self._save(campaign)
        await self._release(campaign.id)
        self._event("CAMPAIGN_CANCELLED", campaign)
        return campaign

    async def _cancel_device(self, device: DeviceProgress) -> None:
        """Cancel /5/0/10 to a device in Downloading or Downloaded (it ends Idle, Update Result
        10); a device that does not answer in time is only recorded."""
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                response = await self.server.execute(device.endpoint, "/5/0/10")
        except (LwM2MError, TimeoutError, ConnectionError, OSError) as exc:
            device.step(f"cancel /5/0/10 not delivered: {exc or type(exc).__name__}")
            return
        device.step(f"cancel /5/0/10: the device answered {response.code}")

    async def delete(self, campaign_id: str) -> Campaign:
        """Forget a finished (done or cancelled) campaign and its devices' progress."""
        campaign = await self.find(campaign_id)
        if campaign.status not in ("done", "cancelled"):
            raise CampaignStateError(
                f"campaign {campaign_id} is {campaign.status}: only a done or cancelled one is deleted"
            )
        self._campaigns.pop(campaign.id, None)
        self._resumed.pop(campaign.id, None)
        await self.store.remove(campaign.id)
        return campaign

    async def wait(
        self, campaign_id: str, statuses: Sequence[str] = ("done", "halted", "cancelled"), poll: float = 0.05
    ) -> Campaign:
        """Until the campaign's status is one of ``statuses``."""
        campaign = self.get(campaign_id)
        while campaign.status not in statuses:
            await asyncio.sleep(poll)
        return campaign

    # --- targets ----------------------------------------------------------------------------------

    async def targets(self, target: Target) -> list[str]:
        """The endpoints ``target`` matches, in name order. The current version is compared when
        the device's turn comes (a sleeping device answers when it wakes): one that does not
        match is ``skipped``."""
        chosen: list[str] = []
        for registration in sorted(await self.server.registrations(), key=lambda r: r.endpoint):
            if not fnmatch.fnmatchcase(registration.endpoint, target.endpoints):
                continue
            if target.object_id is not None and not any(
                link.object_id == target.object_id for link in registration.objects
            ):
                continue
            if self.select is not None and not self.select(registration):
                continue
            if target.labels and (
                self.labels is None
                or not labels_match(await self.labels(registration.endpoint), dict(target.labels))
            ):
                continue
            chosen.append(registration.endpoint)
        return chosen

    # --- running ----------------------------------------------------------------------------------

    def _gate(self, campaign: Campaign) -> asyncio.Event:
        gate = self._resumed.get(campaign.id)
        if gate is None:
            gate = self._resumed[campaign.id] = asyncio.Event()
            if campaign.status == "running":
                gate.set()
        return gate

    def _launch(self, campaign: Campaign) -> None:
        self._gate(campaign)
        task = asyncio.get_running_loop().create_task(self._run(campaign), name=f"campaign {campaign.id}")
        self._tasks[campaign.id] = task
        task.add_done_callback(
            lambda t: self._tasks.pop(campaign.id, None) if self._tasks.get(campaign.id) is t else None
        )

    async def _run(self, campaign: Campaign) -> None:
        try:
            await self._waves(campaign)
            await self._release(campaign.id)
        except CampaignFenced as exc:  # another runner took it over: it writes from now on
            self._lost(campaign.id, str(exc))
        except Exception as exc:  # the package deleted meanwhile, a store that fails, a defect
            log.warning("campaign %s halted: %s", campaign.id, exc, exc_info=not isinstance(exc, LwM2MError))
            campaign.status = "halted"
            campaign.reason = str(exc)
            self._gate(campaign).clear()
            self._event("CAMPAIGN_HALTED", campaign)
            with contextlib.suppress(LwM2MError):
                await self._save(campaign)
                await self._release(campaign.id)  # resume() takes it again

    async def _waves(self, campaign: Campaign) -> None:
        spec = campaign.spec
        package = await self.packages.get(spec.package_id)
        gate = self._gate(campaign)
        while campaign.wave < len(campaign.waves):
            endpoints = [ep for ep in campaign.waves[campaign.wave] if not campaign.devices[ep].final]
            limit = asyncio.Semaphore(spec.waves.in_flight)

            async def one(device: DeviceProgress, limit: asyncio.Semaphore) -> None:
                async with limit:
                    while True:
                        await gate.wait()
                        delay = in_window(spec.window, self.clock())
                        if delay == 0:
                            break
                        await asyncio.sleep(min(delay, 60.0))
                    if campaign.status != "running":
                        return
                    await self._device(campaign, package, device)

            driving = [asyncio.ensure_future(one(campaign.devices[ep], limit)) for ep in endpoints]
            try:
                await asyncio.gather(*driving)
            except BaseException:
                # One failed (a write refused: another runner took the campaign over; the store
                # away): the others stop too, not left to drive their devices alone.
                for work in driving:
                    work.cancel()
                raise
            if campaign.status == "halted":
                await gate.wait()  # resume() goes on with the wave's devices left
                continue
            if any(not campaign.devices[ep].final for ep in campaign.waves[campaign.wave]):
                continue  # paused meanwhile: the gate holds the rest
            campaign.wave += 1
            await self._save(campaign)
        campaign.status = "done"
        campaign.finished_at = self.clock()
        self.finished_here["done"] += 1
        await self._save(campaign)
        self._event("CAMPAIGN_DONE", campaign)

    def _halt_due(self, campaign: Campaign) -> bool:
        spec, failures = campaign.spec, campaign.failures()
        if spec.halt_after is not None and failures > spec.halt_after:
            return True
        return spec.halt_percent is not None and failures * 100 > spec.halt_percent * len(campaign.devices)

    async def _wanted(self, target: Target, device: DeviceProgress) -> bool:
        """Whether the device's current version is one the target names."""
        if target.version_equal is None and target.version_not_equal is None:
            return True
        while True:
            try:
                version = await self._read_value(device.endpoint, target.version_path, wake=True)
                break
            except QueueTimeout:
                device.step("asleep: waiting for it to wake")
        device.step(f"version {version}")
        if target.version_equal is not None and version != target.version_equal:
            return False
        return target.version_not_equal is None or version != target.version_not_equal

    async def _device(self, campaign: Campaign, package: FirmwarePackage, device: DeviceProgress) -> None:
        spec = campaign.spec
        if device.state == "pending" and not await self._wanted(spec.target, device):
            device.state = "skipped"
            device.step("skipped: its version is not one the target names")
            await self._save_device(campaign, device)
            self._event("CAMPAIGN_DEVICE", campaign, device.endpoint)
            return
        asleep = False
        while not device.final:
            if device.state == "waiting" and not asleep:
                await asyncio.sleep(spec.retries.delay(device.attempts))
            if device.state in ("pending", "waiting") and not asleep:
                device.attempts += 1
            asleep = False
            try:
                result = await self._attempt(campaign, package, device)
            except QueueTimeout:
                # A queue-mode device that slept through the server's queue timeout (§6.5): not a
                # failure; its requests wait again for it to wake.
                device.step("asleep: waiting for it to wake")
                asleep = True
                continue
            except (LwM2MError, TimeoutError, ConnectionError, OSError) as exc:
                device.step(f"error: {exc or type(exc).__name__}")
                result = None
            device.result = result if result is not None else device.result
            if result == SUCCESS:
                device.state = "succeeded"
                device.step("succeeded")
            elif device.attempts > spec.retries.attempts:
                device.state = "failed"
                device.step(
                    f"failed: {RESULTS.get(result, 'no answer') if result is not None else 'no answer'}"
                )
            else:
                device.state = "waiting"
                device.step(f"retry in {spec.retries.delay(device.attempts):g} s")
            await self._save_device(campaign, device)
            self._event("CAMPAIGN_DEVICE", campaign, device.endpoint)
            if device.state == "failed" and campaign.status == "running" and self._halt_due(campaign):
                campaign.status = "halted"
                campaign.reason = f"{campaign.failures()} devices failed"
                self._gate(campaign).clear()
                await self._save(campaign)
                self._event("CAMPAIGN_HALTED", campaign)

    async def _attempt(
        self, campaign: Campaign, package: FirmwarePackage, device: DeviceProgress
    ) -> int | None:
        """One try; the Update Result it ends with (None: no answer in time)."""
        ep, spec = device.endpoint, campaign.spec
        follow = _Follower(self.server, ep, spec.poll_interval)
        await follow.start()
        try:
            state = follow.state
            device.step(f"state {state}")
            midway = device.state in ("downloading", "downloaded", "updating")
            if midway and state == IDLE and follow.result == SUCCESS and device.state != "downloading":
                device.step("updated while not followed")
                return SUCCESS
            if midway and state in (DOWNLOADING, DOWNLOADED, UPDATING):
                device.step("taken up where it was")  # after a restart: follow it from there
            else:
                if state != IDLE:  # an earlier download of something else: reset (E.6, write of /5/0/1 "")
                    await self._checked(self.server.write(ep, "/5/0/1", [Record(Path.parse("/5/0/1"), "")]))
                    await follow.until(lambda s, r: s == IDLE, spec.step_timeout)
                await self._deliver(campaign, package, device)
                await follow.refresh()  # the State and Update Result the write started with
                device.state = "downloading"
                await self._save_device(campaign, device)
            state, result = await follow.until(
                lambda s, r: s in (DOWNLOADED, UPDATING) or (s == IDLE and r > SUCCESS), spec.step_timeout
            )
            if state == IDLE:
                device.step(f"download failed: {result} {RESULTS.get(result, '')}")
                return result
            if state == DOWNLOADED:
                device.state = "downloaded"
                device.step("downloaded")
                await self._save_device(campaign, device)
                await self._checked(self.server.execute(ep, "/5/0/2"))
                await follow.refresh()
            device.state = "updating"
            device.step("updating")
            await self._save_device(campaign, device)
            state, result = await follow.until(
                lambda s, r: (s == IDLE and r >= SUCCESS) or (s == DOWNLOADED and r > SUCCESS),
                spec.step_timeout,
            )
            device.step(f"update result {result} {RESULTS.get(result, '')}")
            return result
        except QueueTimeout:
            raise  # asleep: the next try takes the device up where it is
        except TimeoutError:
            device.step("timed out")
            return None
        finally:
            await follow.close()

    async def _deliver(self, campaign: Campaign, package: FirmwarePackage, device: DeviceProgress) -> None:
        ep = device.endpoint
        delivery: str = campaign.spec.delivery
        uri: str | None = None
        if delivery == "auto":
            method = await self._read_value(ep, "/5/0/9")
            delivery = "push" if method == 1 else "pull"
            if delivery == "pull" and method == 2:
                # Both (E.6): pull, unless no URI fits the device (a DTLS device is never given
                # one in the clear), when the package goes by push over its session instead.
                supported = await self._read_value(ep, "/5/0/8")
                try:
                    uri = pull_uri(self.uris(package), supported, secure=self.server.secure(ep))
                except CampaignStateError as exc:
                    device.step(f"push: {exc}")
                    delivery = "push"
        device.delivery = delivery
        if delivery == "push":
            data = await self.packages.read(package)
            if data is None:
                raise CampaignStateError(f"package {package.id} is gone")
            device.step(f"push {len(data)} bytes")
            await self._checked(self.server.write(ep, "/5/0/0", [Record(Path.parse("/5/0/0"), data)]))
            return
        if uri is None:
            supported = await self._read_value(ep, "/5/0/8")
            uri = pull_uri(self.uris(package), supported, secure=self.server.secure(ep))
        device.step(f"pull {uri}")
        await self._checked(self.server.write(ep, "/5/0/1", [Record(Path.parse("/5/0/1"), uri)]))

    @staticmethod
    async def _checked(request: Awaitable[Any]) -> Any:
        response = await request
        if response.code >> 5 != 2:
            raise CampaignStateError(f"the device answered {response.code}")
        return response

    async def _read_value(self, endpoint: str, path: str, *, wake: bool = False) -> Any:
        """The value (or values) at ``path``; None when it cannot be read. ``wake``: let a
        QueueTimeout through (the device slept through the server's queue timeout)."""
        try:
            response = await self.server.read(endpoint, path)
        except QueueTimeout:
            if wake:
                raise
            return None
        except (LwM2MError, TimeoutError, ConnectionError):
            return None
        if response.code >> 5 != 2:
            return None
        values = [r.value for r in response.records]
        return values[0] if len(values) == 1 else values

    def _fence(self, campaign: Campaign) -> int:
        token = self._fences.get(campaign.id)
        if token is None:
            raise CampaignFenced(f"campaign {campaign.id}: this runner holds no lease of it")
        return token

    async def _save(self, campaign: Campaign) -> None:
        try:
            await self.store.save(campaign.id, campaign.header(), fence=self._fence(campaign))
        except CampaignFenced as exc:
            self._lost(campaign.id, str(exc))
            raise

    async def _save_device(self, campaign: Campaign, device: DeviceProgress) -> None:
        record = msgspec.json.encode(device.to_dict())
        try:
            await self.store.save_device(campaign.id, device.endpoint, record, fence=self._fence(campaign))
        except CampaignFenced as exc:
            self._lost(campaign.id, str(exc))
            raise

    def events(self, backlog: int = 10_000) -> CampaignEvents:
        """The campaigns' events from now on (:class:`CampaignEvent`)."""
        return CampaignEvents(self._subscribers, backlog)

    def _event(self, kind: str, campaign: Campaign, endpoint: str | None = None) -> None:
        if self._subscribers:
            device = campaign.devices.get(endpoint) if endpoint is not None else None
            event = CampaignEvent(
                kind,
                campaign.id,
                campaign.status,
                campaign.counts(),
                endpoint,
                None if device is None else device.state,
                None if device is None else device.result,
            )
            for subscriber in self._subscribers:
                subscriber.put(event)
        if self.on_event is not None:
            try:
                self.on_event(kind, campaign, endpoint)
            except Exception:
                log.exception("campaign event listener failed")


class _Follower:
    """State /5/0/3 and Update Result /5/0/5 of one device: observed, read when quiet."""

    def __init__(self, server: CampaignServer, endpoint: str, poll: float) -> None:
        self.server = server
        self.endpoint = endpoint
        self.poll = poll
        self.state = IDLE
        self.result = 0
        self._changed = asyncio.Event()
        self._observations: list[Any] = []
        self._pumps: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.refresh()
        for path in ("/5/0/3", "/5/0/5"):
            try:
                observation = await self.server.observe(self.endpoint, path)
            except LwM2MError:
                continue  # polled instead
            self._observations.append(observation)
            self._pumps.append(asyncio.get_running_loop().create_task(self._pump(observation)))

    async def refresh(self) -> None:
        response = await self.server.read(self.endpoint, "/5/0")
        if response.code >> 5 != 2:
            raise CampaignStateError(f"read /5/0 answered {response.code}")
        self._take(response.records)

    def _take(self, records: Sequence[Record]) -> None:
        for record in records:
            resource = record.path.ids[2] if len(record.path.ids) > 2 else None
            if resource == 3 and isinstance(record.value, int):
                self.state = record.value
            elif resource == 5 and isinstance(record.value, int):
                self.result = record.value
        self._changed.set()

    async def _pump(self, observation: Any) -> None:
        async for response in observation:
            self._take(response.records)

    async def until(self, done: Callable[[int, int], bool], timeout: float) -> tuple[int, int]:
        async with asyncio.timeout(timeout):
            while not done(self.state, self.result):
                self._changed.clear()
                try:
                    async with asyncio.timeout(self.poll):
                        await self._changed.wait()
                except TimeoutError:
                    await self.refresh()
            return self.state, self.result

    async def close(self) -> None:
        """Stop following. The observations are cancelled, each within LET_GO_TIMEOUT: one on
        another node may wait for that node (stopping too, at a shutdown), and the cancel is
        only a courtesy to the device (its next notification is answered RST otherwise)."""
        for pump in self._pumps:
            pump.cancel()
        for observation in self._observations:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(LET_GO_TIMEOUT):
                    await observation.cancel()
