"""The device's bootstrap server account survives every bootstrap (LwM2M-TS-Core 1.2 §6.1.7.3,
§6.1.7.6, §6.1.7.7): a Bootstrap-Discover finds it, nothing is written over it or deleted, the
configurations that would do it are refused with the reason, and a Bootstrap-Pack keeps clear of
it. Against a scripted device on aiocoap, and against our Client with its bootstrap account
at /0/1 or /0/7, re-bootstrapping through the Bootstrap-Request Trigger /1/x/9."""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap
import pytest
from tests.helpers.aio_device import RecordingDevice, aio_device, bootstrap_request
from tests.helpers.bootstrap import senml
from tests.helpers.events import next_event

from lwm2m.bootstrap import BootstrapConfig, BootstrapFailed, BootstrapFinished, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.security import Security
from lwm2m.coap.numbers import Code
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.role import Server

SERVERS = [
    {"uri": "coap://one.example", "shortServerId": 101},
    {"uri": "coap://two.example", "shortServerId": 102, "binding": "UQ"},
]


def device_with_account_at(account: int) -> RecordingDevice:
    """A 1.1 device holding its bootstrap account at /0/``account`` and an old server 5 account."""
    old = 0 if account != 0 else 2
    links = f'</>;lwm2m=1.1,</0/{old}>;ssid=5;uri="coap://old.example",</0/{account}>,</1/0>;ssid=5,</3/0>'
    return RecordingDevice(discover=links.encode())


def puts_and_deletes(device: RecordingDevice, object_id: int) -> list[str]:
    return [
        s.line for s in device.seen if s.method in ("PUT", "DELETE") and s.path.startswith(f"/{object_id}/")
    ]


@pytest.mark.parametrize("account", [1, 7])
@pytest.mark.parametrize("deletes", [[], ["/0", "/1"], ["/"]])
async def test_write_and_finish_never_touch_the_bootstrap_account(account: int, deletes: list[str]) -> None:
    config = BootstrapConfig.from_json({"servers": SERVERS, "deletePaths": deletes})
    assert config.bootstrap_discover  # the default
    async with (
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
        aio_device(device_with_account_at(account)) as (device, ctx),
    ):
        await bs.set_config("dev", config)
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=dev&pct=112")
        finished = await next_event(events, BootstrapFinished)
        assert device.lines()[0] == "GET /" and device.seen[0].accept == CF.LINK
        touched = puts_and_deletes(device, 0)
        assert not any(line.endswith(f" /0/{account}") for line in touched)
        written = [line.split()[1] for line in touched if line.startswith("PUT")]
        # The old account (server 5) at /0/0 is written over only when it was deleted first.
        expected = {1: ["/0/2", "/0/3"], 7: ["/0/1", "/0/2"]}[account] if not deletes else None
        if expected is None:
            expected = {1: ["/0/0", "/0/2"], 7: ["/0/0", "/0/1"]}[account]
        assert written == expected
        assert senml(device.find(f"PUT {written[0]}").payload)[f"{written[0]}/1"] is False
        assert f"bootstrap server account: /0/{account} (kept)" in finished.session.steps
        assert device.lines()[-1] == "POST /bs"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (
            {"servers": [{**SERVERS[0], "securityInstanceId": 7}]},
            "servers[0].securityInstanceId: /0/7 is the",
        ),
        ({"servers": SERVERS, "deletePaths": ["/0/7"]}, "deletePaths: /0/7 is the device's bootstrap server"),
    ],
)
async def test_a_configuration_that_would_lose_the_bootstrap_account_fails_before_any_change(
    config: dict[str, Any], words: str
) -> None:
    async with (
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
        aio_device(device_with_account_at(7)) as (device, ctx),
    ):
        await bs.set_config("dev", BootstrapConfig.from_json(config))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=dev")
        failed = await next_event(events, BootstrapFailed)
        assert words in failed.reason and ("§6.1.7.6" in failed.reason or "/1/x/9" in failed.reason)
        assert device.lines() == ["GET /"]  # nothing written, deleted, nor finished


async def test_a_device_that_refuses_discover_fails_the_session_with_a_hint() -> None:
    device = RecordingDevice()
    device.answers["GET /"] = aiocoap.Message(code=aiocoap.METHOD_NOT_ALLOWED)
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device(device) as (device, ctx):
        await bs.set_config("dev", BootstrapConfig.from_json({"servers": SERVERS}))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=dev")
        failed = await next_event(events, BootstrapFailed)
        assert "Bootstrap-Discover / -> 4.05" in failed.session.steps[0]
        assert "bootstrapDiscover false" in failed.reason
        assert device.lines() == ["GET /"]


@pytest.mark.parametrize("account", [1, 7])
async def test_a_second_bootstrap_writes_over_the_accounts_the_first_left(account: int) -> None:
    """A re-bootstrap (the device asked again, e.g. after /1/x/9): the Discover now lists the
    accounts the first session wrote; each server's account is written where it is."""
    config = BootstrapConfig.from_json({"servers": SERVERS})
    async with (
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
        aio_device(device_with_account_at(account)) as (device, ctx),
    ):
        await bs.set_config("again", config)
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=again")
        await next_event(events, BootstrapFinished)
        first = [s.line for s in device.seen if s.method == "PUT"]
        security = [line.split()[1] for line in first if line.startswith("PUT /0/")]
        server = [line.split()[1] for line in first if line.startswith("PUT /1/")]
        links = [f"</0/{account}>"]
        links += [f'<{p}>;ssid={ssid};uri="coap://x"' for p, ssid in zip(security, (101, 102), strict=True)]
        links += [f"<{p}>;ssid={ssid}" for p, ssid in zip(server, (101, 102), strict=True)]
        device.discover = ("</>;lwm2m=1.1," + ",".join(links)).encode()
        device.seen.clear()
        await bootstrap_request(ctx, bs.port, "ep=again")
        await next_event(events, BootstrapFinished)
        assert [s.line for s in device.seen if s.method in ("PUT", "DELETE")] == first
        assert not any(s.path == f"/0/{account}" for s in device.seen)


