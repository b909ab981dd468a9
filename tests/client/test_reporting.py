"""The reporter alone: notifications held while the client sleeps in queue mode and sent when it
wakes (LwM2M-TS-Core 1.2 §6.5), on a virtual clock."""

from __future__ import annotations

from lwm2m.client.handler import RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import ObjectTree
from lwm2m.client.reporting import Reporter
from lwm2m.coap.message import Message
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path

MODELS = load_catalogue()
TEMP = Path.parse("/3303/0/5700")
A = (("127.0.0.1", 40000), b"a")
B = (("127.0.0.1", 40000), b"b")


class Device:
    def __init__(self) -> None:
        self.asleep = False
        self.wake_ups = 0
        self.sent: list[tuple[object, float]] = []
        tree = ObjectTree(MODELS)
        self.temp = tree.add(ObjectInstance(0, {5700: 20.0}, object_id=3303, models=MODELS))
        handler = RequestHandler(tree)
        self.reporter = Reporter(handler, self.send, asleep=lambda: self.asleep, wake_up=self.wake_up)
        handler.observer = self.reporter.observer
        tree.on_value = self.reporter.observer.value_changed

    def send(self, key: object, message: Message, con: bool) -> bool:
        value = get_codec(CF.SENML_CBOR).decode(message.payload, TEMP, MODELS)[0].value
        self.sent.append((key, value))
        return True

    def wake_up(self) -> None:
        self.wake_ups += 1

    def change(self, value: float, now: float) -> None:
        self.temp.set(5700, value)
        assert self.reporter.get_timer() is not None
        self.reporter.handle_timer(now)


def test_notifications_go_out_while_awake() -> None:
    device = Device()
    device.reporter.observer.add(A, (TEMP,), CF.SENML_CBOR, False)
    device.change(21.0, 1.0)
    assert device.sent == [(A, 21.0)] and device.wake_ups == 0


def test_asleep_the_latest_per_relation_is_held_then_flushed() -> None:
    device = Device()
    device.reporter.observer.add(A, (TEMP,), CF.SENML_CBOR, False)
    device.reporter.observer.add(B, (TEMP,), CF.SENML_CBOR, False)
    device.asleep = True
    device.change(21.0, 1.0)
    device.change(22.0, 2.0)
    assert device.sent == [] and device.wake_ups == 4  # each held notification asks for an Update
    assert set(device.reporter.held) == {A, B}
    device.asleep = False
    device.reporter.flush()
    assert sorted(device.sent) == [(A, 22.0), (B, 22.0)] and device.reporter.held == {}
    device.reporter.flush()
    assert len(device.sent) == 2
