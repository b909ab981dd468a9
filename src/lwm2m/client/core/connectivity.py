"""LwM2M Connectivity Monitoring (object 4): bearer, radio and IP addresses (LwM2M-TS-Core 1.2 §E.5).

All resources are read-only for the server; the device reports changes with
:meth:`ConnectivityMonitoring.update` (several resources in one call) or
:meth:`ObjectInstance.set`, and observers are notified::

    conn = ConnectivityMonitoring(network_bearer=NetworkBearer.LTE_FDD, radio_signal_strength=-92,
                                  ip_addresses=["10.0.0.7"], apn=["iot.example"])
    conn.update(radio_signal_strength=-101, link_quality=12)
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any, ClassVar

from lwm2m.client.instance import ObjectInstance


class NetworkBearer(IntEnum):
    """Network Bearer (resource 0) and Available Network Bearer (1): 0..20 cellular,
    21..40 wireless, 41..50 wireline."""

    GSM = 0
    TD_SCDMA = 1
    WCDMA = 2
    CDMA2000 = 3
    WIMAX = 4
    LTE_TDD = 5
    LTE_FDD = 6
    NB_IOT = 7
    NR_TDD = 8  # 5G-NR
    NR_FDD = 9
    WLAN = 21
    BLUETOOTH = 22
    IEEE_802_15_4 = 23
    ETHERNET = 41
    DSL = 42
    PLC = 43


class ConnectivityMonitoring(ObjectInstance):
    """The single instance of object 4. Optional resources given as None are absent."""

    object_id: ClassVar[int] = 4

    NETWORK_BEARER, AVAILABLE_BEARERS, RADIO_SIGNAL_STRENGTH, LINK_QUALITY = 0, 1, 2, 3
    IP_ADDRESSES, ROUTER_IP_ADDRESSES, LINK_UTILIZATION, APN = 4, 5, 6, 7
    CELL_ID, SMNC, SMCC, SIGNAL_SNR, LAC, COVERAGE_ENHANCEMENT_LEVEL = 8, 9, 10, 11, 12, 13

    # Keyword names of update() and of the constructor, by resource ID.
    NAMES: ClassVar[dict[str, int]] = {
        "network_bearer": NETWORK_BEARER,
        "available_bearers": AVAILABLE_BEARERS,
        "radio_signal_strength": RADIO_SIGNAL_STRENGTH,
        "link_quality": LINK_QUALITY,
        "ip_addresses": IP_ADDRESSES,
        "router_ip_addresses": ROUTER_IP_ADDRESSES,
        "link_utilization": LINK_UTILIZATION,
        "apn": APN,
        "cell_id": CELL_ID,
        "smnc": SMNC,
        "smcc": SMCC,
        "signal_snr": SIGNAL_SNR,
        "lac": LAC,
        "coverage_enhancement_level": COVERAGE_ENHANCEMENT_LEVEL,
    }

    def __init__(
        self,
        instance_id: int = 0,
        *,
        network_bearer: int = NetworkBearer.ETHERNET,
        available_bearers: Sequence[int] | None = None,
        radio_signal_strength: int = 0,
        link_quality: int | None = None,
        ip_addresses: Sequence[str] = (),
        router_ip_addresses: Sequence[str] | None = None,
        link_utilization: int | None = None,
        apn: Sequence[str] | None = None,
        cell_id: int | None = None,
        smnc: int | None = None,
        smcc: int | None = None,
        signal_snr: int | None = None,
        lac: int | None = None,
        coverage_enhancement_level: int | None = None,
    ) -> None:
        given: dict[str, Any] = {
            "network_bearer": int(network_bearer),
            "available_bearers": available_bearers if available_bearers is not None else [network_bearer],
            "radio_signal_strength": radio_signal_strength,
            "link_quality": link_quality,
            "ip_addresses": ip_addresses,
            "router_ip_addresses": router_ip_addresses,
            "link_utilization": link_utilization,
            "apn": apn,
            "cell_id": cell_id,
            "smnc": smnc,
            "smcc": smcc,
            "signal_snr": signal_snr,
            "lac": lac,
            "coverage_enhancement_level": coverage_enhancement_level,
        }
        values = {self.NAMES[name]: _plain(v) for name, v in given.items() if v is not None}
        super().__init__(instance_id, values)

    def update(self, **changes: Any) -> None:
        """Change several resources by name (the constructor's keywords); None removes an optional one.

        Every value is checked before any is stored; each change notifies observers.
        """
        unknown = sorted(set(changes) - set(self.NAMES))
        if unknown:
            raise TypeError(f"unknown connectivity resources: {', '.join(unknown)}")
        checked: dict[int, Any] = {}
        for name, value in changes.items():
            rid = self.NAMES[name]
            if value is None:
                if self.resource_definition(rid).mandatory:
                    raise ValueError(f"{name} is mandatory: it cannot be removed")
                checked[rid] = None
            else:
                checked[rid] = self._checked(rid, _plain(value))
        for rid, value in checked.items():
            if value is None:
                self.remove(rid)
            else:
                self.set(rid, value)

    @property
    def network_bearer(self) -> int:
        return int(self.get(self.NETWORK_BEARER, 0))

    @property
    def radio_signal_strength(self) -> int:
        return int(self.get(self.RADIO_SIGNAL_STRENGTH, 0))

    @property
    def ip_addresses(self) -> list[str]:
        return list((self.get(self.IP_ADDRESSES) or {}).values())


def _plain(value: Any) -> Any:
    """Lists (multiple resources) and IntEnum members as the plain values the model checks."""
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, list | tuple):
        return [int(v) if isinstance(v, IntEnum) else v for v in value]
    return value
