"""``/api/security/clients``: PSK and X.509 entries set, shown without keys, removed; a device then
registers over DTLS with the key given through the API."""

from __future__ import annotations

import logging

import pytest
from tests.helpers.server import register
from tests.helpers.web import client_for

from lwm2m.coap.numbers import Code
from lwm2m.coap.oscore import OscoreConfig, OscoreContext, OscoreLayer
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials, open_dtls_endpoint
from lwm2m.transport.udp import open_udp_endpoint

KEY_HEX = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
RPK_HEX = "3059301306072a8648ce3d020106082a8648ce3d03010703420004" + "11" * 64
TAKEN_RPK_HEX = RPK_HEX[:-2] + "22"


async def test_raw_public_key_entries() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        url = "/api/security/clients/tracker-1"
        created = await api.put(url, json={"rpk": RPK_HEX})
        assert created.status_code == 201, created.text
        shown = {"endpoint": "tracker-1", "mode": "rpk", "x509": False, "rpk": RPK_HEX}
        assert created.json() == shown and (await api.get(url)).json() == shown
        assert (await api.put(url, json={"mode": "rpk", "rpk": RPK_HEX.upper()})).status_code == 200
        entry = await server.security.get("tracker-1")
        assert entry is not None and entry.rpk == bytes.fromhex(RPK_HEX)


async def test_put_list_get_delete_and_register(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with Server(ServerConfig(port=0, coaps_port=0)) as server, client_for(server) as api:
        assert (await api.get("/api/security/clients")).json() == []
        url = "/api/security/clients/dev-1"
        created = await api.put(url, json={"pskIdentity": "dev-1-id", "pskKey": KEY_HEX})
        assert created.status_code == 201
        assert created.json() == {
            "endpoint": "dev-1",
            "mode": "psk",
            "x509": False,
            "pskIdentity": "dev-1-id",
            "pskKeyHint": "a1… (16 bytes)",
        }
        assert (await api.put("/api/security/clients/cam-1", json={"x509": True})).status_code == 201
        listing = (await api.get("/api/security/clients")).text
        assert [e["endpoint"] for e in (await api.get("/api/security/clients")).json()] == ["cam-1", "dev-1"]
        assert KEY_HEX[4:] not in listing and KEY_HEX[4:] not in (await api.get(url)).text

        # The device registers over DTLS with that key.
        config = DtlsClientConfig(psk=PskCredentials.from_hex("dev-1-id", KEY_HEX))
        async with open_dtls_endpoint(client=config) as device:
            peer = ("127.0.0.1", server.coaps_port)
            assert (await device.request(register("dev-1"), peer, timeout=5)).code == Code.CREATED

        # Replacing answers 200; removing answers 200, then 404.
        replaced = await api.put(url, json={"pskIdentity": "dev-1-id", "pskKey": "00" * 16})
        assert replaced.status_code == 200
        assert (await api.delete(url)).json() == {"removed": "dev-1"}
        assert (await api.delete(url)).status_code == 404
        assert (await api.get(url)).status_code == 404
    assert KEY_HEX[4:] not in caplog.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"pskIdentity": "x"}, 400),
        ({"pskIdentity": "x", "pskKey": "zz"}, 400),
        ({"pskIdentity": "x", "pskKey": "abc"}, 400),  # odd number of digits
        ({"pskIdentity": "x", "pskKey": "00" * 65}, 400),  # longer than 64 bytes (RFC 4279 §5.3)
        ({"pskIdentity": "x", "pskKey": "0011", "x509": True}, 400),
        ({"x509": "yes"}, 400),
        ({"psk": "x"}, 400),
        ({"pskIdentity": "taken", "pskKey": "0011"}, 409),
        ({"rpk": "3003020100"}, 400),  # no key bits
        ({"rpk": "zz"}, 400),
        ({"rpk": RPK_HEX, "pskIdentity": "x", "pskKey": "0011"}, 400),
        ({"rpk": RPK_HEX, "x509": True}, 400),
        ({"mode": "rpk"}, 400),
        ({"rpk": TAKEN_RPK_HEX}, 409),
    ],
)
async def test_bad_bodies_are_refused_without_echoing_the_key(body: dict, status: int) -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        await api.put("/api/security/clients/other", json={"pskIdentity": "taken", "pskKey": "ff" * 16})
        await api.put("/api/security/clients/tracker", json={"rpk": TAKEN_RPK_HEX})
        answer = await api.put("/api/security/clients/dev-1", json=body)
        assert answer.status_code == status, answer.text
        key = body.get("pskKey")
        if isinstance(key, str) and len(key) > 4:
            assert key not in answer.text
        as_json = {"Content-Type": "application/json"}
        assert (
            await api.put("/api/security/clients/dev-1", content=b"[1]", headers=as_json)
        ).status_code == 400


async def test_openapi_lists_the_security_routes() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        paths = (await api.get("/api/openapi.json")).json()["paths"]
        assert set(paths["/api/security/clients/{ep}"]) == {"get", "put", "delete"}
        assert "get" in paths["/api/security/clients"]


async def test_oscore_entries_and_a_device_registering_over_oscore(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = {"masterSecret": KEY_HEX, "masterSalt": "9e7ca92223786340", "senderId": "01", "recipientId": ""}
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        url = "/api/security/clients/osc-1"
        created = await api.put(url, json={"oscore": secrets})
        assert created.status_code == 201, created.text
        shown = {
            "endpoint": "osc-1",
            "mode": "oscore",
            "x509": False,
            "oscore": {"senderId": "01", "recipientId": ""},
        }
        assert created.json() == shown and (await api.get(url)).json() == shown
        assert KEY_HEX not in (await api.get("/api/security/clients")).text
        for bad, why in (
            ({"oscore": {**secrets, "senderId": "0"}}, "oscore.senderId"),
            ({"oscore": {**secrets, "recipientId": "01"}}, "differ"),
            ({"oscore": {**secrets, "masterSecret": ""}}, "empty"),
            ({"oscore": secrets, "pskIdentity": "x", "pskKey": KEY_HEX}, "oscore"),
            ({"oscore": {**secrets, "sequence": 5}}, "sequence"),
        ):
            answer = await api.put(url, json=bad)
            assert answer.status_code == 400 and why in answer.text, answer.text
        taken = await api.put("/api/security/clients/osc-2", json={"oscore": secrets})
        assert taken.status_code == 409
        # The device registers with those parameters; its answers come back protected.
        layer = OscoreLayer()
        config = OscoreConfig(bytes.fromhex(KEY_HEX), b"\x01", b"", bytes.fromhex("9e7ca92223786340"))
        peer = ("127.0.0.1", server.port)
        layer.add(OscoreContext(config), peer=peer)
        async with open_udp_endpoint("127.0.0.1", 0, oscore=layer) as device:
            assert (await device.request(register("osc-1"), peer, timeout=5)).code == Code.CREATED
    assert KEY_HEX not in caplog.text
