"""The registration loop alone (LwM2M-TS-Core 1.2 §6.2), with a stub in place of the client and a
scripted registration interface on loopback: Register, Update, 4.04 re-registration, back-off,
De-register, and what the first registration does for queue mode."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.helpers.client import until

from lwm2m.client.config import ClientConfig
from lwm2m.client.core.security import Security
from lwm2m.client.core.server import ServerAccount
from lwm2m.client.queue_mode import QueueMode
from lwm2m.client.registration import ClientState, ServerRegistration
from lwm2m.coap.config import EndpointConfig
from lwm2m.coap.events import Event, RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.option import encode_uint
from lwm2m.errors import RegistrationFailed
from lwm2m.protocol.registration import ObjectLink, RegisterRequest, UpdateRequest
from lwm2m.transport.dtls.config import DtlsClientConfig
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

FAST = EndpointConfig(ack_timeout=0.1, max_retransmit=0)


class Interface:
    """A registration interface whose answers the test sets."""

    def __init__(self) -> None:
        self.register_code = Code.CREATED
        self.update_code = Code.CHANGED
        self.max_age: int | None = None  # on a refusal
        self.register_times: list[float] = []
        self.registers: list[RegisterRequest] = []
        self.updates: list[tuple[tuple[str, ...], UpdateRequest]] = []
        self.update_times: list[float] = []
        self.deletes: list[tuple[str, ...]] = []

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        if msg.uri_path == ("rd",):
            self.registers.append(RegisterRequest.from_message(msg))
            self.register_times.append(time.monotonic())
            if self.register_code != Code.CREATED:
                options = () if self.max_age is None else ((OptionNumber.MAX_AGE, encode_uint(self.max_age)),)
                return Message(Type.ACK, self.register_code, options=options, payload=b"not you")
            return Message.build(Type.ACK, Code.CREATED, location_path=["rd", f"r{len(self.registers)}"])
        if msg.code == Code.DELETE:
            self.deletes.append(msg.uri_path)
            return Message(Type.ACK, Code.DELETED)
        self.updates.append((msg.uri_path, UpdateRequest.from_message(msg)))
        self.update_times.append(time.monotonic())
        if self.update_code >> 5 != 2 and self.max_age is not None:
            max_age = ((OptionNumber.MAX_AGE, encode_uint(self.max_age)),)
            return Message(Type.ACK, self.update_code, options=max_age)
        return Message(Type.ACK, self.update_code)


class Reports:
    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


class Host:
    """What a registration uses of its client, and nothing else."""

    def __init__(self, coap: CoapUdpEndpoint, **config: Any) -> None:
        self.endpoint_name = "alone"
        self.config = ClientConfig(coap_config=FAST, **config)
        self.handler: Any = None
        self.queue = QueueMode(10.0, enabled=True, fall_asleep=lambda: True)
        self.reporter: Any = Reports()
        self._coap: CoapUdpEndpoint | None = coap
        self._bind_host = "127.0.0.1"
        self._dtls: DtlsClientConfig | None = None
        self.touched = 0
        self.triggered = 0
        self.bootstraps = 0

    @property
    def sleeping(self) -> bool:
        return False

    def object_links(self) -> tuple[ObjectLink, ...]:
        return (ObjectLink(3, 0),)

    def touch(self) -> None:
        self.touched += 1

    def trigger_update(self) -> None:
        self.triggered += 1

    def request_bootstrap(self) -> None:
        pass

    def _on_event(self, event: Event) -> None:
        pass

    async def _bootstrap_if_due(self) -> bool:
        return False


def account(uri: str, lifetime: int = 300) -> tuple[ServerAccount, Security]:
    return ServerAccount(0, short_server_id=7, lifetime=lifetime), Security(0, uri=uri, short_server_id=7)


async def test_register_update_re_register_on_4_04_and_deregister() -> None:
    interface = Interface()
    async with (
        open_udp_endpoint(handler=interface) as rd,
        open_udp_endpoint(config=FAST) as own,
    ):
        host = Host(own)
        server, security = account(f"coap://127.0.0.1:{rd.port}")
        registration = ServerRegistration(host, server, security)  # type: ignore[arg-type]
        await registration.start()
        await registration.wait_registered(5)
        assert registration.location_path == ("rd", "r1") and registration.state is ClientState.REGISTERED
        [register] = interface.registers
        assert (register.ep, register.lt, register.objects) == ("alone", 300, (ObjectLink(3, 0),))
        assert host.touched >= 1  # each exchange keeps a queue-mode client awake

        registration.trigger_update()
        await until(lambda: registration.updates == 1)
        assert interface.updates[0][0] == ("rd", "r1")

        interface.update_code = Code.NOT_FOUND  # §6.2.2: the server forgot it: Register again
        registration.objects_changed()
        await until(lambda: len(interface.registers) == 2 and registration.registered)
        assert registration.location == "r2"

        await registration.stop()
        assert interface.deletes == [("rd", "r2")]
        assert registration.state is ClientState.STOPPED and not registration.registered


async def test_a_refused_register_backs_off_and_counts_failures_in_a_row() -> None:
    interface = Interface()
    interface.register_code = Code.FORBIDDEN
    async with open_udp_endpoint(handler=interface) as rd, open_udp_endpoint(config=FAST) as own:
        host = Host(own, retry_initial=0.05, retry_max=0.1)
        server, security = account(f"coap://127.0.0.1:{rd.port}")
        registration = ServerRegistration(host, server, security)  # type: ignore[arg-type]
        await registration.start()
        await until(lambda: registration.failed_in_a_row >= 2)
        assert registration.state is ClientState.RETRYING and not registration.registered
        assert isinstance(registration.last_error, RegistrationFailed)
        assert str(registration.last_error) == 'Register refused: 4.03 Forbidden "not you"'
        interface.register_code = Code.CREATED
        await registration.wait_registered(5)
        assert registration.failed_in_a_row == 0 and registration.errors >= 2
        await registration.stop(deregister=False)
        assert interface.deletes == []


@pytest.mark.parametrize("code", [Code.TOO_MANY_REQUESTS, Code.SERVICE_UNAVAILABLE])
async def test_a_4_29_or_5_03_is_not_retried_before_its_max_age(code: Code) -> None:
    interface = Interface()
    interface.register_code, interface.max_age = code, 1
    async with open_udp_endpoint(handler=interface) as rd, open_udp_endpoint(config=FAST) as own:
        host = Host(own, retry_initial=0.05, retry_max=0.1)
        server, security = account(f"coap://127.0.0.1:{rd.port}")
        registration = ServerRegistration(host, server, security)  # type: ignore[arg-type]
        await registration.start()
        await until(lambda: registration.failed_in_a_row >= 1)
        assert isinstance(registration.last_error, RegistrationFailed)
        assert registration.last_error.retry_after == 1.0
        interface.register_code = Code.CREATED
        await registration.wait_registered(5)
        first, second = interface.register_times[:2]
        assert second - first >= 0.95  # the back-off alone would have retried within 0.07 s
        await registration.stop(deregister=False)


@contextlib.asynccontextmanager
async def registered(interface: Interface) -> AsyncIterator[ServerRegistration]:
    """A registration with ``interface``, registered, backing off briefly; stopped at the end."""
    async with open_udp_endpoint(handler=interface) as rd, open_udp_endpoint(config=FAST) as own:
        host = Host(own, retry_initial=0.05, retry_max=0.1)
        server, security = account(f"coap://127.0.0.1:{rd.port}")
        registration = ServerRegistration(host, server, security)  # type: ignore[arg-type]
        await registration.start()
        await registration.wait_registered(5)
        try:
            yield registration
        finally:
            await registration.stop(deregister=False)


@pytest.mark.parametrize("code", [Code.TOO_MANY_REQUESTS, Code.SERVICE_UNAVAILABLE])
async def test_an_update_answered_4_29_or_5_03_is_sent_again_after_its_max_age(code: Code) -> None:
    # The server is busy, and still holds the registration: the same Update later, not a new
    # Register (which would cost the server more and end the observations it holds).
    interface = Interface()
    async with registered(interface) as registration:
        interface.update_code, interface.max_age = code, 1
        registration.objects_changed()
        await until(lambda: registration.failed_in_a_row >= 1)
        assert isinstance(registration.last_error, RegistrationFailed)
        assert registration.last_error.retry_after == 1.0 and registration.location == "r1"
        interface.update_code = Code.CHANGED
        await until(lambda: registration.updates == 1, timeout=5)
        assert len(interface.registers) == 1 and registration.location == "r1"
        (first_path, first), (second_path, second) = interface.updates
        assert first_path == second_path == ("rd", "r1")
        assert first.objects is not None and second.objects is not None  # the change carried again
        assert interface.update_times[1] - interface.update_times[0] >= 0.95  # not before Max-Age


async def test_another_refused_update_registers_again() -> None:
    interface = Interface()
    async with registered(interface) as registration:
        interface.update_code = Code.BAD_REQUEST  # the registration is in doubt
        registration.trigger_update()
        await until(lambda: len(interface.registers) == 2 and registration.registered)
        assert registration.location == "r2"


async def test_the_first_registration_wakes_the_client_and_flushes_held_notifications() -> None:
    interface = Interface()
    async with open_udp_endpoint(handler=interface) as rd, open_udp_endpoint(config=FAST) as shared:
        host = Host(shared)
        server, security = account(f"coap://127.0.0.1:{rd.port}")
        registration = ServerRegistration(host, server, security, primary=True)  # type: ignore[arg-type]
        registration.addr = ("127.0.0.1", rd.port)  # the client resolved it when it started
        host.queue.asleep = True
        await registration.start()
        await registration.wait_registered(5)
        assert not host.queue.asleep and host.reporter.flushes == 0  # a Register wakes; nothing held yet
        host.queue.asleep = True
        assert registration.state is ClientState.SLEEPING  # asleep with the client's socket (§6.5)
        registration.trigger_update()
        await until(lambda: registration.updates == 1)
        assert not host.queue.asleep and host.reporter.flushes == 1  # the waking Update sends what was held
        # The Registration Update Trigger of the first account is the client's (it wakes every server).
        server.on_update_trigger(server)  # type: ignore[misc]
        assert host.triggered == 1
        await registration.cancel()


async def test_an_idle_registration_holds_no_task_and_still_updates_on_time_and_when_woken() -> None:
    interface = Interface()
    async with (
        open_udp_endpoint(handler=interface) as rd,
        open_udp_endpoint(config=FAST) as own,
    ):
        host = Host(own)
        # Lifetime 2 s: the Update is due 1 s after the Register (half, at least 1 s before).
        server, security = account(f"coap://127.0.0.1:{rd.port}", lifetime=2)
        registration = ServerRegistration(host, server, security)  # type: ignore[arg-type]
        await registration.start()
        await registration.wait_registered(5)
        # Registered, with nothing to do before the Update: parked, its task gone.
        await until(lambda: "lwm2m-client-alone" not in {t.get_name() for t in asyncio.all_tasks()})
        assert registration.running
        await registration.start()  # parked counts as running: no second loop
        await until(lambda: registration.updates >= 1, timeout=5)
        assert len(interface.registers) == 1

        before = registration.updates
        registration.trigger_update()  # wakes the parked loop at once
        await until(lambda: registration.updates == before + 1, timeout=0.9)

        await registration.stop()
        assert not registration.running and interface.deletes == [("rd", "r1")]
        updates = registration.updates
        await asyncio.sleep(1.5)  # a stopped registration's alarm, if any, starts nothing
        assert registration.updates == updates and not registration.running
