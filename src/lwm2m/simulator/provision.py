"""What the servers must know before a fleet can talk to them: its keys and bootstrap configurations.

A fleet with ``security="psk"`` has a PSK per device (16 random bytes, the
identity is the endpoint name), one for its LwM2M server and, when it
bootstraps over ``coaps://``, another for its bootstrap server. A fleet that
bootstraps gives each device a bootstrap configuration naming the server it
is to register with (with its PSK, over ``coaps://``). They get there either

- through a running server's REST API (:func:`provision_api`):
  ``PUT /api/security/clients/{ep}`` with ``{"pskIdentity", "pskKey"}`` for the LwM2M
  server's keys, or ``PUT /api/bootstrap/{ep}`` with the configuration, which also gives
  the LwM2M server the key when the bootstrap server has its store (``lwm2m server
  --bootstrap-port``, or ``lwm2m bootstrap`` sharing its ``--data``); or
- straight into stores (:func:`provision_stores`), such as the database in the
  ``--data`` folder of ``lwm2m server`` and ``lwm2m bootstrap``: a running server reads
  a new entry at the next handshake. A device whose entry is already there keeps
  its key, so running the same fleet again needs no new keys.

A fleet with ``security="oscore"`` has an OSCORE context per device (derived from the fleet's
master secret and the device's index); the LwM2M server gets an entry of mode oscore per device
the same two ways (``{"oscore": {...}}`` through the REST API). Those entries are written again
at every run: the devices start their sequence numbers afresh, so each run takes a new secret.

The bootstrap server's own PSKs (for a ``coaps://`` bootstrap server) have no REST
API: they go into its store (``DATA/bootstrap`` for ``lwm2m bootstrap --coaps-port``).
Keys are never logged or shown: only counts are reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from lwm2m.errors import HttpError, RemoteApiError
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.simulator.fleet import DeviceKey, Fleet
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.http import HttpClient, url_path

__all__ = [
    "DeviceKey",
    "JsonApi",
    "Provisioned",
    "RemoteApiError",
    "provision_api",
    "provision_stores",
]

API_CONNECTIONS = 8  # HTTP connections in parallel: a few keep the server busy without a storm


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What was stored where; counts only."""

    server_keys: int = 0  # PSKs the LwM2M server's security store got (or already had)
    configs: int = 0  # bootstrap configurations stored
    bootstrap_keys: int = 0  # PSKs the bootstrap server's own security store got (or had)
    kept: int = 0  # keys found already stored for these endpoints, and used again
    not_provisioned: int = 0  # configurations the bootstrap API stored without telling the LwM2M server
    seconds: float = 0.0
    oscore_contexts: int = 0  # OSCORE entries the LwM2M server's security store got

    def describe(self) -> str:
        parts = []
        if self.configs:
            parts.append(f"{self.configs} bootstrap configurations")
        if self.server_keys:
            parts.append(f"{self.server_keys} LwM2M server PSKs")
        if self.bootstrap_keys:
            parts.append(f"{self.bootstrap_keys} bootstrap server PSKs")
        if self.oscore_contexts:
            parts.append(f"{self.oscore_contexts} OSCORE contexts")
        text = ", ".join(parts) or "nothing"
        if self.kept:
            text += f" ({self.kept} keys already stored, kept)"
        return f"{text} in {self.seconds:.2f} s"