async def _pack(ctx: Any, port: int, ep: str) -> dict[str, Any]:
    request = aiocoap.Message(
        code=aiocoap.GET, uri=f"coap://127.0.0.1:{port}/bspack?ep={ep}", accept=int(CF.SENML_CBOR)
    )
    answer = await asyncio.wait_for(ctx.request(request).response, 5)
    assert answer.code == aiocoap.CONTENT, answer.payload
    return senml(answer.payload)


def security_ids(values: dict[str, Any]) -> set[int]:
    return {int(name.split("/")[2]) for name in values if name.startswith("/0/")}


@pytest.mark.parametrize("account", [1, 7])
async def test_a_pack_keeps_clear_of_the_account_a_previous_discover_found(account: int) -> None:
    async with (
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
        aio_device(device_with_account_at(account)) as (_, ctx),
    ):
        await bs.set_config("dev", BootstrapConfig.from_json({"servers": SERVERS}))
        events = bs.events()
        await bootstrap_request(ctx, bs.port, "ep=dev")
        await next_event(events, BootstrapFinished)
        layout = bs.layout_of("dev")
        assert layout is not None and layout.bootstrap_accounts == {account}
        values = await _pack(ctx, bs.port, "dev")
        assert account not in security_ids(values)
        # The same Security instances as the session wrote: server 101 and 102 stay where they are.
        assert {values[f"/0/{i}/10"] for i in security_ids(values)} == {101, 102}
        assert security_ids(values) == {i for i, ssid in layout.security.items() if ssid in (101, 102)}


@pytest.mark.parametrize("account", [1, 7])
async def test_a_pack_keeps_clear_of_the_account_the_configuration_names(account: int) -> None:
    config = BootstrapConfig.from_json({"servers": SERVERS, "bootstrapAccountId": account})
    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs, aio_device() as (device, ctx):
        await bs.set_config("factory", config)
        values = await _pack(ctx, bs.port, "factory")
        assert account not in security_ids(values) and len(security_ids(values)) == 2
        assert device.seen == []


# --- our own client, its factory bootstrap account at a non-zero instance ------------------------


def _plain(server: Server, ssid: int, **extra: Any) -> BootstrapConfig:
    return BootstrapConfig.from_json(
        {"servers": [{"uri": server.uri, "shortServerId": ssid, "lifetime": 120}], **extra}
    )


def _accounts(client: Client) -> dict[int, tuple[bool, Any]]:
    return {
        s.id: (bool(s.get(Security.BOOTSTRAP)), s.get(Security.SHORT_SERVER_ID))
        for s in client.tree.instances(0)
    }


@pytest.mark.parametrize("account", [1, 7])
@pytest.mark.parametrize("pack", [False, True])
async def test_our_client_keeps_its_bootstrap_account_and_bootstraps_again_through_the_trigger(
    account: int, pack: bool
) -> None:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as first,
        Server(ServerConfig(host="127.0.0.1", port=0)) as second,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        await bs.set_config("factory", _plain(first, 101, deletePaths=["/0", "/1"]))
        bs_events, first_events, second_events = bs.events(), first.events(), second.events()
        factory = Security(account, uri=bs.uri, bootstrap=True, short_server_id=None)
        temperature = ObjectInstance(0, {5700: 20.0}, object_id=3303)
        client = Client("factory", objects=[factory, temperature], config=ClientConfig(bootstrap_pack=pack))
        async with client:
            await next_event(first_events, ClientRegistered)
            await next_event(bs_events, BootstrapFinished)
            accounts = _accounts(client)
            assert accounts[account] == (True, None)  # still the bootstrap account
            assert sorted(v for v in accounts.values() if not v[0]) == [(False, 101)]
            # The server executes the Bootstrap-Request Trigger (§E.2, /1/x/9): a new bootstrap
            # through the account kept, which now hands out the second server.
            await bs.set_config("factory", _plain(second, 202, deletePaths=["/"]))
            server_instance = client.tree.instances(1)[0].id
            assert (await first.execute("factory", f"/1/{server_instance}/9")).code == Code.CHANGED
            await next_event(first_events, ClientDeregistered)
            await next_event(bs_events, BootstrapFinished)
            registration = (await next_event(second_events, ClientRegistered)).registration
            assert registration.endpoint == "factory" and client.bootstraps == 2
            accounts = _accounts(client)
            assert accounts[account] == (True, None)
            if pack:  # a pack carries no Bootstrap-Delete: the old Security instance may stay
                assert (False, 202) in accounts.values()
            else:
                assert sorted(v for v in accounts.values() if not v[0]) == [(False, 202)]
            assert client.bootstrapper.account() is client.tree.instance(0, account)
