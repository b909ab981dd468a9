"""Device operations over HTTP, each checked at the device for the CoAP method and payload it got
(LwM2M-TS-Transport 1.2 §6.4, Table 6.4.-1): Create, Delete, partial Write, Read-Composite,
Write-Composite and Observe-Composite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

from tests.helpers.composite import BATTERY, MODELS, TEMPERATURE, Composite
from tests.helpers.server import register
from tests.helpers.web import client_for

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.sqlite import SqliteStore
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint
from lwm2m.web.app import create_app

P = Path.parse


class Workshop(Composite):
    """Composite operations on the root, and Create / Delete / Write on objects and instances."""

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        if msg.uri_path == ():
            return super().__call__(event)
        self.requests.append(event)
        path = P("/" + "/".join(msg.uri_path))
        if msg.code == Code.POST and path.is_object:
            return Message.build(Type.ACK, Code.CREATED, location_path=(*msg.uri_path, "1"))
        if msg.code == Code.DELETE and path.is_instance:
            return Message.build(Type.ACK, Code.DELETED)
        if msg.code in (Code.POST, Code.PUT) and path.is_instance:
            return Message.build(Type.ACK, Code.CHANGED)
        return Message.build(Type.ACK, Code.METHOD_NOT_ALLOWED)

    def last(self) -> Message:
        return self.requests[-1].message

    def decoded(self, base: str = "/") -> list[Record]:
        msg = self.last()
        assert msg.content_format is not None
        return get_codec(msg.content_format).decode(msg.payload, P(base), MODELS)


@contextlib.asynccontextmanager
async def workshop() -> AsyncIterator[tuple[Server, Workshop, CoapUdpEndpoint]]:
    device = Workshop()
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=device) as client,
    ):
        assert (await client.request(register("shop"), ("127.0.0.1", server.port))).code == Code.CREATED
        yield server, device, client


async def test_create_answers_the_new_instance() -> None:
    async with workshop() as (server, device, _), client_for(server) as api:
        body = {"records": [{"path": "/3303/0/5750", "value": "hall"}]}
        created = await api.post("/api/clients/shop/3303", json=body)
        assert created.status_code == 200
        assert created.json() == {"code": "2.01", "location": "/3303/1"}
        msg = device.last()
        assert msg.code == Code.POST and msg.uri_path == ("3303",)
        assert msg.content_format == CF.SENML_CBOR
        assert device.decoded("/3303") == [Record(P("/3303/0/5750"), "hall")]


async def test_delete_an_instance() -> None:
    async with workshop() as (server, device, _), client_for(server) as api:
        deleted = await api.delete("/api/clients/shop/3303/1")
        assert deleted.status_code == 200 and deleted.json() == {"code": "2.02"}
        msg = device.last()
        assert msg.code == Code.DELETE and msg.uri_path == ("3303", "1") and msg.payload == b""


async def test_partial_write_is_a_post_and_replace_a_put() -> None:
    async with workshop() as (server, device, _), client_for(server) as api:
        records = {"records": [{"path": "/3/0/14", "value": "+01:00"}]}
        partial = await api.put("/api/clients/shop/3/0", params={"replace": "false"}, json=records)
        assert partial.json() == {"code": "2.04"}
        msg = device.last()
        assert msg.code == Code.POST and msg.uri_path == ("3", "0")  # LwM2M-TS-Core 1.2 §6.3.3
        assert device.decoded("/3/0") == [Record(P("/3/0/14"), "+01:00")]
        assert (await api.put("/api/clients/shop/3/0", json=records)).json() == {"code": "2.04"}
        assert device.last().code == Code.PUT


async def test_composite_read_and_write() -> None:
    async with workshop() as (server, device, _), client_for(server) as api:
        read = await api.post("/api/clients/shop/composite/read", json={"paths": ["/3/0/9", "/3303/0/5700"]})
        assert read.status_code == 200
        answer = read.json()
        assert answer["code"] == "2.05" and answer["contentFormat"] == CF.SENML_CBOR
        assert sorted(answer["records"], key=lambda r: r["path"]) == [
            {"path": "/3/0/9", "value": 85},
            {"path": "/3303/0/5700", "value": 20.0},
        ]
        msg = device.last()
        assert (msg.code, msg.uri_path, msg.observe) == (Code.FETCH, (), None)
        assert sorted(device.paths(device.requests[-1])) == [BATTERY, TEMPERATURE]

        records = [{"path": "/3/0/14", "value": "+02:00"}, {"path": "/3303/0/5750", "value": "hall"}]
        url = "/api/clients/shop/composite/write"
        wrote = await api.post(url, params={"format": "senml-json"}, json={"records": records})
        assert wrote.json() == {"code": "2.04"}
        msg = device.last()
        assert (msg.code, msg.uri_path, msg.content_format) == (Code.IPATCH, (), CF.SENML_JSON)
        assert device.written == [Record(P("/3/0/14"), "+02:00"), Record(P("/3303/0/5750"), "hall")]

        wrong = await api.get("/api/clients/shop/composite/read")
        assert wrong.status_code == 405


async def test_composite_observe_and_cancel() -> None:
    async with workshop() as (server, device, client), client_for(server) as api:
        paths = {"paths": ["/3303/0/5700", "/3/0/9"]}
        observed = await api.post("/api/clients/shop/composite/observe", json=paths)
        answer = observed.json()
        assert answer["code"] == "2.05" and len(answer["records"]) == 2
        (relation,) = device.relations
        assert relation.message.observe == 0 and relation.message.code == Code.FETCH
        (observation,) = server.observations()
        assert answer["token"] == observation.token.hex() and observation.record.composite

        device.values[TEMPERATURE] = 24.0
        assert client.notify(relation.relation, device.notification(relation))
        got = await observation.next(timeout=5)
        assert Record(TEMPERATURE, 24.0) in got.records
        history = (await api.get("/api/clients/shop/history/3303/0/5700")).json()
        assert history["records"][0]["value"] == 24.0

        # Named by its paths in any order; the single-path route does not reach it.
        assert (await api.delete("/api/clients/shop/3303/0/5700/observe")).status_code == 404
        query = {"paths": "/3/0/9,/3303/0/5700", "active": "true"}
        cancelled = await api.delete("/api/clients/shop/composite/observe", params=query)
        assert cancelled.status_code == 200
        assert cancelled.json() == {"cancelled": ["/3/0/9", "/3303/0/5700"], "active": True}
        (cancel,) = device.cancels
        assert cancel.message.observe == 1 and cancel.message.token == observation.token
        assert server.observations() == [] and client.endpoint.observations() == []
        again = await api.delete("/api/clients/shop/composite/observe", params={"paths": query["paths"]})
        assert again.status_code == 404
        assert (await api.delete("/api/clients/shop/composite/observe")).status_code == 400


async def test_a_resumed_composite_observation_is_cancelled_through_the_api(tmp_path: FsPath) -> None:
    device = Workshop()
    store = SqliteStore(tmp_path / "lwm2m.db")
    try:
        async with open_udp_endpoint("127.0.0.1", 0, handler=device) as client:
            async with Server(ServerConfig(port=0), store) as server:
                port = server.port
                await client.request(register("shop-2"), ("127.0.0.1", port))
                app = create_app(server)
                async with app.router.lifespan_context(app), client_for(server, app=app) as api:
                    paths = {"paths": ["/3/0/9", "/3303/0/5700"]}
                    observed = await api.post("/api/clients/shop-2/composite/observe", json=paths)
                    assert observed.status_code == 200
                # The API stopped first, then the server: the observation is kept for the next start.
            async with Server(ServerConfig(port=port), store) as server:
                app = create_app(server)
                async with app.router.lifespan_context(app), client_for(server, app=app) as api:
                    query = {"paths": "/3303/0/5700,/3/0/9", "active": "true"}
                    cancelled = await api.delete("/api/clients/shop-2/composite/observe", params=query)
                    assert cancelled.status_code == 200
                    assert len(device.cancels) == 1 and client.endpoint.observations() == []
    finally:
        store.close()
