"""Fixtures for the transport tests: event loops, libcoap's client, a resource-serving handler."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pytest

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.transport.eventloop import loop_factory, uvloop_available

if TYPE_CHECKING:
    from lwm2m.transport.udp import CoapUdpEndpoint

COAP_CLIENT = "coap-client-notls"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_loops: run the test on stock asyncio and on uvloop")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, object]:
    """Tests marked ``both_loops`` run once per event loop (uvloop only where installed)."""
    factories: dict[str, object] = {"asyncio": loop_factory(False)}
    if item.get_closest_marker("both_loops") is not None and uvloop_available():
        factories["uvloop"] = loop_factory(True)
    return factories


@pytest.fixture(scope="session")
def coap_client_bin() -> str:
    """libcoap's command-line client; a missing binary fails the test (``make debs`` installs it)."""
    path = shutil.which(COAP_CLIENT)
    if path is None:
        pytest.fail(
            f"{COAP_CLIENT} is not installed: install Debian's libcoap3-bin (`make debs`) to run the "
            "libcoap interop tests",
            pytrace=False,
        )
    return path


class Resources:
    """A handler serving byte strings by path: GET (observable), PUT, DELETE; for the server side of tests.

    ``set(path, value)`` changes a resource and notifies its observers through
    the endpoint given to ``attach``.
    """

    def __init__(self, initial: Mapping[str, bytes] = ()) -> None:
        self.values: dict[str, bytes] = dict(initial)
        self.observers: dict[str, list[tuple[object, bytes]]] = {}
        self.requests: list[Message] = []
        self.ep: CoapUdpEndpoint | None = None

    def attach(self, ep: CoapUdpEndpoint) -> None:
        self.ep = ep

    def __call__(self, event: RequestReceived) -> Message:
        req = event.message
        self.requests.append(req)
        path = req.uri_path_str
        if req.code == Code.GET:
            if path not in self.values:
                return Message(Type.ACK, Code.NOT_FOUND)
            if event.is_observe_registration:
                self.observers.setdefault(path, []).append(event.relation)
                return Message.build(
                    Type.ACK, Code.CONTENT, observe=0, content_format=0, payload=self.values[path]
                )
            if event.is_observe_deregistration:
                rel = self.observers.get(path, [])
                if event.relation in rel:
                    rel.remove(event.relation)
            return Message.build(Type.ACK, Code.CONTENT, content_format=0, payload=self.values[path])
        if req.code == Code.PUT:
            created = path not in self.values
            self.set(path, req.payload)
            return Message(Type.ACK, Code.CREATED if created else Code.CHANGED)
        if req.code == Code.DELETE:
            self.values.pop(path, None)
            return Message(Type.ACK, Code.DELETED)
        return Message(Type.ACK, Code.METHOD_NOT_ALLOWED)

    def set(self, path: str, value: bytes) -> None:
        self.values[path] = value
        if self.ep is None:
            return
        alive = []
        for relation in self.observers.get(path, []):
            message = Message.build(Type.CON, Code.CONTENT, content_format=0, payload=value)
            if self.ep.notify(relation, message):
                alive.append(relation)
        self.observers[path] = alive


@pytest.fixture
def resources() -> Resources:
    return Resources(
        {
            "/small": b"hello",
            "/large": bytes(range(256)) * 12,  # 3 KiB: Block2 with the default 1 KiB blocks
            "/counter": b"0",
            "/text": b"".join(b"line %04d\n" % i for i in range(300)),  # 3 KiB of text
        }
    )
