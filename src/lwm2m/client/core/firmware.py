"""LwM2M Firmware Update (object 5): the download and update state machine (LwM2M-TS-Core 1.2 §E.6).

State (3) and Update Result (5) move as the state machine of §E.6 says:

- push: a Write of the package to Package (0) -- block-wise transfers arrive whole,
  reassembled by the CoAP layer -- goes Idle -> Downloading -> Downloaded;
- pull: a Write of a ``coap://``, ``http://`` or ``https://`` URI to Package URI (1)
  starts a download: Idle -> Downloading -> Downloaded, or back to Idle with the
  reason in Update Result (4 connection lost, 7 invalid URI, 9 unsupported
  protocol, 2 package too big, 5 integrity check failure);
- writing an empty package (or ``\\0``) or an empty URI resets the machine to Idle
  with result 0, dropping what was downloaded;
- Update (2), executable in Downloaded only (else 4.05), goes to Updating and runs
  the ``on_update(package)`` hook after the 2.04 has left: True ends in Idle with
  result 1 (and the package version, PkgVersion (7), becomes the Device's
  Firmware Version when a ``device`` is given); False goes back to Downloaded
  with result 8, so the server may try again or reset;
- Cancel (10), in Downloading or Downloaded (else 4.05), ends in Idle with result 10.

Errors of the process are reported through Update Result, not as the answer to
the Write (§E.6). A hook may raise :class:`FirmwareError` to choose the result.

::

    async def install(package: bytes) -> bool:
        await flash.write(package)
        return True

    fw = FirmwareUpdate(on_update=install, verify=lambda p: p.startswith(b"FW"), device=device)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import SplitResult, unquote, urlsplit

from lwm2m.client.instance import ObjectInstance, ResourceValue
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import (
    BadRequest,
    FirmwareError,
    HttpBodyTooLarge,
    HttpError,
    HttpNameError,
    HttpRedirectError,
    HttpStatusError,
    MethodNotAllowed,
    RequestAborted,
    RequestReset,
)
from lwm2m.transport.address import resolve
from lwm2m.transport.http import http_get
from lwm2m.transport.udp import open_udp_endpoint

if TYPE_CHECKING:
    from lwm2m.client.core.device import Device

log = logging.getLogger(__name__)


class State(IntEnum):
    """State (resource 3)."""

    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class UpdateResult(IntEnum):
    """Update Result (resource 5)."""

    INITIAL = 0
    SUCCESS = 1
    NOT_ENOUGH_STORAGE = 2
    OUT_OF_MEMORY = 3
    CONNECTION_LOST = 4
    INTEGRITY_CHECK_FAILURE = 5
    UNSUPPORTED_PACKAGE_TYPE = 6
    INVALID_URI = 7
    UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9
    CANCELLED = 10
    DEFERRED = 11


class DeliveryMethod(IntEnum):
    """Firmware Update Delivery Method (resource 9)."""

    PULL = 0
    PUSH = 1
    BOTH = 2


class Protocol(IntEnum):
    """Firmware Update Protocol Support (resource 8)."""

    COAP = 0
    COAPS = 1
    HTTP = 2
    HTTPS = 3
    COAP_TCP = 4
    COAP_TLS = 5


SCHEMES: dict[str, Protocol] = {
    "coap": Protocol.COAP,
    "coaps": Protocol.COAPS,
    "http": Protocol.HTTP,
    "https": Protocol.HTTPS,
    "coap+tcp": Protocol.COAP_TCP,
    "coaps+tcp": Protocol.COAP_TLS,
}
# What this module can download with.
IMPLEMENTED = (Protocol.COAP, Protocol.HTTP, Protocol.HTTPS)
MAX_URI_LENGTH = 255  # Package URI range 0..255 (§E.6)
DEFAULT_MAX_PACKAGE = 16 << 20

Check = Callable[[bytes], "bool | Awaitable[bool]"]


class FirmwareUpdate(ObjectInstance):
    """The single instance of object 5.

    ``verify(package)`` checks a downloaded package (False: integrity check
    failure); ``on_update(package)`` installs it. Both may be coroutine
    functions. ``max_package_size`` bounds what is accepted (result 2 beyond);
    ``download_timeout`` bounds a pull download (result 4 beyond).
    """

    __slots__ = (
        "_generation",
        "_package",
        "_tasks",
        "device",
        "download_timeout",
        "max_package_size",
        "on_update",
        "protocols",
        "ssl_context",
        "verify",
    )

    object_id: ClassVar[int] = 5
    executable: ClassVar[tuple[int, ...]] = (2, 10)

    PACKAGE, PACKAGE_URI, UPDATE, STATE, UPDATE_RESULT = 0, 1, 2, 3, 5
    PKG_NAME, PKG_VERSION, PROTOCOL_SUPPORT, DELIVERY_METHOD, CANCEL = 6, 7, 8, 9, 10
    SEVERITY, LAST_STATE_CHANGE, MAX_DEFER_PERIOD, AUTO_UPDATE = 11, 12, 13, 14

    def __init__(
        self,
        instance_id: int = 0,
        *,
        on_update: Check | None = None,
        verify: Check | None = None,
        device: Device | None = None,
        delivery: DeliveryMethod = DeliveryMethod.BOTH,
        protocols: Iterable[Protocol] = IMPLEMENTED,
        package_name: str | None = None,
        package_version: str | None = None,
        auto_update: bool | None = None,
        max_package_size: int = DEFAULT_MAX_PACKAGE,
        download_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # The default protocols as the one module tuple: a simulated fleet has an instance per device.
        self.protocols = IMPLEMENTED if protocols is IMPLEMENTED else tuple(Protocol(p) for p in protocols)
        unknown = [p.name for p in self.protocols if p not in IMPLEMENTED]
        if unknown:
            raise ValueError(f"cannot download with {', '.join(unknown)}")
        values: dict[int, Any] = {
            self.PACKAGE: b"",  # write-only: the placeholder makes it listed, the package is kept aside
            self.PACKAGE_URI: "",
            self.STATE: State.IDLE.value,
            self.UPDATE_RESULT: UpdateResult.INITIAL.value,
            self.DELIVERY_METHOD: DeliveryMethod(delivery).value,
            self.LAST_STATE_CHANGE: int(time.time()),
        }
        if delivery != DeliveryMethod.PUSH:
            values[self.PROTOCOL_SUPPORT] = [p.value for p in self.protocols]
        if package_name is not None:
            values[self.PKG_NAME] = package_name
        if package_version is not None:
            values[self.PKG_VERSION] = package_version
        if auto_update is not None:
            values[self.AUTO_UPDATE] = auto_update
        super().__init__(instance_id, values)
        self.on_update = on_update
        self.verify = verify
        self.device = device
        self.max_package_size = max_package_size
        self.download_timeout = download_timeout
        self.ssl_context = ssl_context
        self._package: bytes | None = None
        self._generation = 0  # bumped by every start and reset: late results of old work are dropped
        # Downloads and updates running: a dict as a set (an empty set is 216 bytes), made for the first.
        self._tasks: dict[asyncio.Task[Any], None] | None = None

    # --- state --------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return State(int(self.get(self.STATE, 0)))

    @property
    def result(self) -> UpdateResult:
        return UpdateResult(int(self.get(self.UPDATE_RESULT, 0)))

    @property
    def package(self) -> bytes | None:
        """The downloaded package (None unless Downloaded or Updating)."""
        return self._package

    @property
    def delivery(self) -> DeliveryMethod:
        return DeliveryMethod(int(self.get(self.DELIVERY_METHOD, DeliveryMethod.BOTH)))

    def describe_package(self, name: str | None = None, version: str | None = None) -> None:
        """Set PkgName (6) and PkgVersion (7), e.g. from ``verify`` once the package is parsed."""
        if name is not None:
            self.set(self.PKG_NAME, name)
        if version is not None:
            self.set(self.PKG_VERSION, version)

    def _enter(self, state: State, result: UpdateResult | None = None) -> None:
        # Last State Change Time is updated before the State (§E.6); the result before the
        # state too, so that a server that sees the state change reads the matching result.
        if state != self.state:
            self.set(self.LAST_STATE_CHANGE, int(time.time()))
        if result is not None:
            self.set(self.UPDATE_RESULT, result.value)
        self.set(self.STATE, state.value)

    def _fail(self, result: UpdateResult) -> None:
        """A download or check failed: back to Idle with ``result``, nothing kept."""
        log.info("firmware update /5/%d: %s", self.id, result.name)
        self._package = None
        self._enter(State.IDLE, result)

    def reset(self) -> None:
        """Back to Idle with result 0, dropping a download in progress or done (§E.6)."""
        if self.state == State.UPDATING:
            raise MethodNotAllowed(f"/5/{self.id}: an update is being installed; it cannot be reset")
        self._stop_work()
        self._package = None
        self._enter(State.IDLE, UpdateResult.INITIAL)

    def _stop_work(self) -> None:
        self._generation += 1
        for task in list(self._tasks or ()):
            task.cancel()

    # --- write: push and pull -----------------------------------------------------------------

    def write(self, resource_id: int, value: ResourceValue, *, replace: bool = True) -> None:
        if resource_id == self.PACKAGE:
            if not isinstance(value, bytes):
                raise BadRequest(f"{self._path(resource_id)}: the package is opaque")
            self._push(value)
        elif resource_id == self.PACKAGE_URI:
            if not isinstance(value, str):
                raise BadRequest(f"{self._path(resource_id)}: the package URI is a string")
            self._pull(value)
        else:
            super().write(resource_id, value, replace=replace)

    def _push(self, package: bytes) -> None:
        if package in (b"", b"\0"):
            self.reset()
            return
        if self.delivery == DeliveryMethod.PULL:
            raise MethodNotAllowed(f"/5/{self.id}: this device only downloads from a Package URI")
        self._check_idle()
        self._start()
        pending = self._downloaded(package, self._generation)
        if pending is not None:
            self._spawn(pending)

    def _pull(self, uri: str) -> None:
        if not uri:
            self.reset()
            self.set(self.PACKAGE_URI, "")
            return
        if self.delivery == DeliveryMethod.PUSH:
            raise MethodNotAllowed(f"/5/{self.id}: this device only takes a package written to /5/0/0")
        self._check_idle()
        self.set(self.PACKAGE_URI, uri)
        try:
            parts = self._check_uri(uri)
        except FirmwareError as exc:
            # The Write succeeds; the problem is reported in Update Result (§E.6).
            self._stop_work()
            self._fail(exc.result)
            return
        self._start()
        self._spawn(self._download(parts, self._generation))

    def _check_idle(self) -> None:
        if self.state != State.IDLE:
            raise MethodNotAllowed(
                f"/5/{self.id} is {self.state.name.title()}: write an empty package or URI to reset first"
            )

    def _start(self) -> None:
        self._stop_work()
        self._package = None
        self._enter(State.DOWNLOADING, UpdateResult.INITIAL)

    def _check_uri(self, uri: str) -> SplitResult:
        if len(uri) > MAX_URI_LENGTH:
            raise FirmwareError(UpdateResult.INVALID_URI, f"URI longer than {MAX_URI_LENGTH} characters")
        if not uri.isascii() or any(c.isspace() or not c.isprintable() for c in uri):
            # RFC 3986: a URI is printable ASCII, non-ASCII characters percent-encoded.
            raise FirmwareError(UpdateResult.INVALID_URI, f"{uri!r} has characters a URI cannot hold")
        try:
            parts = urlsplit(uri)
            _ = parts.port  # a bad port raises here
        except ValueError:
            raise FirmwareError(UpdateResult.INVALID_URI, f"{uri!r} is not a URI") from None
        if not parts.scheme or not parts.hostname:
            raise FirmwareError(UpdateResult.INVALID_URI, f"{uri!r} has no scheme or host")
        protocol = SCHEMES.get(parts.scheme.lower())
        if protocol is None or protocol not in self.protocols:
            raise FirmwareError(UpdateResult.UNSUPPORTED_PROTOCOL, f"cannot download with {parts.scheme}")
        return parts

    async def _download(self, parts: SplitResult, generation: int) -> None:
        try:
            async with asyncio.timeout(self.download_timeout):
                if parts.scheme.lower() == "coap":
                    package = await fetch_coap(parts, self.max_package_size)
                else:
                    package = await fetch_http(parts, self.max_package_size, self.ssl_context)
        except FirmwareError as exc:
            log.info("download of %s failed: %s", parts.geturl(), exc)
            result = exc.result
        except (TimeoutError, OSError, RequestAborted, asyncio.IncompleteReadError) as exc:
            # RequestTimeout is a TimeoutError, RequestReset a ConnectionError (an OSError).
            log.info("download of %s failed: %s", parts.geturl(), exc)
            result = UpdateResult.CONNECTION_LOST
        except Exception:
            # Whatever went wrong, the state machine must not stay in Downloading.
            log.exception("download of %s failed", parts.geturl())
            result = UpdateResult.CONNECTION_LOST
        else:
            pending = self._downloaded(package, generation)
            if pending is not None:
                await pending
            return
        if generation == self._generation:
            self._fail(result)

    def _downloaded(self, package: bytes, generation: int) -> Awaitable[None] | None:
        """The whole package is here: check it, then Downloaded (or Idle with the reason).

        Returns an awaitable when ``verify`` is a coroutine function.
        """
        if generation != self._generation:
            return None  # reset or cancelled meanwhile
        if len(package) > self.max_package_size:
            self._fail(UpdateResult.NOT_ENOUGH_STORAGE)
            return None
        if self.verify is None:
            self._verified(package, True, generation)
            return None
        try:
            ok = self.verify(package)
        except FirmwareError as exc:
            self._fail(exc.result)
            return None
        except Exception:
            log.exception("firmware verify hook failed")
            self._fail(UpdateResult.INTEGRITY_CHECK_FAILURE)
            return None
        if inspect.isawaitable(ok):
            return self._verify_later(package, ok, generation)
        self._verified(package, bool(ok), generation)
        return None

    async def _verify_later(self, package: bytes, check: Awaitable[bool], generation: int) -> None:
        try:
            ok = bool(await check)
        except FirmwareError as exc:
            if generation == self._generation:
                self._fail(exc.result)
            return
        except Exception:
            log.exception("firmware verify hook failed")
            ok = False
        self._verified(package, ok, generation)

    def _verified(self, package: bytes, ok: bool, generation: int) -> None:
        if generation != self._generation:
            return  # reset or cancelled meanwhile
        if not ok:
            self._fail(UpdateResult.INTEGRITY_CHECK_FAILURE)
            return
        self._package = package
        self._enter(State.DOWNLOADED)
        if self.get(self.AUTO_UPDATE) is True:
            self._begin_update()

    # --- execute: update and cancel ---------------------------------------------------------------

    def execute(self, resource_id: int, arguments: str) -> None:
        if resource_id == self.UPDATE:
            if self.state != State.DOWNLOADED:
                raise MethodNotAllowed(
                    f"/5/{self.id}/2: Update is executable in state Downloaded only, not {self.state.name}"
                )
            self._begin_update()
        elif resource_id == self.CANCEL:
            if self.state not in (State.DOWNLOADING, State.DOWNLOADED):
                raise MethodNotAllowed(f"/5/{self.id}/10: nothing to cancel in state {self.state.name}")
            self._stop_work()
            self._package = None
            self._enter(State.IDLE, UpdateResult.CANCELLED)

    def _begin_update(self) -> None:
        self._enter(State.UPDATING, UpdateResult.INITIAL)
        # A task first runs once the current callback is over: the 2.04 leaves before the update starts.
        self._spawn(self._install(self._generation))

    async def _install(self, generation: int) -> None:
        package = self._package or b""
        result = UpdateResult.SUCCESS
        try:
            ok: Any = True if self.on_update is None else self.on_update(package)
            if inspect.isawaitable(ok):
                ok = await ok
            if not ok:
                result = UpdateResult.UPDATE_FAILED
        except FirmwareError as exc:
            result = exc.result
        except Exception:
            log.exception("firmware update hook failed")
            result = UpdateResult.UPDATE_FAILED
        if generation != self._generation:
            return
        if result == UpdateResult.SUCCESS:
            self._package = None
            version = self.get(self.PKG_VERSION)
            if self.device is not None and version:
                self.device.firmware_version = str(version)
            self._enter(State.IDLE, UpdateResult.SUCCESS)
        elif result == UpdateResult.UPDATE_FAILED:
            # §E.6: the state may return to Downloaded; the package stays for another try.
            self._enter(State.DOWNLOADED, UpdateResult.UPDATE_FAILED)
        else:
            self._fail(result)

    # --- tasks ----------------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        if self._tasks is None:
            self._tasks = {}
        self._tasks[task] = None
        task.add_done_callback(self._tasks.pop)

    def delete(self) -> None:
        self._stop_work()

    async def close(self) -> None:
        """Stop a download or an update in progress (when the client shuts down)."""
        tasks = list(self._tasks or ())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# --- downloads ----------------------------------------------------------------------------------


async def fetch_coap(parts: SplitResult, max_size: int = DEFAULT_MAX_PACKAGE) -> bytes:
    """GET a ``coap://`` URI; a Block2 body is fetched whole by the CoAP layer (RFC 7959)."""
    host = parts.hostname or ""
    try:
        addr = await resolve((host, parts.port or 5683))
    except OSError as exc:
        raise FirmwareError(UpdateResult.INVALID_URI, f"cannot resolve {host!r}: {exc}") from None
    request = Message.build(
        Type.CON,
        Code.GET,
        uri_path=[unquote(s) for s in parts.path.split("/") if s],
        uri_query=[unquote(q) for q in parts.query.split("&") if q],
    )
    local = "::" if len(addr) == 4 else "0.0.0.0"
    config = EndpointConfig(max_body_size=max_size + 1)
    async with open_udp_endpoint(local, 0, config=config) as endpoint:
        try:
            response = await endpoint.request(request, addr)
        except RequestReset:
            raise FirmwareError(UpdateResult.CONNECTION_LOST, "the server answered with RST") from None
    if response.code == Code.CONTENT:
        return response.payload
    answer = f"{parts.geturl()} answered {_coap_code(response.code)}"
    if response.code >> 5 == 4:  # e.g. 4.04: nothing at that URI
        raise FirmwareError(UpdateResult.INVALID_URI, answer)
    raise FirmwareError(UpdateResult.CONNECTION_LOST, answer)


