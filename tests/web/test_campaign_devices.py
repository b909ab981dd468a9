"""``lwm2m.web.campaign_devices``: a device answer that came back from its owner node over the bus
is read into a code and typed records, or into the error its HTTP status stands for (only
errors of the package's tree, whatever the answer holds); a routed observation keeps the
notifications of its path, the newest few; a request whose node dies before it answers goes
again by the device's new route (an Execute excepted)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import LwM2MError, NotRegistered, OwnerGone, QueueTimeout, RemoteApiError, RequestTimeout
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import Registration
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.web import campaign_devices
from lwm2m.web.campaign_devices import (
    NOTIFICATIONS_KEPT,
    OWNER_WAIT,
    RoutedAnswer,
    RoutedDevices,
    RoutedObservation,
)

DEVICES = RoutedDevices(Server(ServerConfig(port=0)), cluster=None)  # type: ignore[arg-type]


def answer(status: int, body: Any) -> dict[str, Any]:
    """A forwarded API call's answer, as the owner node's bus handler gives it."""
    raw = json.dumps(body).encode()
    return {
        "status": status,
        "headers": [["content-type", "application/json"]],
        "body": base64.b64encode(raw).decode(),
    }


def test_a_device_answer_comes_back_typed_by_the_model() -> None:
    got = DEVICES._answer(
        "lamp",
        answer(
            200,
            {"code": "2.05", "records": [{"path": "/5/0/3", "value": 2}, {"path": "/3/0/3", "value": "1.0"}]},
        ),
    )
    assert got.code == 69  # 2.05
    assert {(str(r.path), r.value) for r in got.records} == {("/5/0/3", 2), ("/3/0/3", "1.0")}
    written = DEVICES._answer("lamp", answer(200, {"code": "2.04"}))
    assert written == RoutedAnswer(68, [])
    # Untyped bytes carry their readings for people: left out here.
    raw = {"path": "/99/0/1", "value": "AQ==", "raw": "01", "readings": {"integer": 1}}
    assert DEVICES._answer("lamp", answer(200, {"code": "2.05", "records": [raw]})).records[0].value == "AQ=="


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"error": "no client registered as 'lamp'"}, NotRegistered),
        (504, {"error": "the device did not wake up: 'lamp' did not wake up within 300 s"}, QueueTimeout),
        (504, {"error": "the device did not answer: timeout"}, RequestTimeout),
        (502, {"error": "the device refused the request: reset"}, RemoteApiError),
        (500, {"error": "internal server error"}, RemoteApiError),
        (200, {"code": "two"}, RemoteApiError),
        (
            200,
            {"code": "2.05", "records": [{"path": "/5/0/3", "value": "x"}]},
            RemoteApiError,
        ),  # not an integer
    ],
)
def test_an_answer_that_is_not_a_device_answer_is_the_error_it_stands_for(
    status: int, body: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        DEVICES._answer("lamp", answer(status, body))
    assert not isinstance(raised.value, QueueTimeout) or error is QueueTimeout


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_records = st.lists(
    st.dictionaries(st.sampled_from(["path", "value", "time", "type", "raw", "x"]), _json, max_size=4),
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from([200, 202, 400, 404, 500, 502, 504]) | st.integers(),
    body=_json
    | st.fixed_dictionaries({"code": _json | st.sampled_from(["2.05", "4.04"]), "records": _records}),
    mangle=st.sampled_from(["none", "body", "status", "missing"]),
)
def test_no_answer_raises_anything_but_a_package_error(status: int, body: Any, mangle: str) -> None:
    given_answer: Any = answer(status, body)
    if mangle == "body":
        given_answer["body"] = "%%% not base64"
    elif mangle == "status":
        given_answer["status"] = "teapot"
    elif mangle == "missing":
        given_answer = {"status": status}
    try:
        got = DEVICES._answer("lamp", given_answer)
    except LwM2MError:
        return
    assert isinstance(got.code, int) and all(isinstance(r, Record) for r in got.records)


def test_a_routed_observation_keeps_its_paths_notifications_the_newest_few() -> None:
    observation = RoutedObservation(DEVICES, "lamp", Path.parse("/5/0/3"))
    observation.take([Record(Path.parse("/5/0/5"), 1)])  # another resource: not for it
    assert not observation._backlog
    for state in range(NOTIFICATIONS_KEPT + 5):
        observation.take([Record(Path.parse("/5/0/3"), state), Record(Path.parse("/5/0/5"), 0)])
    kept = [observation._backlog.pop() for _ in range(len(observation._backlog))]
    assert len(kept) == NOTIFICATIONS_KEPT
    assert [a.records[0].value for a in kept] == list(range(5, NOTIFICATIONS_KEPT + 5))  # the newest
    assert all([str(r.path) for r in a.records] == ["/5/0/3"] for a in kept)


class _Elsewhere:
    """A cluster where every device is another node's."""

    node_id = "a"
    fleet: Any = None

    async def owner_elsewhere(self, endpoint: str, *, wait: float = 0.0) -> str | None:
        return "b"