class JsonApi:
    """JSON calls to a running server's REST API through the package's HTTP client
    (:class:`~lwm2m.transport.http.HttpClient`), over kept-alive connections, so thousands of PUTs
    go by in seconds."""

    def __init__(self, base: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._http = HttpClient(base, headers=headers, timeout=timeout)
        except ValueError as exc:
            raise ValueError(f"API {exc}") from None
        self.base = base.rstrip("/")

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One call: the status and the decoded JSON answer (None when it is not JSON)."""
        try:
            if body is None:
                answer = await self._http.request(method, path)
            else:
                answer = await self._http.request(method, path, json=body)
        except HttpError as exc:
            raise RemoteApiError(f"{self.base}: {exc}") from None
        return answer.status, answer.json()

    async def put_each(
        self, items: Sequence[tuple[str, Any]], *, workers: int = API_CONNECTIONS
    ) -> list[Any]:
        """``PUT`` each ``(path, body)``, ``workers`` at a time; the answers in order. RemoteApiError at the
        first refusal (naming the path's last segment, the endpoint), and the rest are not sent."""
        if not items:
            return []
        workers = max(1, min(workers, len(items)))
        answers: list[Any] = [None] * len(items)

        async def stripe(start: int) -> None:
            for i in range(start, len(items), workers):
                path, body = items[i]
                status, answer = await self.call("PUT", path, body)
                if status >= 300:
                    detail = answer.get("error") if isinstance(answer, dict) else answer
                    name = unquote(path.rsplit("/", 1)[-1])
                    raise RemoteApiError(f"{self.base}: PUT for {name!r} refused ({status}): {detail}")
                answers[i] = answer

        tasks = [asyncio.create_task(stripe(w)) for w in range(workers)]
        try:
            await asyncio.gather(*tasks)  # the first failure ends the others
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._http.close()
        return answers


async def provision_api(fleet: Fleet, api: JsonApi, *, workers: int = API_CONNECTIONS) -> Provisioned:
    """Give the server behind ``api`` what ``fleet`` needs: its bootstrap configurations when the
    fleet bootstraps and has a server to hand out, else its LwM2M server PSKs. The bootstrap
    server's own PSKs are not part of it (no REST API): see :func:`provision_stores`."""
    t0 = time.perf_counter()
    if fleet.bootstrap_uri is not None:
        if fleet.server_uri is None:
            return Provisioned(seconds=time.perf_counter() - t0)
        names = fleet.endpoint_names()
        items = [(url_path("api", "bootstrap", ep), fleet.bootstrap_config(ep)) for ep in names]
        answers = await api.put_each(items, workers=workers)
        told = sum(1 for a in answers if isinstance(a, dict) and a.get("provisioned"))
        wanted = len(fleet.server_keys())
        return Provisioned(
            server_keys=told if wanted else 0,
            configs=len(items),
            not_provisioned=wanted - told if wanted else 0,
            seconds=time.perf_counter() - t0,
        )
    if fleet.oscore:
        entries = fleet.oscore_entries()
        await api.put_each(
            [(url_path("api", "security", "clients", e.endpoint), _oscore_body(e)) for e in entries],
            workers=workers,
        )
        return Provisioned(oscore_contexts=len(entries), seconds=time.perf_counter() - t0)
    keys = fleet.server_keys()
    await api.put_each(
        [(url_path("api", "security", "clients", k.endpoint), k.to_json()) for k in keys], workers=workers
    )
    return Provisioned(server_keys=len(keys), seconds=time.perf_counter() - t0)


def _oscore_body(info: SecurityInfo) -> dict[str, Any]:
    """The body of ``PUT /api/security/clients/{ep}`` for an OSCORE entry."""
    assert info.oscore is not None
    body = info.oscore.to_dict(with_key=True)
    del body["sequence"]  # the server's own to keep
    return {"oscore": body}


async def _stored_keys(security: Any, names: Iterable[str]) -> dict[str, bytes]:
    """The PSKs ``security`` holds for these endpoints under their own name as identity."""
    wanted = set(names)
    return {
        info.endpoint: info.psk_key
        for info in await security.all()
        if info.endpoint in wanted and info.psk_identity == info.endpoint and info.psk_key
    }


async def provision_stores(
    fleet: Fleet,
    store: Any = None,
    *,
    bootstrap_security: Any = None,
) -> Provisioned:
    """Write what ``fleet`` needs into stores, before it starts: ``store`` has ``.security`` (the
    LwM2M server's SecurityStore) and, for a fleet that bootstraps, ``.bootstrap_configs`` (those
    of ``lwm2m.storage``: the database of ``lwm2m server`` and ``lwm2m bootstrap``);
    ``bootstrap_security`` is the bootstrap server's own SecurityStore, for a ``coaps://`` one.
    An endpoint that already has a PSK there (its name as identity) keeps it: the fleet takes it."""
    t0 = time.perf_counter()
    names = fleet.endpoint_names()
    kept = server_keys = written_configs = bootstrap_keys = 0
    security = getattr(store, "security", None)
    if fleet.bootstrap_psk and bootstrap_security is not None:
        found = await _stored_keys(bootstrap_security, names)
        fleet.adopt_keys(found, bootstrap=True)
        kept += len(found)
        for key in fleet.bootstrap_server_keys():
            if key.endpoint not in found:
                await bootstrap_security.put(key.security_info())
            bootstrap_keys += 1
    if fleet.server_psk and security is not None:
        found = await _stored_keys(security, names)
        fleet.adopt_keys(found)
        kept += len(found)
        for key in fleet.server_keys():
            if key.endpoint not in found:
                await security.put(key.security_info())
            server_keys += 1
    oscore_contexts = 0
    if fleet.oscore and security is not None:
        for info in fleet.oscore_entries():
            await security.put(info)
            oscore_contexts += 1
    bootstrap_configs = getattr(store, "bootstrap_configs", None)
    if store is not None and fleet.bootstrap_uri is not None and fleet.server_uri is not None:
        if bootstrap_configs is None:
            raise ValueError("the store has no bootstrap configurations")
        for ep in names:
            await bootstrap_configs.put(
                ep, BootstrapConfig.from_json(fleet.bootstrap_config(ep), fleet.models)
            )
            written_configs += 1
    return Provisioned(
        server_keys=server_keys,
        configs=written_configs,
        bootstrap_keys=bootstrap_keys,
        kept=kept,
        seconds=time.perf_counter() - t0,
        oscore_contexts=oscore_contexts,
    )
