"""The device operations of a campaign's runner on a node of a cluster (DESIGN.md, "Where its users
outgrow one machine"): :class:`RoutedDevices` is the runner's
:class:`~lwm2m.fleet.campaigns.CampaignServer`.

A device this node serves goes through the server itself, as on a single node. A device another
live node owns (:meth:`~lwm2m.server.membership.ClusterMember.owner_elsewhere`) is reached the
way the REST API reaches it (:class:`~lwm2m.web.cluster.ForwardToOwner`): the operation goes to
its owner over the request bus as the API call it is (``GET``/``PUT``/``POST`` under
``/api/clients/{ep}/``, ``?wait=true`` so that a sleeping device is waited for, LwM2M-TS-Core
1.2 §6.5), the owner runs it through its own routes, and its JSON answer comes back as a
device answer (code, records). The notifications of an observation started on the owner
(State /5/0/3, Update Result /5/0/5) reach the runner through the fleet's event stream, which
carries every node's events, whichever node the device sends them to (after a failover too):
one reader per runner while it has such observations, each observation's notifications in a
bounded backlog (the newest kept: only the latest State and Update Result matter).

A request whose owner is killed before it answers is given up once that node stops beating
(:class:`~lwm2m.errors.OwnerGone`) and goes again by the device's new route, an Execute
excepted (the dead node may have passed it on: it fails as a timeout does).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lwm2m.errors import (
    BusTimeout,
    JsonFormError,
    LwM2MError,
    NotRegistered,
    OwnerGone,
    QueueTimeout,
    RemoteApiError,
    RequestTimeout,
)
from lwm2m.model.jsonform import record_from_json, record_to_json
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.registration import Registration
from lwm2m.server.backlog import Backlog
from lwm2m.server.management import DEFAULT_TIMEOUT
from lwm2m.server.role import Server
from lwm2m.web.cluster import FORWARD_MARGIN, FORWARD_TIMEOUT, Cluster

__all__ = ["RoutedAnswer", "RoutedDevices", "RoutedObservation"]

log = logging.getLogger(__name__)

SECURE_KEPT = 100_000  # endpoints whose security mode a runner remembers, at most
OWNER_WAIT = 5.0  # seconds a device whose node is gone is waited for (its next datagram names its new node)
QUIET_KEPT = 10_000  # endpoints served here without waiting for their next datagram, at most
ALIVE_POLL = 0.5  # seconds between looks at whether the node a routed request waits for still beats
NOTIFICATIONS_KEPT = 16  # notifications of one routed observation waiting to be read, at most
# The REST API's words for a sleeping device that did not wake up (web/errors.py, QueueTimeout).
_ASLEEP = "the device did not wake up"


@dataclass(frozen=True, slots=True)
class RoutedAnswer:
    """A device's answer as its owner node's REST API gave it: the CoAP ``code`` and the records."""

    code: int
    records: list[Record] = field(default_factory=list)


def _code(text: Any) -> int:
    """``"2.05"`` -> the CoAP code (RFC 7252 §3)."""
    major, _, minor = str(text).partition(".")
    try:
        return (int(major) << 5) | int(minor)
    except ValueError:
        raise RemoteApiError(f"a device answer with the code {text!r}") from None


class RoutedDevices:
    """A campaign runner's device operations across the cluster (see the module's docstring)."""

    def __init__(self, server: Server, cluster: Cluster, *, owner_wait: float = OWNER_WAIT) -> None:
        self.server = server
        self.cluster = cluster
        self.owner_wait = owner_wait
        self._observations: dict[str, set[RoutedObservation]] = {}
        self._reader: asyncio.Task[None] | None = None
        # Devices another node serves: whether their credentials make them DTLS devices, which
        # this node's server knows only of those that register here.
        self._dtls: dict[str, bool] = {}
        # Devices served from here once their node was gone and they stayed quiet for
        # ``owner_wait``: not waited for again at each operation (a campaign makes several);
        # a live node that claims one since is still its route.
        self._quiet: dict[str, None] = {}

    # --- CampaignServer ------------------------------------------------------------------------

    async def registrations(self) -> list[Registration]:
        return await self.server.registrations()  # the shared store's: every node's devices

    def secure(self, endpoint: str) -> bool:
        """Whether ``endpoint`` is a DTLS device (never given a URI in the clear): as this node's
        server knows it, or, for a device another node serves, as its credentials in the store
        say (looked up at its first routed operation: a campaign reads before it delivers)."""
        return self.server.secure(endpoint) or self._dtls.get(endpoint, False)

    async def read(self, endpoint: str, path: str | Path) -> Any:
        return await self._routed(
            endpoint,
            lambda: self.server.read(endpoint, path),
            lambda node: self._ask(node, "GET", endpoint, f"{Path.parse(path)}", None, DEFAULT_TIMEOUT),
        )

    async def write(
        self, endpoint: str, path: str | Path, records: Any, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Any:
        body = {"records": [record_to_json(r, untyped=False) for r in records]}
        # Written again after a lost answer, the same value does what it did (a Package URI
        # written twice starts the download anew, LwM2M-TS-Core 1.2 Appendix E.6).
        return await self._routed(
            endpoint,
            lambda: self.server.write(endpoint, path, records, timeout=timeout),
            lambda node: self._ask(node, "PUT", endpoint, f"{Path.parse(path)}", body, timeout),
        )

    async def execute(self, endpoint: str, path: str | Path) -> Any:
        # Not sent again when its node died meanwhile: an Update executed twice is not the same
        # as once (OwnerGone, a timeout, goes to the campaign, which reads the state again).
        return await self._routed(
            endpoint,
            lambda: self.server.execute(endpoint, path),
            lambda node: self._ask(node, "POST", endpoint, f"{Path.parse(path)}", {}, DEFAULT_TIMEOUT),
            again=False,
        )

    async def observe(self, endpoint: str, path: str | Path) -> Any:
        return await self._routed(
            endpoint,
            lambda: self.server.observe(endpoint, path),
            lambda node: self._observe_at(node, endpoint, Path.parse(path)),
        )

    async def _observe_at(self, node: str, endpoint: str, path: Path) -> RoutedObservation:
        observation = RoutedObservation(self, endpoint, path)
        # Listening before the observation starts: no notification between the two is missed.
        await self._listen(observation)
        try:
            answer = await self._ask(
                node, "POST", endpoint, f"{observation.path}/observe", {}, DEFAULT_TIMEOUT
            )
            if answer.code >> 5 != 2:
                raise RemoteApiError(
                    f"{endpoint} refused to be observed at {observation.path}: {answer.code}"
                )
        except BaseException:
            self.forget(observation)
            raise
        return observation

    # --- routing -----------------------------------------------------------------------------------

    async def _routed(
        self,
        endpoint: str,
        here: Callable[[], Awaitable[Any]],
        there: Callable[[str], Awaitable[Any]],
        *,
        again: bool = True,
    ) -> Any:
        """A device operation: ``here()`` when no other live node owns ``endpoint``, else
        ``there(node)`` through its owner. When that node stops beating before it answers (it
        was killed: :class:`OwnerGone`), the operation goes again (``again``) by the device's
        route from then on: the node that heard from it since, or this one."""
        while True:
            node = await self._owner(endpoint)
            if node is None:
                return await here()
            try:
                return await there(node)
            except OwnerGone as exc:
                if not again:
                    raise
                log.warning("campaigns: %s; %s is reached again by its new route", exc, endpoint)

    async def _owner(self, endpoint: str) -> str | None:
        waited = endpoint not in self._quiet
        node = await self.cluster.owner_elsewhere(endpoint, wait=self.owner_wait if waited else 0.0)
        if node is not None:
            self._quiet.pop(endpoint, None)
        elif waited:
            if len(self._quiet) >= QUIET_KEPT:
                del self._quiet[next(iter(self._quiet))]  # the oldest
            self._quiet[endpoint] = None
        if node is not None and endpoint not in self._dtls:
            info = await self.server.security.get(endpoint)
            if len(self._dtls) >= SECURE_KEPT:
                del self._dtls[next(iter(self._dtls))]  # the oldest
            self._dtls[endpoint] = info is not None and info.mode != "nosec"
        return node

    async def _ask(
        self, node: str, method: str, endpoint: str, path: str, body: Any, timeout: float | None
    ) -> RoutedAnswer:
        """The API call for ``endpoint`` run by ``node``; its answer, or the error the API's
        status stands for."""
        wait = DEFAULT_TIMEOUT if timeout is None else timeout
        payload = {
            "method": method,
            "path": f"/api/clients/{endpoint}{path}",
            "query": f"wait=true&timeout={wait:g}",
            "headers": [["content-type", "application/json"]] if body is not None else [],
            "body": base64.b64encode(json.dumps(body).encode() if body is not None else b"").decode(),
        }
        # ?wait=true: a sleeping device is waited for as long as the owner waits for it (its
        # queue timeout); an awake one as long as the request's timeout, and the bus's margin.
        sleeper = (await self.server.registration(endpoint)).queue_mode
        limit = FORWARD_TIMEOUT if sleeper else min(FORWARD_TIMEOUT, wait + FORWARD_MARGIN)
        try:
            answer = await self._ask_alive(node, payload, limit)
        except OwnerGone:
            raise
        except BusTimeout:
            if sleeper:  # still asleep: not a failure, the next try waits for it again
                raise QueueTimeout(f"{endpoint!r} did not wake up within {limit:g} s") from None
            raise
        return self._answer(endpoint, answer)

    async def _ask_alive(self, node: str, payload: dict[str, Any], limit: float) -> Any:
        """``cluster.ask``, given up with :class:`OwnerGone` once ``node`` no longer beats: a
        node killed before it answered never will, and waiting the request's whole timeout for
        it would hold the device (and a campaign's slot) that long."""
        asking = asyncio.ensure_future(self.cluster.ask(node, payload, limit))
        try:
            while True:
                done, _ = await asyncio.wait({asking}, timeout=ALIVE_POLL)
                if done:
                    return asking.result()
                if not await self.cluster.alive(node):
                    raise OwnerGone(f"node {node!r} stopped beating before it answered")
        finally:
            if not asking.done():
                asking.cancel()
                with contextlib.suppress(asyncio.CancelledError, LwM2MError):
                    await asking

    def _answer(self, endpoint: str, answer: Any) -> RoutedAnswer:
        try:
            status = int(answer["status"])
            data = json.loads(base64.b64decode(answer["body"], validate=True) or b"null")
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteApiError(f"{endpoint}: an answer of its node that cannot be read: {exc}") from None
        if status == 200 and isinstance(data, dict):
            try:
                records = [_record(item, self.server.models) for item in data.get("records", ())]
            except (JsonFormError, TypeError) as exc:
                raise RemoteApiError(f"{endpoint}: records of its node that cannot be read: {exc}") from None
            return RoutedAnswer(_code(data.get("code")), records)
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        if status == 404:
            raise NotRegistered(error or f"no client {endpoint!r}")
        if status == 504:
            raise (QueueTimeout if error.startswith(_ASLEEP) else RequestTimeout)(error or "timeout")
        raise RemoteApiError(f"{endpoint}: its node answered {status}: {error}")

    # --- notifications through the fleet's event stream ---------------------------------------------

    async def _listen(self, observation: RoutedObservation) -> None:
        self._observations.setdefault(observation.endpoint, set()).add(observation)
        if self._reader is None:
            last = await self.cluster.fleet.last_event_id()
            self._reader = asyncio.get_running_loop().create_task(
                self._read(last), name="campaign notifications"
            )

    def forget(self, observation: RoutedObservation) -> None:
        kept = self._observations.get(observation.endpoint)
        if kept is not None:
            kept.discard(observation)
            if not kept:
                del self._observations[observation.endpoint]
        if not self._observations and self._reader is not None:
            self._reader.cancel()  # nothing to read for: the fleet's stream is not read in vain
            self._reader = None

    async def _read(self, last: str) -> None:
        while True:
            try:
                async for _, event in self.cluster.fleet.subscribe(last):
                    self._dispatch(event)
            except LwM2MError as exc:
                # An entry that cannot be read: read on from the newest (what is skipped, the
                # runner reads from the devices when no notification comes).
                log.warning("campaigns: reading the fleet's events failed: %s", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):  # Redis away: the same place again
                    last = await self.cluster.fleet.last_event_id()

    def _dispatch(self, event: dict[str, Any]) -> None:
        """A notification to the routed observations of its endpoint."""
        if event.get("event") != "NOTIFICATION":
            return
        observations = self._observations.get(str(event.get("endpoint")))
        if not observations:
            return
        data = event.get("data") or {}
        try:
            records = [_record(item, self.server.models) for item in data.get("records", ())]
        except (JsonFormError, TypeError, AttributeError) as exc:
            log.info("campaigns: a notification of %s that cannot be read: %s", event.get("endpoint"), exc)
            return
        for observation in list(observations):
            observation.take(records)

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        self._observations.clear()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def cancel_on_owner(self, observation: RoutedObservation) -> None:
        """Cancel the observation on the node that owns its device now (passive: no word to it)."""
        node = await self._owner(observation.endpoint)
        if node is not None:
            await self._ask(node, "DELETE", observation.endpoint, f"{observation.path}/observe", None, 2.0)


def _record(item: Any, models: ObjectRegistry) -> Record:
    """A record from its JSON form, typed by the server's models (the readings of untyped bytes,
    which only a person needs, left out)."""
    if not isinstance(item, dict):
        raise JsonFormError(f"a record must be an object, got {item!r}")
    return record_from_json({k: v for k, v in item.items() if k in ("path", "value", "time")}, models)


class RoutedObservation:
    """An observation started on another node: iterate it for its notifications (as
    :class:`RoutedAnswer`), ``cancel()`` ends it."""

    def __init__(self, devices: RoutedDevices, endpoint: str, path: Path) -> None:
        self.devices = devices
        self.endpoint = endpoint
        self.path = path
        self._backlog: Backlog[RoutedAnswer] = Backlog(NOTIFICATIONS_KEPT)

    def take(self, records: Sequence[Record]) -> None:
        mine = [r for r in records if _within(r.path, self.path)]
        if mine:
            self._backlog.put(RoutedAnswer(69, mine))  # 2.05 Content, as a notification is

    def __aiter__(self) -> RoutedObservation:
        return self

    async def __anext__(self) -> RoutedAnswer:
        if not self._backlog:
            await self._backlog.wait()
        return self._backlog.pop()

    async def cancel(self) -> None:
        self.devices.forget(self)
        with contextlib.suppress(LwM2MError, TimeoutError, ConnectionError):
            await self.devices.cancel_on_owner(self)


def _within(path: Path, observed: Path) -> bool:
    ids: Iterable[int] = observed.ids
    return tuple(path.ids[: len(observed.ids)]) == tuple(ids)
