"""Objects the server has no model for, through the REST API, against a device of our client SDK
on loopback: TLV values with their raw bytes and readings, typed writes, and hints on how to
add a model."""

from __future__ import annotations

from tests.helpers.unmodelled import VENDOR, vendor_device
from tests.helpers.web import client_for

from lwm2m.codec.base import ContentFormat as CF
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server


async def test_tlv_values_of_an_unknown_object_show_raw_bytes_and_readings() -> None:
    async with vendor_device() as (server, _), client_for(server) as api:
        read = (await api.get(f"/api/clients/vendor-1/{VENDOR}/0", params={"format": "tlv"})).json()
        assert read["code"] == "2.05" and read["contentFormat"] == CF.TLV
        by_path = {r["path"]: r for r in read["records"]}
        base = f"/{VENDOR}/0"
        assert by_path[f"{base}/1"] == {"path": f"{base}/1", "value": "AQL/", "raw": "0102ff", "readings": {}}
        assert by_path[f"{base}/2"] == {
            "path": f"{base}/2",
            "value": "Kg==",
            "raw": "2a",
            "readings": {"integer": 42, "string": "*"},
        }
        assert by_path[f"{base}/3"]["readings"] == {"string": "hello"}
        assert by_path[f"{base}/4"]["readings"]["float"] == 21.5
        assert by_path[f"{base}/5"]["readings"] == {"integer": 1, "boolean": True}
        assert by_path[f"{base}/6"]["readings"] == {"integer": -2, "unsigned": 254}
        assert "no model" in read["hint"] and "--models" in read["hint"] and str(VENDOR) in read["hint"]
        # Formats that carry types need no readings; the hint stays.
        senml = (await api.get(f"/api/clients/vendor-1/{VENDOR}/0/2", params={"format": "senml-json"})).json()
        assert senml["records"] == [{"path": f"{base}/2", "value": 42}]
        # An object with a model gets no hint.
        device = (await api.get("/api/clients/vendor-1/3/0/0")).json()
        assert device["code"] == "2.05" and "hint" not in device


async def test_a_typed_value_writes_an_opaque_resource_of_an_unknown_object() -> None:
    async with vendor_device() as (server, _), client_for(server) as api:
        url = f"/api/clients/vendor-1/{VENDOR}/0/1"
        untyped = await api.put(url, params={"format": "opaque"}, json={"value": "AQID"})
        assert untyped.status_code == 400 and "bytes" in untyped.json()["error"]
        written = await api.put(url, params={"format": "opaque"}, json={"value": "AQID", "type": "opaque"})
        assert written.status_code == 200 and written.json()["code"] == "2.04", written.json()
        back = (await api.get(url, params={"format": "opaque"})).json()
        assert back["records"][0]["value"] == "AQID"
        # Records say their type too, e.g. an unsigned integer and a time written as a date.
        records = [
            {"path": f"/{VENDOR}/0/2", "value": 7, "type": "unsigned"},
            {"path": f"/{VENDOR}/0/6", "value": "2024-01-01T00:00:00Z", "type": "time"},
        ]
        both = await api.put(
            f"/api/clients/vendor-1/{VENDOR}/0", params={"replace": "false"}, json={"records": records}
        )
        assert both.json()["code"] == "2.04", both.json()
        check = (await api.get(f"/api/clients/vendor-1/{VENDOR}/0/6", params={"format": "senml-json"})).json()
        assert check["records"][0]["value"] == 1704067200


async def test_bad_types_are_400_with_the_reason() -> None:
    async with vendor_device() as (server, _), client_for(server) as api:
        url = f"/api/clients/vendor-1/{VENDOR}/0/1"
        bad = await api.put(url, json={"value": "x", "type": "blob"})
        assert bad.status_code == 400 and "type 'blob' is not one of" in bad.json()["error"]
        not_b64 = await api.put(url, json={"value": "***", "type": "opaque"})
        assert not_b64.status_code == 400 and "base64" in not_b64.json()["error"]
        # With a model, a type must agree with it.
        clash = await api.put("/api/clients/vendor-1/3/0/14", json={"value": 5, "type": "integer"})
        assert clash.status_code == 400 and "the model types this resource String" in clash.json()["error"]


async def test_an_unknown_model_says_how_to_add_one() -> None:
    async with Server(ServerConfig(port=0)) as server, client_for(server) as api:
        missing = await api.get(f"/api/models/{VENDOR}")
        assert missing.status_code == 404
        text = missing.json()["error"]
        assert f"no object '{VENDOR}'" in text and "lwm2m server --models" in text and "DDF" in text
