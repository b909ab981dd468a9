"""Connectivity Monitoring (object 4): values read through our server, device-side updates notified."""

from __future__ import annotations

import pytest
from tests.helpers.client_core import record, running, values

from lwm2m.client.core.connectivity import ConnectivityMonitoring, NetworkBearer
from lwm2m.coap.numbers import Code


def lte() -> ConnectivityMonitoring:
    return ConnectivityMonitoring(
        network_bearer=NetworkBearer.LTE_FDD,
        available_bearers=[NetworkBearer.LTE_FDD, NetworkBearer.NB_IOT],
        radio_signal_strength=-92,
        link_quality=-9,
        ip_addresses=["10.0.0.7", "fd00::7"],
        router_ip_addresses=["10.0.0.1"],
        apn=["iot.example"],
        cell_id=0x1A2B3C,
        smnc=1,
        smcc=208,
    )


async def test_read_connectivity_instance() -> None:
    async with running(lte()) as (server, _):
        got = values(await server.read("core-test", "/4/0", format="senml-json"))
    assert got == {
        "/4/0/0": 6,
        "/4/0/1/0": 6,
        "/4/0/1/1": 7,
        "/4/0/2": -92,
        "/4/0/3": -9,
        "/4/0/4/0": "10.0.0.7",
        "/4/0/4/1": "fd00::7",
        "/4/0/5/0": "10.0.0.1",
        "/4/0/7/0": "iot.example",
        "/4/0/8": 0x1A2B3C,
        "/4/0/9": 1,
        "/4/0/10": 208,
    }


async def test_update_notifies_and_the_server_cannot_write() -> None:
    conn = lte()
    async with running(conn) as (server, _):
        observation = await server.observe("core-test", "/4/0/2")
        conn.update(radio_signal_strength=-101, link_quality=-12)
        assert values(await observation.next(2)) == {"/4/0/2": -101}
        conn.update(ip_addresses=["192.0.2.5"], link_quality=None)
        got = values(await server.read("core-test", "/4/0"))
        assert got["/4/0/4/0"] == "192.0.2.5" and "/4/0/4/1" not in got
        assert "/4/0/3" not in got  # link quality removed
        refused = await server.write("core-test", "/4/0/2", [record("/4/0/2", 0)])
        assert refused.code == Code.METHOD_NOT_ALLOWED
    assert conn.radio_signal_strength == -101
    assert conn.ip_addresses == ["192.0.2.5"]


def test_update_checks_everything_before_changing_anything() -> None:
    conn = lte()
    with pytest.raises(TypeError, match="unknown connectivity resources: bogus"):
        conn.update(bogus=1)
    with pytest.raises(ValueError, match="mandatory"):
        conn.update(network_bearer=None)
    with pytest.raises(Exception, match="4/0/2"):
        conn.update(cell_id=7, radio_signal_strength="strong")
    assert conn.get(ConnectivityMonitoring.CELL_ID) == 0x1A2B3C  # untouched


def test_defaults_are_a_wired_link() -> None:
    conn = ConnectivityMonitoring()
    assert conn.network_bearer == NetworkBearer.ETHERNET
    assert conn.get(ConnectivityMonitoring.AVAILABLE_BEARERS) == {0: 41}
    assert conn.get(ConnectivityMonitoring.IP_ADDRESSES) == {}
