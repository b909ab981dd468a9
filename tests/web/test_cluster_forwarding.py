"""How long a node waits for the owner of a device it sent a request to
(:class:`~lwm2m.web.cluster.ForwardToOwner`): the request's own ``?timeout`` and a margin, so that
an owner that has just died costs no more than a silent device would; the whole
``FORWARD_TIMEOUT`` for a request that waits for a sleeping device (``?wait=true``) or names no
timeout of its own. The end-to-end case (a killed node) is in tests/cluster/test_e2e.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lwm2m.web.cluster import FORWARD_MARGIN, FORWARD_TIMEOUT, ForwardToOwner


class Owner:
    """A cluster whose devices all live on node "a", which answers 200 at once; it keeps how
    long each request was given."""

    node_id = "b"
    fleet: Any = None

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def owner_elsewhere(self, endpoint: str, *, wait: float = 0.0) -> str | None:
        return "a"

    async def ask(self, node: str, payload: Any, timeout: float) -> Any:
        self.waits.append(timeout)
        return {"status": 200, "headers": [["content-type", "application/json"]], "body": "e30="}


async def never(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the request must not be served here")


@pytest.mark.parametrize(
    ("query", "wait"),
    [
        ("timeout=1", 1 + FORWARD_MARGIN),
        ("timeout=2.5&format=tlv", 2.5 + FORWARD_MARGIN),
        ("timeout=1&timeout=3", 3 + FORWARD_MARGIN),  # the last one counts, as the owner reads it
        ("timeout=1000", FORWARD_TIMEOUT),
        ("", FORWARD_TIMEOUT),  # the owner waits its default for the device
        ("timeout=2&wait=true", FORWARD_TIMEOUT),  # and for a sleeping device to wake
        ("timeout=2&wait=1", FORWARD_TIMEOUT),
        ("timeout=2&wait=false", 2 + FORWARD_MARGIN),
        ("timeout=soon", FORWARD_TIMEOUT),  # the owner refuses it at once (400)
        ("timeout=-1", FORWARD_TIMEOUT),
        ("timeout=nan", FORWARD_TIMEOUT),
    ],
)
async def test_the_owner_is_waited_for_as_long_as_the_request_asks(query: str, wait: float) -> None:
    cluster = Owner()
    app = ForwardToOwner(never, cluster)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        answer = await http.get(f"/api/clients/dev-1/3/0/0?{query}")
    assert answer.status_code == 200 and answer.json() == {}
    assert cluster.waits == [wait]
