"""Bootstrap configurations: the JSON form, the checks, the writes they make (LwM2M-TS-Core 1.2 §6.1.2)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lwm2m.errors import ConfigError, LayoutConflict
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.bootstrap_config import BootstrapConfig, DeviceLayout

P = Path.parse
MODELS = load_catalogue()
PSK_SERVER = {
    "uri": "coaps://lwm2m.example:5684",
    "shortServerId": 101,
    "lifetime": 300,
    "binding": "U",
    "security": {"mode": "psk", "identity": "dev-1", "key": "000102030405060708090a0b0c0d0e0f"},
}
FULL: dict[str, Any] = {
    "servers": [
        PSK_SERVER,
        {"uri": "coap://plain.example", "shortServerId": 102, "security": {"mode": "nosec"}},
    ],
    "deletePaths": ["/0", "/1"],
    "bootstrapDiscover": True,
    "accessControl": [{"objectId": 3, "objectInstanceId": 0, "acl": {"101": 31, "0": 1}, "owner": 101}],
    "objects": {
        "records": [{"path": "/3/0/14", "value": "+01:00"}, {"path": "/3/0/15", "value": "Europe/Paris"}]
    },
}


def test_the_issue_example_parses_and_round_trips() -> None:
    simple = {"servers": [PSK_SERVER], "deletePaths": ["/0", "/1"]}
    config = BootstrapConfig.from_json(simple)
    (server,) = config.servers
    assert (server.uri, server.short_server_id, server.lifetime, server.binding) == (
        "coaps://lwm2m.example:5684",
        101,
        300,
        "U",
    )
    assert server.security.mode == "psk" and server.security.identity == "dev-1"
    assert server.security.key == bytes(range(16))
    assert config.delete_paths == (P("/0"), P("/1"))
    assert config.to_json() == simple
    full = BootstrapConfig.from_json(FULL, MODELS)
    assert BootstrapConfig.from_json(full.to_json(), MODELS) == full
    assert full.to_json()["servers"][1]["lifetime"] == 86400  # defaults are spelled out


def test_secrets_can_be_left_out_of_the_json_form() -> None:
    shown = BootstrapConfig.from_json(FULL).to_json(secrets=False)
    assert "key" not in shown["servers"][0]["security"]
    assert shown["servers"][0]["security"]["identity"] == "dev-1"


def test_x509_and_rpk_modes() -> None:
    x509 = {
        "uri": "coaps://h",
        "shortServerId": 1,
        "security": {
            "mode": "x509",
            "certificate": "3082",
            "privateKey": "3077",
            "serverCertificate": "30aa",
        },
    }
    config = BootstrapConfig.from_json({"servers": [x509]})
    security = config.servers[0].security
    assert (security.mode_number, security.identity_resource, security.key) == (2, b"\x30\x82", b"\x30\x77")
    rpk = {
        "uri": "coaps://h",
        "shortServerId": 1,
        "security": {"mode": "rpk", "publicKey": "04", "privateKey": "01"},
    }
    assert BootstrapConfig.from_json({"servers": [rpk]}).servers[0].security.mode_number == 1
    assert (
        BootstrapConfig.from_json({"servers": [rpk]}).to_json()["servers"][0]["security"] == rpk["security"]
    )


def _bad(path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(FULL)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"servers": []}, "without a server account"),
        ({"deletePaths": ["/"]}, "without a server account"),
        ([], "expected an object"),
        (_bad(["servers", 0, "uri"], "http://x"), r"servers\[0\]\.uri: 'http://x': expected coap"),
        (_bad(["servers", 0, "uri"], "coaps://"), "expected coap.*a host"),
        (_bad(["servers", 0, "uri"], "coap://h:99999"), "expected coap.*a port"),
        (_bad(["servers", 0, "uri"], " coap://h"), "expected coap"),  # nothing a device would trip on
        (_bad(["servers", 0, "uri"], "coap://[:]"), "IPv6"),
        (_bad(["servers", 0, "uri"], KeyError), "uri is missing"),
        (_bad(["servers", 0, "shortServerId"], 0), "shortServerId: 0 is not an integer from 1"),
        (_bad(["servers", 1, "shortServerId"], 101), r"servers\[1\]\.shortServerId: 101 is already used"),
        (_bad(["servers", 0, "lifetime"], -5), "lifetime"),
        (_bad(["servers", 0, "lifetime"], "300"), "lifetime"),
        (_bad(["servers", 0, "binding"], "UU"), "binding"),
        (_bad(["servers", 0, "binding"], "X"), "binding"),
        (_bad(["servers", 0, "security", "mode"], "magic"), "mode: 'magic'"),
        (_bad(["servers", 0, "security", "key"], "zz"), r"security\.key: not hexadecimal"),
        (_bad(["servers", 0, "security", "key"], ""), "needs a key"),
        (_bad(["servers", 0, "security", "key"], "0a 0b"), "not hexadecimal"),  # bytes.fromhex takes it
        (_bad(["servers", 0, "security", "key"], "0:a:0b"), None),  # colons anywhere: fine
        (_bad(["servers", 0, "security", "identity"], ""), "needs an identity"),
        (_bad(["servers", 0, "security", "extra"], 1), "unknown field 'extra'"),
        (_bad(["servers", 0, "security"], {"mode": "nosec"}), "coaps: give security mode"),
        (
            _bad(["servers", 1, "security"], PSK_SERVER["security"]),
            "plain coap: security mode psk needs coaps",
        ),
        (_bad(["servers", 0, "securityInstanceId"], 3), None),
        (_bad(["deletePaths"], ["/0/1/2"]), "deletePaths"),
        (_bad(["deletePaths"], ["/x"]), "deletePaths"),
        (_bad(["deletePaths"], ["/3/0/"]), "deletePaths: '/3/0/': write it as /3/0"),
        (_bad(["accessControl", 0, "owner"], 7), r"accessControl\[0\]\.owner: 7 is not a shortServerId"),
        (_bad(["accessControl", 0, "acl"], {"9": 1}), "9 is not a server"),
        (_bad(["accessControl", 0, "acl"], {"101": 99}), "rights"),
        (_bad(["accessControl", 0, "acl"], []), "expected"),
        (_bad(["accessControl", 0, "acl"], {"0101": 1}), "not a Short Server ID"),
        (_bad(["accessControl", 0, "acl"], None), None),  # null: no ACL entries
        (_bad(["accessControl", 0, "objectId"], 21), "Security and OSCORE"),
        (_bad(["objects", "records"], [{"path": "/0/1/0", "value": "coap://x"}]), "come from servers"),
        (_bad(["objects", "records"], [{"path": "/3/0", "value": 1}]), "objects.records"),
        (_bad(["objects", "records"], [{"path": "/3/0/14", "value": 5}]), "objects.records"),
        (_bad(["bootstrapDiscover"], "yes"), "bootstrapDiscover"),
        (_bad(["surprise"], 1), "unknown field 'surprise'"),
    ],
)
def test_bad_configurations_are_refused_with_a_message(data: Any, words: str | None) -> None:
    if words is None:  # a control: this one is fine
        BootstrapConfig.from_json(data, MODELS)
        return
    with pytest.raises(ConfigError, match=words):
        BootstrapConfig.from_json(data, MODELS)


def test_writes_in_order_with_instance_ids_clear_of_the_bootstrap_account() -> None:
    config = BootstrapConfig.from_json(FULL, MODELS)
    writes = config.writes()
    assert [str(w.path) for w in writes] == ["/0/1", "/0/2", "/1/0", "/1/1", "/2/0", "/3/0/14", "/3/0/15"]
    security = {r.path.ids[2]: r.value for r in writes[0].records}
    assert security == {
        0: "coaps://lwm2m.example:5684",
        1: False,
        2: 0,
        3: b"dev-1",
        4: b"",
        5: bytes(range(16)),
        10: 101,
    }
    server = {r.path.ids[2]: r.value for r in writes[2].records}
    assert server == {0: 101, 1: 300, 6: True, 7: "U"}
    assert Record(P("/2/0/2/101"), 31) in writes[4].records
    # The bootstrap account found elsewhere by a Discover: /0/0 is free then.
    found = DeviceLayout(frozenset({3}), known=True)
    assert [str(w.path) for w in config.writes(found)][:2] == ["/0/0", "/0/1"]
    pinned = _bad(["servers", 1, "securityInstanceId"], 0)
    assert [str(w.path) for w in BootstrapConfig.from_json(pinned).writes()][:2] == ["/0/1", "/0/0"]


def test_pack_holds_every_value() -> None:
    config = BootstrapConfig.from_json(FULL, MODELS)
    pack = config.pack()
    assert len(pack) == sum(len(w.records) for w in config.writes())
    assert Record(P("/3/0/15"), "Europe/Paris") in pack


# --- placing a configuration on a device: its bootstrap account is never touched (§6.1.7.6) ---

TWO = {"servers": FULL["servers"]}


def _paths(items: Any) -> list[str]:
    return [str(getattr(i, "path", i)) for i in items]


@pytest.mark.parametrize("account", [1, 7])
def test_new_accounts_keep_clear_of_a_discovered_bootstrap_account(account: int) -> None:
    layout = DeviceLayout(frozenset({account}), known=True)
    plan = BootstrapConfig.from_json(FULL, MODELS).plan(layout)
    security = [w.path for w in plan.writes if w.path.ids[0] == 0]
    assert security == [P("/0/0"), P("/0/2") if account == 1 else P("/0/1")]
    assert all(p != P(f"/0/{account}") for p in plan.deletes)
    assert plan.after.bootstrap_accounts == {account}
    assert dict(plan.after.security) == {0: 101, security[1].ids[1]: 102}


def test_a_server_account_already_there_is_written_over_and_free_ids_taken_for_the_others() -> None:
    # No deletes: /0/0 + /1/2 hold server 101, /0/3 + /1/0 server 7, /0/1 is the bootstrap account.
    layout = DeviceLayout(frozenset({1}), {0: 101, 3: 7}, {2: 101, 0: 7}, known=True)
    plan = BootstrapConfig.from_json(TWO, MODELS).plan(layout)
    assert _paths(plan.writes) == ["/0/0", "/0/2", "/1/2", "/1/1"]
    assert plan.deletes == ()
    # The same configuration again finds its own accounts where it left them (a re-bootstrap).
    again = BootstrapConfig.from_json(TWO, MODELS).plan(plan.after)
    assert _paths(again.writes) == _paths(plan.writes) and again.deletes == ()


def test_another_instance_holding_a_configured_short_server_id_is_deleted() -> None:
    layout = DeviceLayout(frozenset({0}), {3: 101}, {4: 101}, known=True)
    pinned = copy.deepcopy(TWO)
    pinned["servers"][0].update(securityInstanceId=5, serverInstanceId=6)
    plan = BootstrapConfig.from_json(pinned, MODELS).plan(layout)
    assert _paths(plan.deletes) == ["/0/3", "/1/4"]
    assert _paths(plan.writes)[:1] == ["/0/5"]


def test_explicit_ids_or_deletes_naming_the_bootstrap_account_are_refused_with_the_reason() -> None:
    layout = DeviceLayout(frozenset({7}), known=True)
    pinned = BootstrapConfig.from_json(_bad(["servers", 1, "securityInstanceId"], 7), MODELS)
    with pytest.raises(
        LayoutConflict, match=r"servers\[1\]\.securityInstanceId: /0/7 is the device's bootstrap"
    ):
        pinned.plan(layout)
    deleting = BootstrapConfig.from_json({**TWO, "deletePaths": ["/0/7"]}, MODELS)
    with pytest.raises(LayoutConflict, match=r"deletePaths: /0/7 is the device's bootstrap server account"):
        deleting.plan(layout)
    # Without a Discover the layout is assumed, and explicit IDs are the user's to choose.
    assert _paths(pinned.writes())[:2] == ["/0/1", "/0/7"]
    # Deleting / or /0 is fine: the device keeps its bootstrap account (§6.1.7.6).
    BootstrapConfig.from_json({**TWO, "deletePaths": ["/", "/0"]}, MODELS).plan(layout)


def test_a_configuration_that_says_where_the_bootstrap_account_is_is_checked_at_input() -> None:
    with pytest.raises(ConfigError, match=r"securityInstanceId: /0/3 is the device's bootstrap"):
        BootstrapConfig.from_json(
            {**_bad(["servers", 0, "securityInstanceId"], 3), "bootstrapAccountId": 3}, MODELS
        )
    with pytest.raises(ConfigError, match=r"deletePaths: /0/3 is the device's bootstrap"):
        BootstrapConfig.from_json({**TWO, "deletePaths": ["/0/3"], "bootstrapAccountId": 3}, MODELS)
    with pytest.raises(ConfigError, match="bootstrapAccountId"):
        BootstrapConfig.from_json({**TWO, "bootstrapAccountId": -1}, MODELS)
    config = BootstrapConfig.from_json({**TWO, "bootstrapAccountId": 0}, MODELS)
    assert {r.path.ids[1] for r in config.pack() if r.path.ids[0] == 0} == {1, 2}
    config = BootstrapConfig.from_json({**TWO, "bootstrapAccountId": 1}, MODELS)
    assert {r.path.ids[1] for r in config.pack() if r.path.ids[0] == 0} == {0, 2}
    assert config.to_json()["bootstrapAccountId"] == 1
    assert BootstrapConfig.from_json(config.to_json(), MODELS) == config


def test_discover_is_the_default_and_only_false_is_written_out() -> None:
    assert BootstrapConfig.from_json(TWO, MODELS).bootstrap_discover is True
    off = BootstrapConfig.from_json({**TWO, "bootstrapDiscover": False}, MODELS)
    assert off.bootstrap_discover is False and off.to_json()["bootstrapDiscover"] is False
    assert "bootstrapDiscover" not in BootstrapConfig.from_json(TWO, MODELS).to_json()
