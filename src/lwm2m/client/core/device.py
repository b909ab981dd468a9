"""LwM2M Device (object 3): what the device is, its power, memory, errors and clock (LwM2M-TS-Core 1.2 §E.4).

Executing Reboot (4) or Factory Reset (5) runs the ``on_reboot`` or
``on_factory_reset`` hook after the 2.04 has left: a device that restarts
inside the handler would never answer. Current Time (13) is the real clock
plus an offset that a Write of 13 sets, so the server can synchronise the
device. Error Code (11) follows the rules of §E.4: one instance 0 with
value 0 while all is well, one instance per present error otherwise;
executing Reset Error Code (12) brings it back to ``{0: 0}``.

Battery level, free memory and the like change from the device side with
:meth:`ObjectInstance.set`, which notifies observers::

    device = Device(manufacturer="ACME", model_number="T-1000", battery_level=80, on_reboot=restart)
    device.set(Device.BATTERY_LEVEL, 79)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import IntEnum
from typing import Any, ClassVar

from lwm2m.client.instance import ObjectInstance, ResourceValue
from lwm2m.errors import BadRequest, NotFound

log = logging.getLogger(__name__)

Hook = Callable[[], "Awaitable[None] | None"]


class PowerSource(IntEnum):
    """Available Power Sources (resource 6)."""

    DC = 0
    INTERNAL_BATTERY = 1
    EXTERNAL_BATTERY = 2
    FUEL_CELL = 3
    POWER_OVER_ETHERNET = 4
    USB = 5
    AC = 6
    SOLAR = 7


class BatteryStatus(IntEnum):
    """Battery Status (resource 20)."""

    NORMAL = 0
    CHARGING = 1
    CHARGE_COMPLETE = 2
    DAMAGED = 3
    LOW_BATTERY = 4
    NOT_INSTALLED = 5
    UNKNOWN = 6


class ErrorCode(IntEnum):
    """Error Code (resource 11); 16..32 are device specific."""

    NO_ERROR = 0
    LOW_BATTERY = 1
    EXTERNAL_POWER_OFF = 2
    GPS_FAILURE = 3
    LOW_SIGNAL = 4
    OUT_OF_MEMORY = 5
    SMS_FAILURE = 6
    IP_CONNECTIVITY_FAILURE = 7
    PERIPHERAL_MALFUNCTION = 8


def _run_hook(
    hook: Callable[[], Awaitable[None] | None], tasks: dict[asyncio.Task[Any], None], what: str
) -> None:
    """Call ``hook``; a coroutine it returns runs as a task kept in ``tasks``. Errors are logged."""
    try:
        result = hook()
    except Exception:
        log.exception("%s hook failed", what)
        return
    if inspect.isawaitable(result):

        async def wait() -> None:
            try:
                await result
            except Exception:
                log.exception("%s hook failed", what)

        task = asyncio.get_running_loop().create_task(wait(), name=f"lwm2m-{what}")
        tasks[task] = None
        task.add_done_callback(tasks.pop)


class Device(ObjectInstance):
    """The single instance of object 3.

    Optional resources given as None are absent (a Read of the instance leaves
    them out); ``current_time=False`` leaves out Current Time.
    """

    __slots__ = ("_clock_offset", "_tasks", "on_factory_reset", "on_reboot")

    object_id: ClassVar[int] = 3
    executable: ClassVar[tuple[int, ...]] = (4, 5, 12)

    MANUFACTURER, MODEL_NUMBER, SERIAL_NUMBER, FIRMWARE_VERSION = 0, 1, 2, 3
    REBOOT, FACTORY_RESET = 4, 5
    POWER_SOURCES, POWER_VOLTAGE, POWER_CURRENT = 6, 7, 8
    BATTERY_LEVEL, MEMORY_FREE, ERROR_CODE, RESET_ERROR_CODE = 9, 10, 11, 12
    CURRENT_TIME, UTC_OFFSET, TIMEZONE, BINDING_MODES = 13, 14, 15, 16
    DEVICE_TYPE, HARDWARE_VERSION, SOFTWARE_VERSION = 17, 18, 19
    BATTERY_STATUS, MEMORY_TOTAL = 20, 21

    def __init__(
        self,
        instance_id: int = 0,
        *,
        manufacturer: str | None = None,
        model_number: str | None = None,
        serial_number: str | None = None,
        firmware_version: str | None = None,
        device_type: str | None = None,
        hardware_version: str | None = None,
        software_version: str | None = None,
        battery_level: int | None = None,
        battery_status: int | None = None,
        memory_total: int | None = None,
        memory_free: int | None = None,
        power_sources: Sequence[int] | None = None,
        power_voltages: Sequence[int] | None = None,
        power_currents: Sequence[int] | None = None,
        binding_modes: str = "U",
        utc_offset: str | None = None,
        timezone: str | None = None,
        current_time: bool = True,
        on_reboot: Hook | None = None,
        on_factory_reset: Hook | None = None,
    ) -> None:
        given: dict[int, Any] = {
            self.MANUFACTURER: manufacturer,
            self.MODEL_NUMBER: model_number,
            self.SERIAL_NUMBER: serial_number,
            self.FIRMWARE_VERSION: firmware_version,
            self.POWER_SOURCES: None if power_sources is None else [int(p) for p in power_sources],
            self.POWER_VOLTAGE: None if power_voltages is None else list(power_voltages),
            self.POWER_CURRENT: None if power_currents is None else list(power_currents),
            self.BATTERY_LEVEL: battery_level,
            self.MEMORY_FREE: memory_free,
            self.ERROR_CODE: {0: ErrorCode.NO_ERROR.value},
            self.CURRENT_TIME: 0 if current_time else None,  # read() gives the clock
            self.UTC_OFFSET: utc_offset,
            self.TIMEZONE: timezone,
            self.BINDING_MODES: binding_modes,
            self.DEVICE_TYPE: device_type,
            self.HARDWARE_VERSION: hardware_version,
            self.SOFTWARE_VERSION: software_version,
            self.BATTERY_STATUS: None if battery_status is None else int(battery_status),
            self.MEMORY_TOTAL: memory_total,
        }
        if battery_level is not None and not 0 <= battery_level <= 100:
            raise ValueError(f"battery_level {battery_level}: a percentage 0..100")
        super().__init__(instance_id, {rid: v for rid, v in given.items() if v is not None})
        self.on_reboot = on_reboot
        self.on_factory_reset = on_factory_reset
        self._clock_offset = 0.0  # seconds added to the system clock by a Write of Current Time
        # Hooks running: a dict as a set (an empty set is 216 bytes), made for the first.
        self._tasks: dict[asyncio.Task[Any], None] | None = None

    # --- what the instance has ---------------------------------------------------------------

    def has_resource(self, resource_id: int) -> bool:
        # Factory Reset is offered only by a device that can do one.
        if resource_id == self.FACTORY_RESET and self.on_factory_reset is None:
            return False
        return super().has_resource(resource_id)

    def resource_ids(self) -> list[int]:
        return [rid for rid in super().resource_ids() if self.has_resource(rid)]

    # --- current time -------------------------------------------------------------------------

    @property
    def current_time(self) -> int:
        """The device's Unix time: the system clock corrected by the server's last Write of 13."""
        return int(time.time() + self._clock_offset)

    def read(self, resource_id: int) -> ResourceValue:
        if resource_id == self.CURRENT_TIME:
            if self.stored(self.CURRENT_TIME) is None:
                raise NotFound(f"{self._path(resource_id)} is not present")
            return self.current_time
        return super().read(resource_id)

    def write(self, resource_id: int, value: ResourceValue, *, replace: bool = True) -> None:
        if resource_id == self.CURRENT_TIME:
            # §E.4: the server writes Current Time to synchronise the client's clock.
            if not isinstance(value, int):
                raise BadRequest(f"{self._path(resource_id)}: a time is an integer")
            self._clock_offset = value - time.time()
            self.store(resource_id, value)
            self.changed(resource_id)
            return
        super().write(resource_id, value, replace=replace)

    # --- error codes --------------------------------------------------------------------------

    @property
    def errors(self) -> list[int]:
        """The error codes present now (empty when there is none)."""
        codes = self.get(self.ERROR_CODE) or {}
        return [c for c in codes.values() if c != ErrorCode.NO_ERROR]

    def add_error(self, code: int) -> None:
        """Report an error: instance 0 takes the first one, each other one a new instance (§E.4)."""
        code = int(code)
        if not 1 <= code <= 32:
            raise ValueError(f"error code {code}: expected 1..32")
        codes: dict[int, int] = dict(self.get(self.ERROR_CODE) or {})
        if code in codes.values():
            return
        if codes in ({}, {0: 0}):
            codes = {0: code}
        else:
            codes[max(codes) + 1] = code
        self.set(self.ERROR_CODE, codes)

    def clear_error(self, code: int) -> None:
        """An error is gone: its instance is deleted; without errors, instance 0 holds 0 again."""
        codes = {ri: c for ri, c in (self.get(self.ERROR_CODE) or {}).items() if c != int(code)}
        self.set(self.ERROR_CODE, codes or {0: ErrorCode.NO_ERROR.value})

    def reset_errors(self) -> None:
        """Reset Error Code (12): one instance with value 0."""
        self.set(self.ERROR_CODE, {0: ErrorCode.NO_ERROR.value})

    # --- versions -----------------------------------------------------------------------------

    @property
    def firmware_version(self) -> str:
        return str(self.get(self.FIRMWARE_VERSION, ""))

    @firmware_version.setter
    def firmware_version(self, version: str) -> None:
        self.set(self.FIRMWARE_VERSION, version)

    # --- execute ------------------------------------------------------------------------------

    def execute(self, resource_id: int, arguments: str) -> None:
        if resource_id == self.REBOOT:
            self._after_response(self.on_reboot, "reboot")
        elif resource_id == self.FACTORY_RESET:
            self._after_response(self.on_factory_reset, "factory reset")
        elif resource_id == self.RESET_ERROR_CODE:
            self.reset_errors()

    def _after_response(self, hook: Hook | None, what: str) -> None:
        """Run ``hook`` once the 2.04 has been sent: the handler answers before the loop runs it."""
        if hook is None:
            log.info("%s executed: no hook is set", what)
            return
        if self._tasks is None:
            self._tasks = {}
        asyncio.get_running_loop().call_soon(_run_hook, hook, self._tasks, what)
