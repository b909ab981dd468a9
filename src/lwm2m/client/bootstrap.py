"""The client side of the Bootstrap Interface (LwM2M-TS-Core 1.2 §6.1).

:class:`ClientBootstrap` runs one client-initiated bootstrap: it sends the
Bootstrap-Request (§6.1.7.1, or a Bootstrap-Pack-Request, §6.1.7.7), serves
the bootstrap server's Bootstrap-Discover, -Read, -Write and -Delete while
the session lasts, and checks the configuration on Bootstrap-Finish
(§6.1.7.2), answering 4.06 Not Acceptable when it would leave the client
without a usable server account.

A session that fails (4.06, no Bootstrap-Finish in time, the client stopped)
leaves nothing half-applied: the Security (0), Server (1), Access Control (2)
and OSCORE (21) instances, every instance a Bootstrap-Write touched and the
set of instances of every object are put back as they were when the session
began (§6.1.4: the client then asks again, later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from lwm2m.client.core.security import Security, SecurityMode
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.handler import RequestHandler, default_format
from lwm2m.client.instance import ObjectInstance, ResourceValue
from lwm2m.client.objects import ObjectTree
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type, as_code, code_text
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.codec.linkformat import Link, serialize_links
from lwm2m.errors import (
    BadRequest,
    BootstrapError,
    ClientBootstrapError,
    CodecError,
    DeviceError,
    MethodNotAllowed,
    NotFound,
    RequestAborted,
    RequestReset,
    RequestTimeout,
)
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.protocol.bootstrap import (
    ACCESS_CONTROL_OBJECT,
    OSCORE_OBJECT,
    SECURITY_OBJECT,
    SERVER_OBJECT,
    BootstrapDeleteRequest,
    BootstrapDiscoverRequest,
    BootstrapFinishRequest,
    BootstrapPackRequest,
    BootstrapReadRequest,
    BootstrapRequest,
    BootstrapWriteRequest,
    parse_downlink,
)
from lwm2m.transport.address import normalize
from lwm2m.transport.tcp import CoapTcpEndpoint
from lwm2m.transport.udp import CoapUdpEndpoint

log = logging.getLogger(__name__)

DEVICE_OBJECT = 3
# Objects whose instances a Bootstrap-Write replaces whole, and which a failed session restores.
ACCOUNT_OBJECTS = (SECURITY_OBJECT, SERVER_OBJECT, ACCESS_CONTROL_OBJECT, OSCORE_OBJECT)
SECURE_SCHEMES = ("coaps", "coaps+tcp")

# A Security instance -> why this client cannot reach its server (scheme, credentials), or None.
Unusable = Callable[[ObjectInstance], str | None]


def _reply(code: int, diagnostic: str = "") -> Message:
    return Message(Type.ACK, as_code(code), payload=diagnostic.encode())


def _describe(message: Message) -> str:
    """``4.00 Bad Request "..."``: the code and the diagnostic payload (RFC 7252 §5.5.2)."""
    text = message.payload.decode("utf-8", "replace") if message.payload else ""
    return f'{code_text(message.code)} "{text}"' if text else code_text(message.code)


class _Snapshot:
    """What a session may change, as it was when the session began."""

    def __init__(self, tree: ObjectTree) -> None:
        self.tree = tree
        self.structure = {oid: dict(obj.instances) for oid, obj in tree.objects.items()}
        self.values: dict[tuple[int, int], tuple[ObjectInstance, dict[int, ResourceValue]]] = {}
        for oid in ACCOUNT_OBJECTS:
            for inst in tree.instances(oid):
                self.keep(inst)

    def keep(self, inst: ObjectInstance) -> None:
        """Remember ``inst``'s values before a Bootstrap-Write changes them in place."""
        key = (inst.definition.id, inst.id)
        if key not in self.values and self.structure.get(key[0], {}).get(key[1]) is inst:
            # The instance's own store, copied: restoring must not run device handlers.
            self.values[key] = (inst, inst.snapshot())

    def restore(self) -> None:
        tree = self.tree
        for oid, obj in list(tree.objects.items()):
            before = self.structure.get(oid, {})
            for iid, inst in list(obj.instances.items()):
                if before.get(iid) is not inst:
                    tree.remove(oid, iid)
        for oid, instances in self.structure.items():
            for iid, inst in instances.items():
                if oid in tree.objects and tree.instance(oid, iid) is None:
                    tree.add(inst)
        for inst, values in self.values.values():
            inst.restore(values)


