"""LwM2M Server (object 1): one server account's registration settings (LwM2M-TS-Core 1.2 §E.2).

Lifetime (1), Default Minimum/Maximum Period (2, 3) and Binding (7) drive the
client; executing Registration Update Trigger (8) makes it send an Update at
once, Bootstrap-Request Trigger (9) makes it bootstrap again. Writing the
lifetime or the binding makes the client send an Update carrying them
(§6.2.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from lwm2m.client.instance import ObjectInstance, ResourceValue

Hook = Callable[["ServerAccount"], None]


class ServerAccount(ObjectInstance):
    object_id: ClassVar[int] = 1
    executable: ClassVar[tuple[int, ...]] = (4, 8, 9)

    SHORT_SERVER_ID, LIFETIME, DEFAULT_PMIN, DEFAULT_PMAX = 0, 1, 2, 3
    DISABLE, DISABLE_TIMEOUT, STORING, BINDING = 4, 5, 6, 7
    UPDATE_TRIGGER, BOOTSTRAP_TRIGGER = 8, 9
    __slots__ = ("on_bootstrap_trigger", "on_disable", "on_registration_change", "on_update_trigger")

    def __init__(
        self,
        instance_id: int = 0,
        *,
        short_server_id: int = 1,
        lifetime: int = 86400,
        binding: str = "U",
        default_pmin: int | None = None,
        default_pmax: int | None = None,
        storing: bool = True,
    ) -> None:
        values: dict[int, object] = {
            self.SHORT_SERVER_ID: short_server_id,
            self.LIFETIME: lifetime,
            self.STORING: storing,
            self.BINDING: binding,
        }
        if default_pmin is not None:
            values[self.DEFAULT_PMIN] = default_pmin
        if default_pmax is not None:
            values[self.DEFAULT_PMAX] = default_pmax
        super().__init__(instance_id, values)
        # Set by the client that uses this account.
        self.on_update_trigger: Hook | None = None
        self.on_bootstrap_trigger: Hook | None = None
        self.on_registration_change: Hook | None = None  # lifetime or binding written
        self.on_disable: Callable[[ServerAccount, int], None] | None = None

    @property
    def short_server_id(self) -> int:
        return int(self.get(self.SHORT_SERVER_ID, 0))

    @property
    def lifetime(self) -> int:
        return int(self.get(self.LIFETIME, 86400))

    @property
    def binding(self) -> str:
        return str(self.get(self.BINDING, "U"))

    @property
    def default_pmin(self) -> int | None:
        v = self.get(self.DEFAULT_PMIN)
        return int(v) if v is not None else None

    @property
    def default_pmax(self) -> int | None:
        v = self.get(self.DEFAULT_PMAX)
        return int(v) if v is not None else None

    def write(self, resource_id: int, value: ResourceValue, *, replace: bool = True) -> None:
        old = self.get(resource_id)
        super().write(resource_id, value, replace=replace)
        if resource_id in (self.LIFETIME, self.BINDING) and old != value and self.on_registration_change:
            self.on_registration_change(self)

    def execute(self, resource_id: int, arguments: str) -> None:
        if resource_id == self.UPDATE_TRIGGER and self.on_update_trigger is not None:
            self.on_update_trigger(self)
        elif resource_id == self.BOOTSTRAP_TRIGGER and self.on_bootstrap_trigger is not None:
            self.on_bootstrap_trigger(self)
        elif resource_id == self.DISABLE and self.on_disable is not None:
            # §E.2: disabled for Disable Timeout seconds (default 86400).
            self.on_disable(self, int(self.get(self.DISABLE_TIMEOUT, 86400)))