async def fetch_http(
    parts: SplitResult, max_size: int = DEFAULT_MAX_PACKAGE, ssl_context: ssl.SSLContext | None = None
) -> bytes:
    """GET an ``http://`` or ``https://`` URI (``lwm2m.transport.http``), its failures as Update Results."""
    try:
        return await http_get(parts, max_size=max_size, ssl_context=ssl_context)
    except HttpNameError as exc:
        raise FirmwareError(UpdateResult.INVALID_URI, str(exc)) from None
    except HttpStatusError as exc:
        # A 4xx: nothing (for us) at that URI; anything else: the server failed us.
        result = UpdateResult.INVALID_URI if 400 <= exc.status < 500 else UpdateResult.CONNECTION_LOST
        raise FirmwareError(result, str(exc)) from None
    except HttpRedirectError as exc:
        result = UpdateResult.UNSUPPORTED_PROTOCOL if exc.unsupported else UpdateResult.INVALID_URI
        raise FirmwareError(result, str(exc)) from None
    except HttpBodyTooLarge:
        raise FirmwareError(UpdateResult.NOT_ENOUGH_STORAGE, f"package over {max_size} bytes") from None
    except HttpError as exc:
        raise FirmwareError(UpdateResult.CONNECTION_LOST, str(exc)) from None


def _coap_code(code: int) -> str:
    return f"{code >> 5}.{code & 31:02d}"
