"""``lwm2m client`` as a user runs it: a subprocess device against our server in the test's process."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path as FsPath

import pytest
from click.testing import CliRunner
from tests.helpers.cli import line_with, lwm2m_process
from tests.helpers.ports import free_udp_port
from tests.helpers.server import next_event

from lwm2m.cli import main
from lwm2m.cli.client_cmd import profiles, server_accounts
from lwm2m.client import Client
from lwm2m.client.core import Device, Security, ServerAccount
from lwm2m.coap.numbers import Code
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import OscoreSecrets, SecurityInfo


def _mandatory_readable(object_id: int) -> set[int]:
    definition = load_catalogue().get(object_id)
    assert definition is not None
    return {r.id for r in definition.resources.values() if r.mandatory and r.operations.readable}


async def test_client_registers_is_read_shows_the_request_and_deregisters_on_sigint() -> None:
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        proc = await lwm2m_process(
            "client",
            "--server",
            f"coap://127.0.0.1:{server.port}",
            "--endpoint",
            "cli-dev",
            "--lifetime",
            "60",
            "--lwm2m-version",
            "1.1",
            env={"NO_COLOR": "1"},
        )
        assert proc.stdout is not None and proc.stderr is not None
        seen: list[str] = []
        try:
            registration = (await next_event(events, ClientRegistered)).registration
            assert (registration.endpoint, registration.lifetime) == ("cli-dev", 60)
            assert registration.lwm2m_version == "1.1"
            assert {3, 3303} <= set(registration.object_ids)
            await line_with(proc.stdout, f"registered at {registration.location}", seen)

            answer = await server.read("cli-dev", "/3303/0/5700", timeout=5)
            assert answer.code == Code.CONTENT
            assert answer.records == (Record(Path.parse("/3303/0/5700"), 21.5),)
            line = await line_with(proc.stdout, "/3303/0/5700", seen)
            assert "GET /3303/0/5700" in line and "Read" in line and "2.05 Content" in line, line

            # The built-in device is the core Device: every mandatory readable resource of object 3
            # in the catalogue (Error Code, Supported Binding, ...) and Current Time answer.
            device = await server.read("cli-dev", "/3/0", timeout=5)
            assert device.code == Code.CONTENT
            got = {r.path.ids[2] for r in device.records}
            assert _mandatory_readable(3) <= got, got
            assert {0, 1, 2, 3, 13} <= got, got

            missing = await server.read("cli-dev", "/3303/9", timeout=5)
            assert missing.code == Code.NOT_FOUND
            line = await line_with(proc.stdout, "/3303/9", seen)
            assert "4.04 Not Found" in line, line

            proc.send_signal(signal.SIGINT)
            deregistered = await next_event(events, ClientDeregistered)
            assert deregistered.registration.endpoint == "cli-dev"
            async with asyncio.timeout(10):
                rest, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            out = "".join(seen) + rest.decode()
            assert "de-registering" in out and "stopped" in out, out
            assert await server.registrations() == []
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_client_keeps_retrying_while_no_server_answers_and_stops_on_sigterm() -> None:
    port = free_udp_port()  # nothing listens there
    proc = await lwm2m_process(
        "client",
        "--server",
        f"coap://127.0.0.1:{port}",
        "--endpoint",
        "lonely",
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        await line_with(proc.stdout, "registering with coap://127.0.0.1", seen)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            rest, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "stopped" in rest.decode()
        assert "de-registering" not in rest.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--server", "http://127.0.0.1:5"], "--server http://127.0.0.1:5"),
        (["--server", "coap://127.0.0.1:99999"], "--server coap://127.0.0.1:99999"),
        (["--server", "coaps://127.0.0.1:5"], "--server coaps://127.0.0.1:5"),
        (["--endpoint", " "], "--endpoint"),
        (["--profile", "toaster"], "--profile toaster"),
        (["--lifetime", "0"], "--lifetime 0"),
        (["--lifetime", "soon"], "--lifetime soon"),
        (["--lwm2m-version", "2.0"], "--lwm2m-version 2.0"),
        (["--port", "70000"], "--port 70000"),
    ],
)
def test_bad_option_values_get_a_one_line_error(args: list[str], named: str) -> None:
    base = {"--server": "coap://127.0.0.1:1", "--endpoint": "dev"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["client", *(x for k, v in {**base, **given}.items() for x in (k, v))]
    result = CliRunner().invoke(main, argv, prog_name="lwm2m")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("lwm2m client: error: ") and named in result.stderr, result.stderr


def test_the_default_profile_and_the_simulator_profiles_are_offered() -> None:
    known = profiles()
    default = known["default"](endpoint="dev-7")
    assert {inst.definition.id for inst in default} == {3, 3303}
    assert default[0].get(2) == "dev-7"  # the serial number
    simulator = pytest.importorskip("lwm2m.simulator.profiles")
    assert set(simulator.PROFILES) <= set(known)
    for name in simulator.PROFILES:
        objects = known[name](endpoint="dev-7")
        assert 3 in {inst.definition.id for inst in objects}, name


@pytest.mark.parametrize("name", list(profiles()))
def test_every_profile_builds_its_core_objects_with_their_mandatory_resources(name: str) -> None:
    objects = list(profiles()[name](endpoint="dev-7"))
    client = Client("dev-7", "coap://127.0.0.1:1", objects)  # adds the server account
    catalogue = load_catalogue()
    for object_id, core in ((0, Security), (1, ServerAccount), (3, Device)):
        instances = client.tree.instances(object_id)
        assert instances, (name, object_id)
        definition = catalogue.get(object_id)
        assert definition is not None
        for inst in instances:
            assert isinstance(inst, core), (name, object_id, type(inst))
            for r in definition.resources.values():
                if r.mandatory:
                    assert inst.has_resource(r.id), (name, f"/{object_id}/{inst.id}/{r.id} {r.name}")
                if r.mandatory and r.operations.readable:
                    inst.read(r.id)  # answers, no 4.04


async def test_client_registers_with_every_server_given() -> None:
    async with Server(ServerConfig(port=0)) as first, Server(ServerConfig(port=0)) as second:
        events1, events2 = first.events(), second.events()
        proc = await lwm2m_process(
            "client",
            "--server",
            f"coap://127.0.0.1:{first.port}",
            "--server",
            f"7=coap://127.0.0.1:{second.port}",
            "--endpoint",
            "cli-two",
            "--lifetime",
            "60",
            env={"NO_COLOR": "1"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            reg1 = (await next_event(events1, ClientRegistered)).registration
            reg2 = (await next_event(events2, ClientRegistered)).registration
            assert reg1.endpoint == reg2.endpoint == "cli-two"
            await line_with(proc.stdout, f"registered with server 7 (coap://127.0.0.1:{second.port})", seen)
            # Each server reads its own account: Short Server IDs 101 (the default) and 7 (given).
            own1 = await first.read("cli-two", "/1/0/0", timeout=5)
            own2 = await second.read("cli-two", "/1/1/0", timeout=5)
            assert (own1.records[0].value, own2.records[0].value) == (101, 7)
            # The first server owns the device; the second may read and write it but not delete.
            assert (await second.read("cli-two", "/3303/0/5700", timeout=5)).code == Code.CONTENT
            assert (await second.read("cli-two", "/1/0/0", timeout=5)).code == Code.UNAUTHORIZED
            assert (await second.delete("cli-two", "/3303/0", timeout=5)).code == Code.UNAUTHORIZED
            line = await line_with(proc.stdout, "DELETE /3303/0", seen)
            assert "4.01 Unauthorized" in line, line
            assert (await first.delete("cli-two", "/3303/0", timeout=5)).code == Code.DELETED

            proc.send_signal(signal.SIGINT)
            assert (await next_event(events1, ClientDeregistered)).registration.endpoint == "cli-two"
            assert (await next_event(events2, ClientDeregistered)).registration.endpoint == "cli-two"
            async with asyncio.timeout(10):
                _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_server_options_give_short_server_ids() -> None:
    assert server_accounts(["coap://a", "101=coap://b", "coap://c"]) == [
        (102, "coap://a"),
        (101, "coap://b"),
        (103, "coap://c"),
    ]
    assert server_accounts(["coap://x:1"]) == [(101, "coap://x:1")]


@pytest.mark.parametrize(
    ("servers", "named"),
    [
        (["0=coap://127.0.0.1:1"], "--server 0=coap://127.0.0.1:1"),
        (["abc=coap://127.0.0.1:1"], "--server abc=coap://127.0.0.1:1"),
        (["5=coap://127.0.0.1:1", "5=coap://127.0.0.1:2"], "Short Server ID 5 is given twice"),
        (["5=http://127.0.0.1:1"], "--server 5=http://127.0.0.1:1"),
    ],
)
def test_bad_server_options_get_a_one_line_error(servers: list[str], named: str) -> None:
    argv = ["client", "--endpoint", "dev", *(x for s in servers for x in ("--server", s))]
    result = CliRunner().invoke(main, argv, prog_name="lwm2m")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr, result.stderr


async def test_client_registers_over_oscore(tmp_path: FsPath) -> None:
    secret = "0102030405060708090a0b0c0d0e0f10"
    async with Server(ServerConfig(port=0)) as server:
        oscore = OscoreSecrets(bytes.fromhex(secret), b"\x01", b"\x02")
        await server.security.put(SecurityInfo("cli-osc", oscore=oscore))
        events = server.events()
        proc = await lwm2m_process(
            "client",
            "--server",
            f"coap://127.0.0.1:{server.port}",
            "--endpoint",
            "cli-osc",
            "--oscore-sender-id",
            "01",
            "--oscore-recipient-id",
            "02",
            "--oscore-sequence-file",
            str(tmp_path / "seq.json"),
            env={"NO_COLOR": "1", "LWM2M_OSCORE_SECRET": secret},
        )
        try:
            registration = (await next_event(events, ClientRegistered)).registration
            assert registration.endpoint == "cli-osc"
            answer = await server.read("cli-osc", "/3303/0/5700", timeout=5)
            assert answer.code == Code.CONTENT
            assert json.loads((tmp_path / "seq.json").read_text())["/21/0"] > 0  # its range, stored
        finally:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["--oscore-master-secret", "zz", "--oscore-sender-id", "01", "--oscore-recipient-id", "02"],
            "--oscore-master-secret:",
        ),
        (
            ["--oscore-master-secret", "00", "--oscore-sender-id", "0g", "--oscore-recipient-id", "02"],
            "--oscore-sender-id '0g'",
        ),
        (["--oscore-master-secret", "00", "--oscore-sender-id", "01"], "--oscore-recipient-id"),
        (
            ["--oscore-master-secret", "00", "--oscore-sender-id", "01", "--oscore-recipient-id", "01"],
            "differ",
        ),
        (["--oscore-sender-id", "01"], "--oscore-master-secret"),
        (
            [
                "--oscore-master-secret",
                "00",
                "--oscore-sender-id",
                "01",
                "--oscore-recipient-id",
                "02",
                "--server",
                "coaps://127.0.0.1:1",
                "--psk-identity",
                "a",
                "--psk-key",
                "00",
            ],
            "coap:// --server",
        ),
    ],
)
def test_bad_oscore_options_get_a_one_line_error(args: list[str], named: str) -> None:
    base = {"--server": "coap://127.0.0.1:1", "--endpoint": "dev"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["client", *(x for k, v in {**base, **given}.items() for x in (k, v))]
    result = CliRunner().invoke(main, argv, prog_name="lwm2m")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr, result.stderr


@pytest.mark.parametrize("uri", ["coap://127.0.0.1:1", "coap+tcp://127.0.0.1:1"])
def test_oscore_options_go_to_the_first_coap_or_coap_tcp_account(uri: str) -> None:
    # RFC 8613 over plain CoAP, over UDP or TCP: /0/x/17 links the OSCORE instance /21/0.
    from lwm2m.cli.client_cmd import account_objects, oscore_parameters
    from lwm2m.client.core import Oscore
    from lwm2m.model.value import ObjLink

    oscore = oscore_parameters("00112233", "", "01", "02", None)
    objects = account_objects([(1, uri), (2, "coap://127.0.0.1:3")], {}, 300, oscore=oscore)
    securities = [o for o in objects if isinstance(o, Security)]
    assert [s.get(Security.OSCORE) for s in securities] == [ObjLink(21, 0), None]
    assert [o.id for o in objects if isinstance(o, Oscore)] == [0]