async def test_a_device_another_node_serves_is_secure_as_its_credentials_say() -> None:
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(SecurityInfo("locked", "locked-id", b"k" * 16))
        await server.security.put(SecurityInfo("open", nosec=True))
        devices = RoutedDevices(server, _Elsewhere())  # type: ignore[arg-type]
        for endpoint in ("locked", "open", "unknown"):
            assert await devices._owner(endpoint) == "b"
        assert devices.secure("locked") and not devices.secure("open") and not devices.secure("unknown")


class _Dying:
    """A cluster whose node b owns every device and never answers over the bus: killed, it is
    seen alive ``beats`` more times."""

    node_id = "a"
    fleet: Any = None

    def __init__(self, beats: int) -> None:
        self.beats = beats
        self.waits: list[float] = []  # what each look for the owner would wait
        self.asked: list[str] = []  # the methods sent to b

    async def owner_elsewhere(self, endpoint: str, *, wait: float = 0.0) -> str | None:
        self.waits.append(wait)
        return "b" if self.beats > 0 else None  # a dead node's device, quiet: served here

    async def ask(self, node: str, payload: Any, timeout: float) -> Any:
        self.asked.append(payload["method"])
        await asyncio.Event().wait()  # no answer, ever

    async def alive(self, node: str) -> bool:
        self.beats -= 1
        return self.beats > 0


async def test_a_request_whose_node_dies_unanswered_goes_again_here_but_an_execute_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(campaign_devices, "ALIVE_POLL", 0.01)
    async with Server(ServerConfig(port=0)) as server:
        now = time.time()
        lamp = Registration(
            endpoint="lamp",
            registration_id="r1",
            address=("192.0.2.1", 5683),
            registered_at=now,
            last_update=now,
        )
        await server.store.registrations.add(lamp)
        here: list[tuple[str, str]] = []

        async def read(endpoint: str, path: Any) -> RoutedAnswer:
            here.append(("read", str(path)))
            return RoutedAnswer(69, [Record(Path.parse("/5/0/3"), 0)])

        async def execute(endpoint: str, path: Any) -> RoutedAnswer:
            here.append(("execute", str(path)))
            return RoutedAnswer(68, [])

        server.read, server.execute = read, execute  # type: ignore[method-assign]
        cluster = _Dying(beats=3)
        devices = RoutedDevices(server, cluster)  # type: ignore[arg-type]
        async with asyncio.timeout(5):  # not the request's 35 s
            assert (await devices.read("lamp", "/5/0/3")).code == 69
        assert cluster.asked == ["GET"] and here == [("read", "/5/0/3")]
        assert cluster.waits == [OWNER_WAIT, OWNER_WAIT]  # b's; then quiet, waited for, served here
        # Quiet since: served here at once, its next datagram not waited for again.
        await devices.read("lamp", "/5/0/5")
        assert cluster.waits[2:] == [0.0] and here[-1] == ("read", "/5/0/5")

        # An Execute is not sent again: the dead node may have passed it on already.
        dying = _Dying(beats=2)
        devices = RoutedDevices(server, dying)  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            with pytest.raises(OwnerGone):
                await devices.execute("lamp", "/5/0/2")
        assert dying.asked == ["POST"] and ("execute", "/5/0/2") not in here
