"""The MQTT export against Debian's ``mosquitto`` (tests/helpers/mosquitto.py): our client device
registers, notifies, sends and leaves, and the events arrive on their topics with the JSON of
the event stream; commands (read, write, execute, observe, cancel) come back on the reply topic
with their id; bad commands get error replies and the node goes on; the broker restarted,
publishing resumes; a broker away fills a bounded queue whose oldest messages are dropped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.helpers.cli import interrupt, line_with, lwm2m_process
from tests.helpers.client import temperature, until
from tests.helpers.events import next_event
from tests.helpers.mosquitto import Mosquitto, mosquitto
from tests.helpers.ports import free_tcp_port, free_udp_port

from lwm2m.client import Client, ObjectInstance
from lwm2m.errors import ConfigError
from lwm2m.export.mqtt import FLEET_LEVEL, MqttConfig, MqttExport, topic_level
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered, NotificationReceived, SendReceived
from lwm2m.server.role import Server
from lwm2m.storage.memory import MemoryStore
from lwm2m.web.shapes import event_view

FAST = {"reconnect_initial": 0.05, "reconnect_max": 0.2}


class Consumer:
    """A user's MQTT client: the messages of the topics it subscribed to, in arrival order."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.taken: list[tuple[str, bytes]] = []  # every message read so far, skipped or not

    async def _read(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            self.messages.put_nowait((str(message.topic), message.payload))

    async def expect(self, topic: str, timeout: float = 5.0) -> Any:
        """The data of the next message on ``topic`` (those of other topics before it are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                got, payload = await self.messages.get()
                self.taken.append((got, payload))
                if got == topic:
                    return json.loads(payload)

    async def command(self, endpoint: str, command: dict[str, Any] | bytes) -> Any:
        """Publish a command and wait for the reply with its id."""
        payload = command if isinstance(command, bytes) else json.dumps(command).encode()
        await self.client.publish(f"lwm2m/{topic_level(endpoint)}/cmd", payload, qos=1)
        want = None if isinstance(command, bytes) else command.get("id")
        while True:
            reply = await self.expect(f"lwm2m/{topic_level(endpoint)}/reply")
            if reply["id"] == want:
                return reply


@contextlib.asynccontextmanager
async def consumer(broker: Mosquitto, topic: str = "lwm2m/#") -> AsyncIterator[Consumer]:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(topic, qos=1)
        user = Consumer(client)
        reader = asyncio.create_task(user._read())
        try:
            yield user
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


@contextlib.asynccontextmanager
async def exported(broker: Mosquitto, **options: Any) -> AsyncIterator[tuple[Server, MqttExport]]:
    async with Server(ServerConfig(port=0)) as server:
        export = MqttExport(server, MqttConfig.from_url(broker.url, **{**FAST, **options}))
        async with export:
            await until(lambda: export.connected)
            yield server, export


class Device(ObjectInstance):
    """The Device object, recording what the server executes."""

    object_id = 3

    def __init__(self) -> None:
        super().__init__(0, {0: "mqtt-test", 16: "U"})
        self.executed: list[tuple[int, str]] = []

    def execute(self, resource_id: int, arguments: str) -> None:
        self.executed.append((resource_id, arguments))


async def test_events_arrive_on_their_topics_as_the_event_stream_has_them(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        async with consumer(broker) as user, exported(broker) as (server, export):
            events = server.events()
            temp = temperature()
            async with Client("mq-1", server.uri, [temp]) as client:
                await client.wait_registered(5)
                registered = await user.expect("lwm2m/mq-1/registered")
                assert registered.pop("event") == "REGISTRATION"
                assert registered.pop("receivedAt") > 0
                assert registered == event_view(await next_event(events, ClientRegistered))[1]
                assert registered["registration"]["objects"]

                await server.observe("mq-1", "/3303/0/5700")
                temp.set(5700, 23.5)
                notified = await user.expect("lwm2m/mq-1/notify/3303/0/5700")
                assert notified["event"] == "NOTIFICATION"
                assert notified["records"] == [{"path": "/3303/0/5700", "value": 23.5}]
                notified.pop("event"), notified.pop("receivedAt")
                assert notified == event_view(await next_event(events, NotificationReceived))[1]

                await client.send(["/3303/0/5700"])
                sent = await user.expect("lwm2m/mq-1/send")
                assert sent["event"] == "SEND" and sent["records"][0]["value"] == 23.5
                assert event_view(await next_event(events, SendReceived))[1]["records"] == sent["records"]

                export.publish("campaign", {"campaign": "c1", "state": "started"})
                export.publish("campaign", {"campaign": "c1", "state": "downloading"}, endpoint="mq-1")
                fleet = await user.expect(f"lwm2m/{FLEET_LEVEL}/campaign")
                assert fleet["campaign"] == "c1" and fleet["state"] == "started"
                assert (await user.expect("lwm2m/mq-1/campaign"))["state"] == "downloading"
            gone = await user.expect("lwm2m/mq-1/deregistered")
            assert gone["event"] == "DEREGISTRATION" and gone["endpoint"] == "mq-1"
            ended = await user.expect("lwm2m/mq-1/observation-ended")
            assert (ended["event"], ended["reason"]) == ("OBSERVATION_ENDED", "de-registered")
            await until(lambda: export.pending == 0)
            assert (export.published, export.dropped) == (7, 0)  # acknowledged: the seven above


async def test_commands_read_write_execute_observe_with_their_ids(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        async with consumer(broker) as user, exported(broker) as (server, _):
            sensor, device = ObjectInstance(0, {5700: 21.5, 5750: "outside"}, object_id=3303), Device()
            async with Client("mq-2", server.uri, [device, sensor]) as client:
                await client.wait_registered(5)
                read = await user.command("mq-2", {"id": "r1", "op": "read", "path": "/3303/0/5700"})
                assert read["ok"] is True
                assert read["result"]["code"] == "2.05"
                assert read["result"]["records"] == [{"path": "/3303/0/5700", "value": 21.5}]

                write = {"id": 7, "op": "write", "path": "/3303/0/5750", "value": "greenhouse"}
                assert (await user.command("mq-2", write))["result"]["code"] == "2.04"
                assert sensor.get(5750) == "greenhouse"

                run = {"id": "x1", "op": "execute", "path": "/3/0/4", "args": "0='now'"}
                assert (await user.command("mq-2", run))["result"]["code"] == "2.04"
                assert device.executed == [(4, "0='now'")]

                observe = {"id": "o1", "op": "observe", "path": "/3303/0/5700"}
                observed = await user.command("mq-2", observe)
                assert observed["ok"] and observed["result"]["code"] == "2.05" and observed["result"]["token"]
                sensor.set(5700, 30.0)
                assert (await user.expect("lwm2m/mq-2/notify/3303/0/5700"))["records"][0]["value"] == 30.0
                cancel = {"id": "c1", "op": "cancel", "path": "/3303/0/5700"}
                assert (await user.command("mq-2", cancel))["result"] == {
                    "cancelled": "/3303/0/5700",
                    "active": False,
                }
                again = await user.command("mq-2", {**cancel, "id": "c2"})
                assert again["ok"] is False and again["error"]["type"] == "MqttCommandError"
                # A device's refusal is its answer, not an error of the command.
                missing = await user.command("mq-2", {"id": "r2", "op": "read", "path": "/3303/0/9999"})
                assert missing["ok"] is True and missing["result"]["code"] == "4.04"


async def test_bad_commands_get_error_replies_and_the_node_goes_on(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        async with consumer(broker) as user, exported(broker) as (server, export):
            async with Client("mq-3", server.uri, [temperature()]) as client:
                await client.wait_registered(5)
                not_json = await user.command("mq-3", b"{read /3/0")
                assert not_json == {"id": None, "ok": False, "error": not_json["error"]}
                assert not_json["error"]["type"] == "MqttCommandError"
                unknown = await user.command("mq-3", {"id": "b1", "op": "reboot", "path": "/3/0"})
                assert unknown["ok"] is False and "reboot" in unknown["error"]["message"]
                no_path = await user.command("mq-3", {"id": "b2", "op": "read"})
                assert (
                    no_path["error"]["type"] == "MqttCommandError" and "path" in no_path["error"]["message"]
                )
                bad_path = await user.command("mq-3", {"id": "b3", "op": "read", "path": "/x/y"})
                assert bad_path["error"]["type"] == "InvalidPath"
                bad_value = {"id": "b4", "op": "write", "path": "/3303/0/5750", "value": [1, 2]}
                assert (await user.command("mq-3", bad_value))["ok"] is False
                no_id = await user.command("mq-3", {"op": "read", "path": "/3303/0/5700"})
                assert no_id["ok"] is False and '"id"' in no_id["error"]["message"]
                nobody = await user.command("nobody/here", {"id": "b5", "op": "read", "path": "/3/0"})
                assert nobody["error"]["type"] == "NotRegistered"
                late = {"id": "b6", "op": "read", "path": "/3303/0/5700", "timeout": -1}
                assert (await user.command("mq-3", late))["ok"] is False
                # Still there: a good command is answered.
                good = await user.command("mq-3", {"id": "g1", "op": "read", "path": "/3303/0/5700"})
                assert good["ok"] is True and good["result"]["records"][0]["value"] == 21.5
            assert export.connections == 1  # no command broke the connection


async def test_in_a_cluster_the_node_serving_the_device_answers_its_commands(tmp_path: Path) -> None:
    store = MemoryStore.create()  # one store, two nodes
    shared = ServerConfig(port=0, shared_store=True)
    with mosquitto(tmp_path) as broker:
        async with (
            consumer(broker) as user,
            Server(shared, store) as a,
            Server(shared, store) as b,
            MqttExport(a, MqttConfig.from_url(broker.url, **FAST)) as on_a,
            MqttExport(b, MqttConfig.from_url(broker.url, **FAST)) as on_b,
        ):
            await until(lambda: on_a.connected and on_b.connected)
            async with Client("mq-5", b.uri, [temperature()]) as client:
                await client.wait_registered(5)
                first = await user.command("mq-5", {"id": 1, "op": "read", "path": "/3303/0/5700"})
                assert first["ok"] is True
                # Another command, answered after any second answer to the first would be.
                await user.client.publish(
                    "lwm2m/mq-5/cmd", b'{"id": 2, "op": "read", "path": "/3/0/0"}', qos=1
                )
                ids = []
                while not ids or ids[-1] != 2:
                    ids.append((await user.expect("lwm2m/mq-5/reply"))["id"])
                assert ids == [2]
                assert (on_a.commands, on_b.commands) == (0, 2)


async def test_commands_turned_off_are_not_taken(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        async with consumer(broker) as user, exported(broker, commands=False) as (server, export):
            async with Client("mq-6", server.uri, [temperature()]) as client:
                await client.wait_registered(5)
                await user.expect("lwm2m/mq-6/registered")
                await user.client.publish(
                    "lwm2m/mq-6/cmd", b'{"id": 1, "op": "read", "path": "/3/0/0"}', qos=1
                )
            # The de-registration comes after the command, and no reply came before it.
            await user.expect("lwm2m/mq-6/deregistered")
            assert export.commands == 0
            assert all(topic != "lwm2m/mq-6/reply" for topic, _ in user.taken)


async def test_publishing_resumes_after_the_broker_restarts(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        async with exported(broker) as (server, export):
            events, temp = server.events(), temperature()
            async with Client("mq-4", server.uri, [temp]) as client:
                await client.wait_registered(5)
                await server.observe("mq-4", "/3303/0/5700")
                await until(lambda: export.pending == 0 and export.published >= 1)
                broker.stop()
                await until(lambda: not export.connected)
                published = export.published
                for value in (1.0, 2.0, 3.0):  # while the broker is away: kept in the queue
                    temp.set(5700, value)
                    assert (await next_event(events, NotificationReceived)).records[0].value == value
                await until(lambda: export.pending >= 3)
                broker.start()
                await until(lambda: export.connected and export.pending == 0)
                assert export.connections == 2
                assert export.published >= published + 3  # the queued ones went out
                async with consumer(broker) as user:
                    temp.set(5700, 4.0)
                    notified = await user.expect("lwm2m/mq-4/notify/3303/0/5700")
                    assert notified["records"][0]["value"] == 4.0
                    answer = await user.command("mq-4", {"id": "after", "op": "read", "path": "/3303/0/5700"})
                    assert answer["result"]["records"][0]["value"] == 4.0
            assert export.dropped == 0


async def test_a_broker_away_fills_a_bounded_queue_oldest_dropped(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, persistence=True).start()
    keeper = {"identifier": "keeper", "clean_session": False}  # the broker queues QoS 1 for it
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, **keeper) as client:  # type: ignore[arg-type]
            await client.subscribe(f"lwm2m/{FLEET_LEVEL}/#", qos=1)
        broker.stop()  # it keeps the session of "keeper" in its folder
        async with Server(ServerConfig(port=0)) as server:
            export = MqttExport(server, MqttConfig.from_url(broker.url, queue_size=3, **FAST))
            async with export:
                for n in range(5):
                    export.publish("tick", {"n": n})
                assert (export.pending, export.dropped) == (3, 2)
                await asyncio.sleep(0.3)  # attempts fail and back off; the node goes on
                assert not export.connected
                broker.start()
                await until(lambda: export.connected and export.pending == 0)
                assert (export.published, export.dropped) == (3, 2)
        async with aiomqtt.Client("127.0.0.1", broker.port, **keeper) as client:  # type: ignore[arg-type]
            got = []
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    got.append(json.loads(message.payload)["n"])
                    if len(got) == 3:
                        break
            assert got == [2, 3, 4]  # the newest three, in order: the two oldest were dropped
    finally:
        broker.stop()


class UnackingBroker:
    """A minimal MQTT 3.1.1 broker on loopback (CONNACK, SUBACK, PUBACK) that takes the
    publishes of its first connection without acknowledging them and then drops it: what a
    broker that goes away leaves behind. Later connections are acknowledged."""

    def __init__(self) -> None:
        self.connections: list[list[tuple[str, Any]]] = []  # the publishes of each connection
        self.first: asyncio.StreamWriter | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received: list[tuple[str, Any]] = []
        self.connections.append(received)
        acking = len(self.connections) > 1
        if not acking:
            self.first = writer
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                kind = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:  # the remaining length, a variable byte integer (MQTT 3.1.1 §2.2.3)
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(length)
                if kind == 0x10:  # CONNECT
                    writer.write(b"\x20\x02\x00\x00")
                elif kind == 0x82:  # SUBSCRIBE: granted QoS 1
                    writer.write(b"\x90\x03" + body[:2] + b"\x01")
                elif kind & 0xF0 == 0x30:  # PUBLISH, QoS 1: topic, packet id, payload
                    size = int.from_bytes(body[:2], "big")
                    topic, ident, payload = (
                        body[2 : 2 + size].decode(),
                        body[2 + size : 4 + size],
                        body[4 + size :],
                    )
                    received.append((topic, json.loads(payload)))
                    if acking:
                        writer.write(b"\x40\x02" + ident)
                elif kind == 0xC0:  # PINGREQ
                    writer.write(b"\xd0\x00")
                await writer.drain()


async def test_messages_unacknowledged_when_the_connection_breaks_are_published_again() -> None:
    broker = UnackingBroker()
    listener = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with Server(ServerConfig(port=0)) as server:
            export = MqttExport(server, MqttConfig(host="127.0.0.1", port=port, **FAST))
            async with export:
                await until(lambda: export.connected)
                for n in range(5):
                    export.publish("tick", {"n": n})
                await until(lambda: len(broker.connections[0]) == 5)
                assert (export.pending, export.published) == (5, 0)  # in flight, not acknowledged
                assert broker.first is not None
                broker.first.close()  # the broker goes without a PUBACK
                await until(lambda: export.connections == 2 and export.pending == 0)
                again = [
                    data["n"] for topic, data in broker.connections[1] if topic == f"lwm2m/{FLEET_LEVEL}/tick"
                ]
                assert again == [0, 1, 2, 3, 4]  # at least once, in order
                assert (export.published, export.dropped) == (5, 0)
    finally:
        listener.close()
        await listener.wait_closed()


def test_the_url_and_the_topic_levels() -> None:
    config = MqttConfig.from_url("mqtts://ops:p%40ss@broker.example:8884/site/a")
    assert (config.host, config.port, config.tls, config.prefix) == ("broker.example", 8884, True, "site/a")
    assert (config.username, config.password) == ("ops", "p@ss")
    assert "p@ss" not in repr(config)
    plain = MqttConfig.from_url("mqtt://localhost")
    assert (plain.port, plain.tls, plain.prefix, plain.username) == (1883, False, "lwm2m", None)
    assert MqttConfig.from_url("mqtts://h").port == 8883
    for bad in (
        "http://h",
        "mqtt://",
        "mqtt://h:99999",
        "mqtt://h/a/+",
        "mqtt://h/$SYS",
        "mqtt://h?x=1",
        "mqtt://h/#",
    ):
        with pytest.raises(ConfigError):
            MqttConfig.from_url(bad)
    with pytest.raises(ConfigError):
        MqttConfig(host="h", queue_size=0)
    assert topic_level("a/b+c#d$e%f") == "a%2Fb%2Bc%23d%24e%25f"
    assert topic_level("sensor-1") == "sensor-1"


async def test_lwm2m_server_with_mqtt_url(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        coap, http = free_udp_port(), free_tcp_port()
        url = f"mqtt://127.0.0.1:{broker.port}/site-1"
        async with consumer(broker, "site-1/#") as user:
            proc = await lwm2m_process(
                "server",
                "--coap-port",
                str(coap),
                "--http-port",
                str(http),
                "--store",
                "memory",
                "--mqtt-url",
                url,
            )
            try:
                assert proc.stdout is not None
                seen: list[str] = []
                await line_with(
                    proc.stdout, f"MQTT: events to and commands from 127.0.0.1:{broker.port}", seen
                )
                async with Client("cli-1", f"coap://127.0.0.1:{coap}", [temperature()]) as client:
                    await client.wait_registered(5)
                    assert (await user.expect("site-1/cli-1/registered"))["endpoint"] == "cli-1"
                    command = {"id": 1, "op": "read", "path": "/3303/0/5700"}
                    await user.client.publish("site-1/cli-1/cmd", json.dumps(command), qos=1)
                    reply = await user.expect("site-1/cli-1/reply")
                    assert reply["id"] == 1 and reply["result"]["records"][0]["value"] == 21.5
            finally:
                await interrupt(proc)
            assert proc.returncode == 0


def test_a_bad_mqtt_url_is_one_line_naming_it() -> None:
    for url in ("http://broker", "mqtt://broker/a/#", "mqtt://broker/a+b", "mqtt://:1883"):
        done = subprocess.run(
            [sys.executable, "-m", "lwm2m", "server", "--http-port", "1", "--mqtt-url", url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and "--mqtt-url" in done.stderr and url in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1
    done = subprocess.run(
        [sys.executable, "-m", "lwm2m", "server", "--http-port", "1", "--no-mqtt-commands"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--mqtt-url" in done.stderr and done.stderr.count("\n") == 1


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_consumer() -> str:
    """The README's example consumer: the ``py`` block of its MQTT section."""
    section = README.read_text(encoding="utf-8").split("\n## MQTT\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```py\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1
    return str(blocks[0])


async def test_the_readme_consumer_sees_a_device_register_and_its_read_reply(tmp_path: Path) -> None:
    script = tmp_path / "consumer.py"
    script.write_text(readme_consumer(), encoding="utf-8")
    with mosquitto(tmp_path / "broker") as broker:
        env = {**os.environ, "MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(broker.port)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            seen: list[str] = []
            async with exported(broker) as (server, _), aiomqtt.Client("127.0.0.1", broker.port) as probe:
                # Once a probe comes back printed, the consumer has subscribed to all its topics.
                async def probing() -> None:
                    while True:
                        await probe.publish("lwm2m/probe/notify/1", b'{"endpoint": "probe"}', qos=1)
                        await asyncio.sleep(0.1)

                prober = asyncio.create_task(probing())
                try:
                    await line_with(proc.stdout, "lwm2m/probe/notify/1", seen)
                finally:
                    prober.cancel()
                async with Client("readme-1", server.uri, [Device()]) as client:
                    await client.wait_registered(5)
                    await line_with(proc.stdout, 'lwm2m/readme-1/registered "readme-1"', seen)
                    reply = await line_with(proc.stdout, "lwm2m/readme-1/reply", seen)
                    assert '"code": "2.05"' in reply and '{"path": "/3/0/0", "value": "mqtt-test"}' in reply
        finally:
            proc.kill()
            await proc.wait()


def test_without_aiomqtt_the_package_runs_and_mqtt_url_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiomqtt'] = None\n"  # as if it were not installed
        "import lwm2m.export, lwm2m.cli.server_cmd\n"
        "from lwm2m.server.role import Server\n"
        "from lwm2m.cli import main\n"
        "sys.argv = ['lwm2m', 'server', '--http-port', '1', '--mqtt-url', 'mqtt://broker']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "pip install 'lwm2m[mqtt]'" in done.stderr, done.stderr