class _Session:
    def __init__(self, addr: Any, snapshot: _Snapshot) -> None:
        self.addr = addr
        self.snapshot = snapshot
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.restored = False

    def fail(self, reason: str) -> None:
        if not self.restored:
            self.snapshot.restore()
            self.restored = True
        if not self.finished.done():
            self.finished.set_exception(ClientBootstrapError(reason))


def _usable(security: ObjectInstance) -> str | None:
    """Every account is usable (no reason against it)."""
    return None


def _security_instance(instance_id: int) -> Security:
    """A Security instance a Bootstrap-Write creates (one function for every client, not a
    lambda each)."""
    return Security(instance_id, short_server_id=None)


class ClientBootstrap:
    """Bootstraps the client that owns ``tree`` and ``handler``."""

    def __init__(
        self,
        tree: ObjectTree,
        handler: RequestHandler,
        *,
        endpoint: str,
        lwm2m_version: str = "1.2",
        unusable: Unusable | None = None,
    ) -> None:
        self.tree = tree
        self.handler = handler
        self.models = tree.models
        self.endpoint = endpoint
        self.lwm2m_version = lwm2m_version
        self.unusable: Unusable = unusable or _usable
        self.session: _Session | None = None
        self.last_error: str | None = None
        # Instances a Bootstrap-Write creates are of the classes the client acts on.
        for oid, factory in (
            (SECURITY_OBJECT, _security_instance),
            (SERVER_OBJECT, ServerAccount),
        ):
            obj = tree.objects.get(oid)
            if obj is None or obj.factory is None:
                tree.declare(oid, factory)

    # --- accounts ------------------------------------------------------------------------------

    def account(self) -> ObjectInstance | None:
        """The bootstrap server account: the Security instance with Bootstrap-Server true."""
        for inst in self.tree.instances(SECURITY_OBJECT):
            if inst.get(Security.BOOTSTRAP):
                return inst
        return None

    def server_accounts(self) -> list[tuple[ObjectInstance, ObjectInstance | None]]:
        """Each Server (1) instance with the Security (0) instance of its Short Server ID."""
        securities = {
            inst.get(Security.SHORT_SERVER_ID): inst
            for inst in self.tree.instances(SECURITY_OBJECT)
            if not inst.get(Security.BOOTSTRAP)
        }
        return [
            (srv, securities.get(srv.get(ServerAccount.SHORT_SERVER_ID)))
            for srv in self.tree.instances(SERVER_OBJECT)
        ]

    def usable_account(self) -> tuple[ServerAccount, ObjectInstance] | None:
        """The first server account this client can register with."""
        for srv, sec in self.server_accounts():
            if sec is not None and isinstance(srv, ServerAccount) and not self._account_problem(sec):
                return srv, sec
        return None

    def _account_problem(self, sec: ObjectInstance) -> str | None:
        where = f"/0/{sec.id}"
        uri = str(sec.get(Security.URI, ""))
        parts = urlsplit(uri)
        if not parts.hostname:
            return f"{where}: server URI {uri!r} has no host"
        mode = sec.get(Security.MODE)
        secure = parts.scheme in SECURE_SCHEMES
        if secure and mode == SecurityMode.NO_SEC:
            return f"{where}: {uri} is coaps but the security mode is NoSec"
        if not secure and mode != SecurityMode.NO_SEC:
            return f"{where}: {uri} is plain coap but the security mode is {mode}"
        if mode == SecurityMode.PSK and not (sec.get(Security.IDENTITY) and sec.get(Security.SECRET_KEY)):
            return f"{where}: PSK mode without identity or key"
        problem = self.unusable(sec)
        return f"{where}: {problem}" if problem else None

    def check(self) -> list[str]:
        """What makes the configuration inconsistent (LwM2M-TS-Core 1.2 §6.1.7.2); empty if nothing."""
        problems: list[str] = []
        bootstrap = [i for i in self.tree.instances(SECURITY_OBJECT) if i.get(Security.BOOTSTRAP)]
        if len(bootstrap) > 1:
            paths = ", ".join(f"/0/{i.id}" for i in bootstrap)
            problems.append(f"more than one bootstrap server account ({paths})")
        accounts = self.server_accounts()
        if not accounts:
            return [*problems, "no LwM2M Server (1) instance: no server account to register with"]
        seen: dict[Any, int] = {}
        for srv, sec in accounts:
            ssid = srv.get(ServerAccount.SHORT_SERVER_ID)
            if ssid in seen:
                problems.append(f"/1/{srv.id} and /1/{seen[ssid]} have the same Short Server ID {ssid}")
            seen[ssid] = srv.id
            if sec is None:
                problems.append(f"/1/{srv.id} (Short Server ID {ssid}) has no Security (0) instance")
        if problems:
            return problems
        if self.usable_account() is None:
            reasons = [p for _, sec in accounts if sec is not None and (p := self._account_problem(sec))]
            problems.append("no usable server account: " + "; ".join(reasons or ["none"]))
        return problems

    # --- serving the bootstrap server --------------------------------------------------------

    def serving(self, addr: Any) -> bool:
        """Whether a request from ``addr`` is the bootstrap server's, in a running session."""
        session = self.session
        return session is not None and (normalize(addr) or addr) == session.addr

    def __call__(self, event: RequestReceived) -> Message:
        try:
            answer = self._dispatch(event.message)
        except DeviceError as exc:
            answer = _reply(exc.code, str(exc))
        except BootstrapError as exc:
            answer = _reply(exc.code, str(exc))
        except Exception as exc:  # a bug must not take the client down
            log.exception("bootstrap request %s failed", event.message)
            answer = _reply(Code.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")
        if self.handler.on_request is not None:
            self.handler.on_request(event, answer)
        return answer

    def _dispatch(self, msg: Message) -> Message:
        request = parse_downlink(msg, self.models)
        if isinstance(request, BootstrapFinishRequest):
            return self.finish()
        if isinstance(request, BootstrapDiscoverRequest):
            return self.discover(request.path)
        if isinstance(request, BootstrapReadRequest):
            return self.read(request)
        if isinstance(request, BootstrapWriteRequest):
            self.write(request.path, request.records)
            return _reply(Code.CHANGED)
        assert isinstance(request, BootstrapDeleteRequest)
        self.delete(request.path)
        return _reply(Code.DELETED)

    def finish(self) -> Message:
        session = self.session
        assert session is not None
        problems = self.check()
        if problems:
            reason = "; ".join(problems)
            session.fail(f"Bootstrap-Finish refused: {reason}")
            return _reply(Code.NOT_ACCEPTABLE, reason)
        if not session.finished.done():
            session.finished.set_result(None)
        return _reply(Code.CHANGED)

    def discover(self, path: Path) -> Message:
        """Bootstrap-Discover (§6.1.7.3): the objects and instances, with ``ssid`` and ``uri`` of the
        server accounts and the enabler version on the root."""
        if path.is_object and path.ids[0] not in self.tree.objects:
            raise NotFound(f"{path}: no such object")
        links = [Link.of("/", lwm2m=self.lwm2m_version)]
        for oid in sorted(self.tree.objects) if path.is_root else [path.ids[0]]:
            obj = self.tree.objects[oid]
            ver = obj.definition.version
            if ver not in ("", "1.0") or not obj.instances:
                links.append(Link.of(f"/{oid}", **({"ver": ver} if ver not in ("", "1.0") else {})))
            for inst in obj.instances.values():
                links.append(Link(f"/{oid}/{inst.id}", self._instance_attributes(oid, inst)))
        payload = serialize_links(links).encode()
        return Message.build(Type.ACK, Code.CONTENT, content_format=ContentFormat.LINK, payload=payload)

    @staticmethod
    def _instance_attributes(oid: int, inst: ObjectInstance) -> tuple[tuple[str, str | None], ...]:
        if oid == SECURITY_OBJECT and not inst.get(Security.BOOTSTRAP):
            attrs: list[tuple[str, str | None]] = []
            ssid = inst.get(Security.SHORT_SERVER_ID)
            if ssid is not None:
                attrs.append(("ssid", str(ssid)))
            attrs.append(("uri", str(inst.get(Security.URI, ""))))
            return tuple(attrs)
        if oid == SERVER_OBJECT and inst.get(ServerAccount.SHORT_SERVER_ID) is not None:
            return (("ssid", str(inst.get(ServerAccount.SHORT_SERVER_ID))),)
        return ()

    def read(self, request: BootstrapReadRequest) -> Message:
        """Bootstrap-Read (§6.1.7.4, 1.1+) of a Server or Access Control object or instance."""
        if self.lwm2m_version == "1.0":
            raise MethodNotAllowed("Bootstrap-Read is an LwM2M 1.1 operation")
        fmt = request.format or default_format(self.lwm2m_version)
        fmt = self.handler.response_format(int(fmt))
        records = self.tree.read(request.path)
        payload = self.handler.encode(records, request.path, fmt)
        return Message.build(Type.ACK, Code.CONTENT, content_format=fmt, payload=payload)

    def write(self, path: Path, records: Iterable[Record]) -> None:
        """Bootstrap-Write (§6.1.7.5): written whether or not the target exists. An instance of
        Security, Server, Access Control or OSCORE is replaced whole; other instances and
        resources take the values given. Everything is checked before anything is stored."""
        records = list(records)
        if path.is_object:
            by_instance: dict[int, list[Record]] = {}
            for r in records:
                if r.path.level >= 2:  # an object record alone carries no value
                    by_instance.setdefault(r.path.ids[1], []).append(r)
            targets = [(Path.of(path.ids[0], iid), recs) for iid, recs in by_instance.items()]
        else:
            targets = [(path, records)]
        for apply in [self._planned(target, recs) for target, recs in targets]:
            apply()

    def _planned(self, path: Path, records: list[Record]) -> Callable[[], None]:
        """The change a Bootstrap-Write of ``records`` at ``path`` makes, checked and not yet made."""
        oid, iid = path.ids[0], path.ids[1]
        obj = self._object(oid)
        current = obj.instances.get(iid)
        if current is None or (path.is_instance and oid in ACCOUNT_OBJECTS):
            if current is None and obj.instances and not obj.definition.multiple:
                raise BadRequest(f"object {oid} is single-instance and has an instance already")
            inst = obj.new_instance(iid)
            base = Path.of(oid, iid)
            for rid, value in self.tree._group(inst, base, records, check_access=False).items():
                inst.write(rid, value)
            if current is not None and current is self.account() and not inst.get(Security.BOOTSTRAP):
                raise BadRequest(self._keeps_account(path))
            return lambda: self._store(oid, iid, inst)
        self.tree._group(current, path, records, check_access=False)  # raises before any change
        if current is self.account() and any(
            r.path.level >= 3 and r.path.ids[2] == Security.BOOTSTRAP and not r.value for r in records
        ):
            raise BadRequest(self._keeps_account(path))

        def in_place() -> None:
            if self.session is not None:
                self.session.snapshot.keep(current)
            # Bootstrap-Write ignores the LwM2M servers' access rights (check_access=False).
            self.tree.write(path, records, replace=path.is_resource, check_access=False)

        return in_place

    @staticmethod
    def _keeps_account(path: Path) -> str:
        # The account a new bootstrap goes through (/1/x/9 included) is kept: §6.1.7.6 spares it
        # from Bootstrap-Delete, and a Write that turned it into a server account would lose it.
        return (
            f"{path}: /0/{path.ids[1]} is this client's bootstrap server account; "
            "a Bootstrap-Write may update it, not make it a server account"
        )

    def _object(self, oid: int) -> Any:
        obj = self.tree.objects.get(oid)
        if obj is None:
            if oid not in ACCOUNT_OBJECTS or self.models.get(oid) is None:
                raise NotFound(f"/{oid}: this client does not support object {oid}")
            obj = self.tree.declare(oid)
        return obj

    def _store(self, oid: int, iid: int, inst: ObjectInstance) -> None:
        if self.tree.instance(oid, iid) is not None:
            self.tree.remove(oid, iid)
        self.tree.add(inst)

    def delete(self, path: Path) -> None:
        """Bootstrap-Delete (§6.1.7.6) of ``/``, an object or an instance. The bootstrap server
        account and the Device object stay; deleting what is not there succeeds."""
        if path.is_instance:
            inst = self.tree.instance(path.ids[0], path.ids[1])
            if inst is None:
                return
            if path.ids[0] == DEVICE_OBJECT:
                raise BadRequest(f"{path}: the Device object instance cannot be deleted")
            if inst is self.account():
                raise BadRequest(f"{path}: the bootstrap server account cannot be deleted")
            self._remove(path.ids[0], inst)
            return
        oids = sorted(self.tree.objects) if path.is_root else [path.ids[0]]
        keep = self.account()
        for oid in oids:
            if oid == DEVICE_OBJECT:
                if path.is_object:
                    raise BadRequest("/3: the Device object instance cannot be deleted")
                continue
            for inst in list(self.tree.instances(oid)):
                if inst is not keep:
                    self._remove(oid, inst)

    def _remove(self, oid: int, inst: ObjectInstance) -> None:
        with contextlib.suppress(DeviceError):  # an instance the device will not give up stays
            inst.delete()
            self.tree.remove(oid, inst.id)
            path = Path.of(oid, inst.id)
            self.handler.forget_attributes(path)
            if self.handler.observer is not None:
                self.handler.observer.removed(path)

    def _clear_of_account(self, by_target: dict[Path, list[Record]]) -> dict[Path, list[Record]]:
        """The pack's instances with a server account that would land on this client's bootstrap
        server account moved to a free Security instance: a pack is asked for without a
        Bootstrap-Discover, so its server may not know where that account is, and Security
        instances are told apart by their Short Server ID, not by their instance ID (§E.1)."""
        account = self.account()
        if account is None:
            return by_target
        own = Path.of(SECURITY_OBJECT, account.id)
        records = by_target.get(own)
        if records is None or any(r.path.ids[2:] == (Security.BOOTSTRAP,) and r.value for r in records):
            return by_target
        taken = set(self.tree.objects[SECURITY_OBJECT].instances) | {
            t.ids[1] for t in by_target if t.ids[0] == SECURITY_OBJECT
        }
        free = next(i for i in range(len(taken) + 1) if i not in taken)
        moved = Path.of(SECURITY_OBJECT, free)
        log.info(
            "%s: the Bootstrap-Pack's %s goes to %s (%s is the bootstrap account)",
            self.endpoint,
            own,
            moved,
            own,
        )
        out = {t: recs for t, recs in by_target.items() if t != own}
        out[moved] = [
            Record(Path((SECURITY_OBJECT, free, *r.path.ids[2:])), r.value, r.time) for r in records
        ]
        return out

    # --- the session ------------------------------------------------------------------------------

    async def run(
        self,
        coap: CoapUdpEndpoint | CoapTcpEndpoint,
        addr: Any,
        *,
        timeout: float = 60.0,
        request_timeout: float | None = None,
        pack: bool = False,
    ) -> None:
        """One bootstrap with the bootstrap server at ``addr``: a session that ends with an accepted
        Bootstrap-Finish within ``timeout`` seconds, or (``pack``) one Bootstrap-Pack-Request.
        Raises ClientBootstrapError, with everything put back, otherwise."""
        account = self.account()
        if account is None:
            raise ClientBootstrapError(
                "no bootstrap server account (a Security instance with Bootstrap-Server)"
            )
        hold_off = account.get(Security.HOLD_OFF) or 0
        if hold_off:
            await asyncio.sleep(int(hold_off))  # §E.1 Client Hold Off Time
        session = self.session = _Session(normalize(addr) or addr, _Snapshot(self.tree))
        try:
            if pack:
                await self._pack(coap, addr, request_timeout)
            else:
                await self._session(coap, addr, session, timeout, request_timeout)
            self.last_error = None
        except ClientBootstrapError as exc:
            session.fail(str(exc))
            self.last_error = str(exc)
            raise
        except BaseException as exc:
            reason = "the client stopped" if isinstance(exc, asyncio.CancelledError) else f"{exc}"
            session.fail(reason)
            self.last_error = reason
            raise
        finally:
            self.session = None
            done = session.finished
            if not done.done():
                done.cancel()
            elif not done.cancelled():
                done.exception()  # retrieved: a failure told by raising, not by a warning

    async def _session(
        self,
        coap: CoapUdpEndpoint | CoapTcpEndpoint,
        addr: Any,
        session: _Session,
        timeout: float,
        request_timeout: float | None,
    ) -> None:
        pct = None if self.lwm2m_version == "1.0" else ContentFormat.SENML_CBOR
        request = BootstrapRequest(self.endpoint, pct)
        try:
            answer = await coap.request(request.to_message(), addr, timeout=request_timeout)
        except (RequestTimeout, RequestReset, RequestAborted, OSError) as exc:
            raise ClientBootstrapError(f"Bootstrap-Request: {exc}") from None
        if answer.code != Code.CHANGED:
            raise ClientBootstrapError(f"Bootstrap-Request refused: {_describe(answer)}")
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(session.finished)
        except TimeoutError:
            raise ClientBootstrapError(f"no Bootstrap-Finish within {timeout:g} s") from None

    async def _pack(
        self, coap: CoapUdpEndpoint | CoapTcpEndpoint, addr: Any, request_timeout: float | None
    ) -> None:
        request = BootstrapPackRequest(self.endpoint, ContentFormat.SENML_CBOR)
        try:
            answer = await coap.request(request.to_message(), addr, timeout=request_timeout)
        except (RequestTimeout, RequestReset, RequestAborted, OSError) as exc:
            raise ClientBootstrapError(f"Bootstrap-Pack-Request: {exc}") from None
        if answer.code != Code.CONTENT:
            raise ClientBootstrapError(f"Bootstrap-Pack-Request refused: {_describe(answer)}")
        fmt = answer.content_format if answer.content_format is not None else ContentFormat.SENML_CBOR
        try:
            records = get_codec(fmt).decode(answer.payload, ROOT, self.models)
        except CodecError as exc:
            raise ClientBootstrapError(f"the Bootstrap-Pack cannot be decoded: {exc}") from None
        # §6.1.7.7: the pack stands for the Bootstrap-Writes of what it carries, then a Finish.
        by_target: dict[Path, list[Record]] = {}
        for r in records:
            if r.path.level < 3:
                continue
            oid = r.path.ids[0]
            target = Path(r.path.ids[:2]) if oid in ACCOUNT_OBJECTS else r.path.resource_path()
            by_target.setdefault(target, []).append(r)
        by_target = self._clear_of_account(by_target)
        try:
            for target, recs in by_target.items():
                self.write(target, recs)
        except DeviceError as exc:
            raise ClientBootstrapError(f"the Bootstrap-Pack cannot be applied: {exc}") from None
        problems = self.check()
        if problems:
            raise ClientBootstrapError("the Bootstrap-Pack is not consistent: " + "; ".join(problems))
