"""When the client notifies: pmin, pmax, gt/lt/st, edge, epmin/epmax, con, inheritance
(LwM2M-TS-Core 1.2 §5.1.2), on a virtual clock: the observer is sans-IO, the test calls
``handle_timer(now)`` where the client's loop would."""

from __future__ import annotations

from lwm2m.client.handler import RequestHandler
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.objects import ObjectTree
from lwm2m.client.observer import IMMEDIATELY, Observer
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.protocol.attributes import Attributes

MODELS = load_catalogue()
KEY = (("127.0.0.1", 40000), b"tk")
TEMP = Path.parse("/3303/0/5700")


class Clock:
    """The virtual time of one observer: ``step()`` is one turn of the client's loop,
    ``advance(s)`` runs every deadline that comes within ``s`` seconds, in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.observer: Observer | None = None

    def step(self) -> None:
        assert self.observer is not None
        t = self.observer.get_timer()
        if t is not None and t <= self.now:
            self.observer.handle_timer(self.now)

    def advance(self, seconds: float) -> None:
        assert self.observer is not None
        target = self.now + seconds
        while (t := self.observer.get_timer()) is not None and t <= target:
            self.now = max(self.now, t)
            self.observer.handle_timer(self.now)
        self.now = target


class Sink:
    """Collects what the observer emits, with the virtual time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.items: list[tuple[float, Message, bool]] = []
        self.alive = True

    def __call__(self, key: object, message: Message, con: bool) -> bool:
        self.items.append((self.clock.now, message, con))
        return self.alive

    def values(self, base: Path = TEMP) -> list[object]:
        return [
            get_codec(m.content_format or 0).decode(m.payload, base, MODELS)[0].value
            for _, m, _ in self.items
        ]


def setup(defaults: Attributes | None = None) -> tuple[RequestHandler, Observer, Sink, ObjectInstance]:
    tree = ObjectTree(MODELS)
    temp = tree.add(ObjectInstance(0, {5700: 20.0, 5701: "Cel"}, object_id=3303, models=MODELS))
    tree.add(ObjectInstance(0, {5500: False}, object_id=3200, models=MODELS))
    handler = RequestHandler(tree)
    clock = Clock()
    sink = Sink(clock)
    observer = Observer(handler, sink, defaults=(lambda: defaults) if defaults else Attributes)
    clock.observer = observer
    handler.observer = observer
    tree.on_value = observer.value_changed
    return handler, observer, sink, temp


def attrs(handler: RequestHandler, path: str, *query: str) -> None:
    assert handler.write_attributes(Path.parse(path), list(query)).code == Code.CHANGED


def test_any_change_notifies_without_attributes() -> None:
    _, observer, sink, temp = setup()
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    temp.set(5700, 21.0)
    sink.clock.step()
    temp.set(5700, 21.0)  # no change, no notification
    temp.set(5701, "K")  # another resource: not observed
    sink.clock.step()
    temp.set(5700, 22.0)
    sink.clock.step()
    assert sink.values() == [21.0, 22.0]
    # Changes within one step of the loop make one notification, of the latest value.
    temp.set(5700, 23.0)
    temp.set(5700, 24.0)
    sink.clock.step()
    assert sink.values() == [21.0, 22.0, 24.0]


def test_pmin_holds_changes_back_and_sends_the_latest() -> None:
    handler, observer, sink, temp = setup()
    attrs(handler, "/3303/0/5700", "pmin=1")
    t0 = sink.clock.now
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    temp.set(5700, 21.0)
    temp.set(5700, 22.0)
    assert sink.items == []
    sink.clock.advance(1.2)
    assert sink.values() == [22.0]
    assert sink.items[0][0] - t0 >= 0.95


def test_pmax_sends_without_change_and_pmin_from_the_instance_is_inherited() -> None:
    handler, observer, sink, _ = setup()
    attrs(handler, "/3303/0", "pmax=1")
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    sink.clock.advance(2.3)
    times = [t for t, _, _ in sink.items]
    assert len(times) == 2, times
    assert 0.8 <= times[1] - times[0] <= 1.3


def test_gt_lt_st_conditions() -> None:
    handler, observer, sink, temp = setup()
    attrs(handler, "/3303/0/5700", "gt=25", "lt=10", "st=3")
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    for v in (21.0, 22.5, 23.5, 26.0, 27.0, 24.0, 21.5, 9.0, 9.5):
        temp.set(5700, v)
        sink.clock.step()
    # 20 -> 23.5 is a step of 3.5 (st); 26 crosses gt; 27 is +1 (nothing); 24 crosses gt downwards;
    # 21.5 is -2.5 (nothing); 9 crosses lt; 9.5 nothing.
    assert sink.values() == [23.5, 26.0, 24.0, 9.0]


def test_edge_on_a_boolean() -> None:
    handler, observer, sink, _ = setup()
    switch = handler.tree.instance(3200, 0)
    assert switch is not None
    attrs(handler, "/3200/0/5500", "edge=1")
    path = Path.parse("/3200/0/5500")
    observer.add(KEY, (path,), CF.SENML_CBOR, False)
    for v in (True, False, True, False):
        switch.set(5500, v)
        sink.clock.step()
    assert sink.values(path) == [True, True]


