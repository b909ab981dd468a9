"""The URI a campaign writes to /5/0/1 (``lwm2m.fleet.campaigns.pull_uri``): CoAP over the
transport the device registered on, HTTP(S) for a device that pulls only over HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from starlette.applications import Starlette
from tests.helpers.events import next_event
from tests.helpers.pki import KEY
from tests.helpers.web import served

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.device import Device
from lwm2m.client.core.firmware import FirmwareUpdate, Protocol
from lwm2m.errors import CampaignStateError
from lwm2m.fleet.campaigns import Campaigns, CampaignSpec, Retries, pull_uri
from lwm2m.fleet.packages import Packages
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import PskCredentials
from lwm2m.web.app import create_app, pull_over_http

URIS = {
    "coap": "coap://h:5683/fw/p/a@1",
    "coaps": "coaps://h:5684/fw/p/a@1",
    "http": "http://h:8080/fw/p/a@1",
}


@pytest.mark.parametrize(
    ("supported", "secure", "expected"),
    [
        (None, False, "coap"),
        (None, True, "coaps"),
        ([0, 1], False, "coap"),
        ([0, 1], True, "coaps"),
        ([0, 1, 2, 3], True, "coaps"),
        ([0, 2], False, "coap"),
        (1, False, "coaps"),
        (2, False, "http"),
        ([2, 3], False, "http"),
    ],
)
def test_the_device_pulls_over_its_own_transport(supported: object, secure: bool, expected: str) -> None:
    assert pull_uri(URIS, supported, secure=secure) == URIS[expected]


def test_a_dtls_device_pulls_over_https_when_it_names_no_coaps() -> None:
    https = {**URIS, "http": "https://h:8443/fw/p/a@1"}
    assert pull_uri(https, [0, 2, 3], secure=True) == https["http"]
    assert pull_uri(https, 3, secure=False) == https["http"]


def test_no_uri_of_the_devices_kind_is_refused() -> None:
    with pytest.raises(CampaignStateError, match="DTLS"):
        pull_uri({"coap": URIS["coap"]}, None, secure=True)
    with pytest.raises(CampaignStateError, match="DTLS"):
        pull_uri(URIS, [0, 2], secure=True)  # never in the clear
    with pytest.raises(CampaignStateError, match="http"):
        pull_uri({"coap": URIS["coap"], "coaps": URIS["coaps"]}, 2, secure=False)
    with pytest.raises(CampaignStateError):
        pull_uri(URIS, 3, secure=False)  # HTTPS only, the server's base is plain HTTP


async def test_the_app_offers_its_http_base_once_known() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        assert server.secure("nobody") is False
        app: Starlette = create_app(server, bind_host="0.0.0.0")
        campaigns: Campaigns = app.state.campaigns
        package = await Packages(server.store.firmware).add("a", "1", b"abc")
        assert set(campaigns.uris(package)) == {"coap"}
        pull_over_http(app, "http://0.0.0.0:8181")
        assert campaigns.uris(package)["http"] == f"http://127.0.0.1:8181/fw/{package.id}/a@1"


def pull(package_id: str) -> CampaignSpec:
    return CampaignSpec(package_id, delivery="pull", retries=Retries(0), poll_interval=0.2, step_timeout=10)


async def test_a_device_that_pulls_only_over_http_pulls_from_the_apps_base() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app: Starlette = create_app(server)
        package = await app.state.packages.add("lamp", "2.0", b"FW" + bytes(2000))
        device = Device(firmware_version="1.0")
        firmware = FirmwareUpdate(device=device, protocols=[Protocol.HTTP], verify=lambda p: True)
        client = Client("http-only", server.uri, objects=[device, firmware], config=ClientConfig(lifetime=30))
        async with served(app) as base, client:
            pull_over_http(app, base)
            await client.wait_registered(5)
            assert server.secure("http-only") is False
            campaigns: Campaigns = app.state.campaigns
            campaign = await campaigns.create(pull(package.id))
            await asyncio.wait_for(campaigns.wait(campaign.id), 20)
            assert campaign.counts() == {"succeeded": 1}, campaign.detail()
            steps = [what for _, what in campaign.devices["http-only"].steps]
            assert f"pull {base}/fw/{package.id}/lamp@2.0" in steps


async def test_a_dtls_device_is_never_given_a_plain_coap_uri() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dtls-fw", "dtls-fw-id", KEY))
        app: Starlette = create_app(server)
        package = await app.state.packages.add("lamp", "2.0", b"FW" + bytes(200))
        events = server.events()
        assert server.coaps_uri is not None
        firmware = FirmwareUpdate(verify=lambda p: True)  # pulls over CoAP, HTTP, HTTPS: no CoAPS
        config = ClientConfig(psk=PskCredentials("dtls-fw-id", KEY), lifetime=30)
        async with Client("dtls-fw", server.coaps_uri, objects=[firmware], config=config):
            await next_event(events, ClientRegistered)
            assert server.secure("dtls-fw") is True
            campaigns: Campaigns = app.state.campaigns
            assert set(campaigns.uris(package)) == {"coap", "coaps"}
            campaign = await campaigns.create(pull(package.id))
            await asyncio.wait_for(campaigns.wait(campaign.id), 20)
            assert campaign.counts() == {"failed": 1}, campaign.detail()
            steps = " ".join(what for _, what in campaign.devices["dtls-fw"].steps)
            assert "no URI for a device on DTLS" in steps and "pull coap://" not in steps
            assert firmware.get(FirmwareUpdate.PACKAGE_URI) == ""


async def test_auto_delivery_pushes_to_a_dtls_device_that_pulls_over_nothing_secure() -> None:
    """Delivery Method /5/0/9 says both (E.6): a DTLS device whose pull protocols offer nothing
    secure gets the package by push over its session rather than a plain URI."""
    async with Server(ServerConfig(host="127.0.0.1", port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dtls-fw", "dtls-fw-id", KEY))
        app: Starlette = create_app(server)
        package = await app.state.packages.add("lamp", "2.0", b"FW" + bytes(200))
        events = server.events()
        assert server.coaps_uri is not None
        firmware = FirmwareUpdate(verify=lambda p: True)
        config = ClientConfig(psk=PskCredentials("dtls-fw-id", KEY), lifetime=30)
        async with Client("dtls-fw", server.coaps_uri, objects=[firmware], config=config):
            await next_event(events, ClientRegistered)
            campaigns: Campaigns = app.state.campaigns
            spec = replace(pull(package.id), delivery="auto")
            campaign = await campaigns.create(spec)
            await asyncio.wait_for(campaigns.wait(campaign.id), 20)
            assert campaign.counts() == {"succeeded": 1}, campaign.detail()
            progress = campaign.devices["dtls-fw"]
            assert progress.delivery == "push"
            steps = " ".join(what for _, what in progress.steps)
            assert "push: no URI for a device on DTLS" in steps and "pull coap://" not in steps
            assert firmware.get(FirmwareUpdate.PACKAGE_URI) == ""