def test_con_and_server_defaults() -> None:
    handler, observer, sink, temp = setup(Attributes(pmin=0, pmax=1))
    attrs(handler, "/3303/0/5700", "con=1")
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    temp.set(5700, 30.0)
    sink.clock.step()
    sink.clock.advance(1.15)
    assert [con for _, _, con in sink.items] == [True, True]  # the change, then pmax from the defaults


def test_epmin_spaces_evaluations_and_epmax_samples_a_computed_value() -> None:
    class Sampled(ObjectInstance):
        object_id = 3304
        reading = 40.0

        def read(self, resource_id: int) -> object:  # type: ignore[override]
            return self.reading if resource_id == 5700 else super().read(resource_id)

    handler, observer, sink, _ = setup()
    sampled = handler.tree.add(Sampled(0, {5700: 40.0}))
    assert isinstance(sampled, Sampled)
    path = Path.parse("/3304/0/5700")
    attrs(handler, "/3304/0/5700", "epmax=1")
    observer.add(KEY, (path,), CF.SENML_CBOR, False)
    sampled.reading = 41.0  # no set(): only sampling notices it
    sink.clock.advance(1.2)
    assert sink.values(path) == [41.0]


def test_composite_relation_and_removal() -> None:
    handler, observer, sink, temp = setup()
    paths = (TEMP, Path.parse("/3200/0/5500"))
    observer.add(KEY, paths, CF.SENML_CBOR, True)
    temp.set(5700, 19.0)
    sink.clock.step()
    records = get_codec(CF.SENML_CBOR).decode(sink.items[0][1].payload, ROOT, MODELS)
    assert {str(r.path): r.value for r in records} == {"/3303/0/5700": 19.0, "/3200/0/5500": False}
    single = (("127.0.0.1", 40000), b"t2")
    observer.add(single, (TEMP,), CF.SENML_CBOR, False)
    handler.delete(Path.parse("/3303/0"))
    # The single-path relation ends with 4.04; the composite one stays.
    assert sink.items[-1][1].code == Code.NOT_FOUND
    assert len(observer) == 1


def test_a_relation_the_endpoint_dropped_is_forgotten() -> None:
    _, observer, sink, temp = setup()
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    sink.alive = False
    temp.set(5700, 1.0)
    sink.clock.step()
    assert len(observer) == 0


# --- the sans-IO surface ----------------------------------------------------------------------


def test_inputs_make_it_due_at_once_and_nothing_runs_before_handle_timer() -> None:
    handler, observer, sink, temp = setup()
    woken: list[int] = []
    observer._on_timer = lambda: woken.append(1)
    assert observer.get_timer() is None
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    temp.set(5700, 21.0)
    temp.set(5700, 22.0)
    assert observer.get_timer() == IMMEDIATELY and woken == [1]  # one wake-up for all the inputs
    assert sink.items == []
    sink.clock.step()
    assert sink.values() == [22.0]
    assert observer.get_timer() is None  # no pmax: nothing armed
    attrs(handler, "/3303/0/5700", "pmax=10")
    assert observer.get_timer() == IMMEDIATELY and woken == [1, 1]
    sink.clock.step()
    # Re-armed from the last notification, not from the attribute change.
    assert observer.get_timer() == sink.items[-1][0] + 10


def test_pmax_counts_from_the_answer_and_restarts_on_each_notification() -> None:
    handler, observer, sink, temp = setup()
    attrs(handler, "/3303/0/5700", "pmax=5")
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    t0 = sink.clock.now
    sink.clock.step()
    assert observer.get_timer() == t0 + 5
    sink.clock.advance(3)
    temp.set(5700, 25.0)
    sink.clock.step()
    assert [t - t0 for t, _, _ in sink.items] == [3]
    sink.clock.advance(2.5)  # past the first pmax deadline: it moved with the notification
    assert [t - t0 for t, _, _ in sink.items] == [3]
    assert observer.get_timer() == t0 + 8
    sink.clock.advance(2.5)
    assert [t - t0 for t, _, _ in sink.items] == [3, 8]


def test_epmin_holds_an_evaluation_back_and_pmin_then_holds_the_sending() -> None:
    handler, observer, sink, temp = setup()
    attrs(handler, "/3303/0/5700", "epmin=2", "pmin=3")
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    t0 = sink.clock.now
    sink.clock.step()
    temp.set(5700, 30.0)
    sink.clock.step()
    assert observer.get_timer() == t0 + 2  # the evaluation waits for epmin
    sink.clock.advance(2)
    assert sink.items == [] and observer.get_timer() == t0 + 3  # then the sending for pmin
    sink.clock.advance(1)
    assert [(t - t0, v) for (t, _, _), v in zip(sink.items, sink.values(), strict=True)] == [(3, 30.0)]


def test_a_removed_relation_drops_its_pending_notification() -> None:
    handler, observer, sink, temp = setup()
    attrs(handler, "/3303/0/5700", "pmin=2")
    observer.add(KEY, (TEMP,), CF.SENML_CBOR, False)
    sink.clock.step()
    temp.set(5700, 30.0)
    sink.clock.step()
    assert observer.get_timer() is not None
    observer.remove(KEY)
    assert observer.get_timer() is None
    sink.clock.advance(5)
    assert sink.items == []
