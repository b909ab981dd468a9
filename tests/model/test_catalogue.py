"""The bundled catalogue: exactly the promised objects, as the snapshot defines them; user models on top."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path

import pytest

from lwm2m.errors import DDFError
from lwm2m.model.catalogue import (
    CATALOGUE_FILE,
    GROUPS,
    build_registry,
    catalogue_definitions,
    group_of,
    in_catalogue,
    load_catalogue,
    load_models,
    object_from_dict,
    object_to_dict,
    objects_in_group,
)
from lwm2m.model.definition import ObjectDefinition

REPO = Path(__file__).resolve().parents[2]
CORE = {0, 1, 2, 3, 4, 5, 6, 7, 9, 21, 25}
IPSO = {*range(3200, 3204), *range(3300, 3351)}
UCIFI = {*range(3410, 3440), *range(3445, 3462)}
# Registered nowhere in the snapshot (not even as reservations in meta/DDF.xml).
NOT_IN_SNAPSHOT = {3307, 3309}


def _facts_xml(oid: int, name: str, version: str = "1.0", resource_name: str = "Value") -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<LWM2M><Object ObjectType="MODefinition">
<Name>{name}</Name><Description1>mine</Description1><ObjectID>{oid}</ObjectID>
<ObjectURN>urn:oma:lwm2m:x:{oid}</ObjectURN><LWM2MVersion>1.1</LWM2MVersion><ObjectVersion>{version}</ObjectVersion>
<MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
<Resources><Item ID="0"><Name>{resource_name}</Name><Operations>RW</Operations>
<MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory><Type>Float</Type>
<RangeEnumeration>0..10</RangeEnumeration><Units>Cel</Units><Description>d</Description></Item></Resources>
</Object></LWM2M>
"""


def test_holds_exactly_the_listed_objects() -> None:
    ids = {d.id for d in catalogue_definitions()}
    assert ids == (CORE | IPSO | UCIFI) - NOT_IN_SNAPSHOT
    assert len(ids) == 111


def test_the_missing_ids_are_missing_from_the_snapshot(registry_dir: Path) -> None:
    in_snapshot = {int(f.stem) for f in registry_dir.glob("*.xml")}
    assert (CORE | IPSO | UCIFI) - in_snapshot == NOT_IN_SNAPSHOT


def test_agrees_with_the_snapshot_files(snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    for d in catalogue_definitions():
        assert d == snapshot_definitions[d.id], d.id
        # dataclass equality covers resources as a mapping; check their fields too, for a readable failure
        assert list(d.resources.values()) == list(snapshot_definitions[d.id].resources.values())


def test_holds_facts_only() -> None:
    data = json.loads(resources.files("lwm2m.model").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8"))
    for obj in data["objects"]:
        assert not any("description" in k.lower() for k in obj)
        assert not any("description" in k.lower() for r in obj["resources"] for k in r)
    for d in catalogue_definitions():
        assert d.description == ""
        assert all(r.description == "" for r in d.resources.values())


def test_is_package_data() -> None:
    # hatchling ships every file inside src/lwm2m; make sure nothing keeps this one out of git.
    assert (REPO / "src" / "lwm2m" / "model" / CATALOGUE_FILE).is_file()
    ignored = (REPO / ".gitignore").read_text().split()
    assert not any(p in ignored for p in ("*.json", CATALOGUE_FILE, "catalogue.json"))


def test_is_up_to_date_and_regenerates_deterministically(registry_dir: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_catalogue", REPO / "tools" / "gen_catalogue.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert gen.main([str(registry_dir), "--output", str(a)]) == 0
    assert gen.main([str(registry_dir), "--output", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    bundled = resources.files("lwm2m.model").joinpath(CATALOGUE_FILE).read_bytes()
    assert a.read_bytes() == bundled, "run: python tools/gen_catalogue.py <registry folder>"
    assert gen.main([str(tmp_path / "absent"), "--output", str(a)]) == 1


def test_json_form_round_trips(snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    for d in snapshot_definitions.values():
        assert object_from_dict(json.loads(json.dumps(object_to_dict(d)))) == d
    with pytest.raises(ValueError, match="invalid object definition 3"):
        object_from_dict({"id": 3, "name": "x"})


def test_keeps_bounds_exact(snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    # 0..18446744073709551615 (object 3388 resource 910) would lose digits through a float.
    d = snapshot_definitions[3388]
    assert d.resources[910].maximum == 2**64 - 1 and type(d.resources[910].maximum) is int
    back = object_from_dict(json.loads(json.dumps(object_to_dict(d))))
    assert back.resources[910].maximum == 2**64 - 1
    ints = [r for d in catalogue_definitions() for r in d.resources.values() if r.range == "0..65535"]
    assert ints and all(type(r.minimum) is int and r.maximum == 65535 for r in ints)


def test_load_catalogue_is_cached_and_safe_to_change() -> None:
    assert catalogue_definitions() is catalogue_definitions()
    first = load_catalogue()
    first.add(ObjectDefinition(id=3, name="Changed", version="9.9"))
    second = load_catalogue()
    assert second.get(3) is not None and second.get(3).name == "Device"
    assert second.get(3) is next(
        d for d in catalogue_definitions() if d.id == 3
    )  # copies share the immutable definitions


def test_core_objects() -> None:
    reg = load_catalogue()
    names = {oid: reg.get(oid).name for oid in CORE}  # type: ignore[union-attr]
    assert names[0] == "LWM2M Security" and names[3] == "Device" and names[5] == "Firmware Update"
    device = reg.get(3)
    assert device is not None and not device.multiple and device.mandatory
    assert device.resources[4].operations.executable


def test_group_of_agrees_with_the_index(snapshot_index: dict[int, dict[str, str]]) -> None:
    wrong = {
        oid: (group_of(oid), row["group"])
        for oid, row in snapshot_index.items()
        if group_of(oid) != row["group"]
    }
    assert not wrong


@pytest.mark.parametrize(
    ("oid", "group"),
    [
        (0, "core"),
        (31, "core"),
        (32, "oma"),
        (1024, "reserved"),
        (2048, "ext"),
        (3199, "ext"),
        (3200, "ipso"),
        (3350, "ipso"),
        (3351, "ext"),
        (3410, "ucifi"),
        (3440, "ext"),
        (3461, "ucifi"),
        (10241, "vendor"),
        (26241, "vendor-reuse"),
        (32769, "vendor-private"),
        (42769, "test"),
        (42801, "reserved"),
    ],
)
def test_group_of(oid: int, group: str) -> None:
    assert group_of(oid) == group
    assert group in GROUPS


def test_in_catalogue() -> None:
    assert in_catalogue(3) and in_catalogue(25) and in_catalogue(3303) and in_catalogue(3461)
    assert (
        not in_catalogue(8) and not in_catalogue(500) and not in_catalogue(3440) and not in_catalogue(10241)
    )


def test_objects_in_group() -> None:
    assert {d.id for d in objects_in_group("core")} == CORE
    assert len(objects_in_group("ipso")) == 53
    assert len(objects_in_group("ucifi")) == 47
    assert objects_in_group("vendor") == []
    with pytest.raises(ValueError, match="unknown group 'IPSO'"):
        objects_in_group("IPSO")
    reg = build_registry()
    reg.add(ObjectDefinition(id=10241, name="Mine"))
    assert [d.name for d in objects_in_group("vendor", reg)] == ["Mine"]


# -- user models ---------------------------------------------------------------------------------


def test_load_models_from_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(_facts_xml(42000, "Mine"))
    (tmp_path / "b.xml").write_text(_facts_xml(3303, "Mine too", "1.1"))
    [one] = load_models(tmp_path / "a.xml")
    assert (one.id, one.name, one.description) == (42000, "Mine", "mine")  # user models keep descriptions
    assert [(d.id, d.version) for d in load_models(tmp_path)] == [(3303, "1.1"), (42000, "1.0")]
    with pytest.raises(DDFError, match="no such file or folder"):
        load_models(tmp_path / "absent")


def test_user_model_overrides_same_id_and_version(tmp_path: Path) -> None:
    (tmp_path / "3303.xml").write_text(_facts_xml(3303, "My Temperature", "1.1"))
    reg = build_registry([tmp_path])
    assert reg.versions(3303) == ["1.1"]
    assert reg.get(3303).name == "My Temperature"  # type: ignore[union-attr]
    assert list(reg.get(3303).resources) == [0]  # type: ignore[union-attr]
    assert load_catalogue().get(3303).name == "Temperature"  # type: ignore[union-attr]


def test_user_model_adds_a_version(tmp_path: Path) -> None:
    (tmp_path / "3303.xml").write_text(_facts_xml(3303, "Temperature 2", "2.0"))
    reg = build_registry([str(tmp_path)])
    assert reg.versions(3303) == ["1.1", "2.0"]
    assert reg.get(3303).name == "Temperature 2"  # type: ignore[union-attr]
    assert reg.get(3303, "1.1").name == "Temperature"  # type: ignore[union-attr]


def test_user_model_adds_an_object(tmp_path: Path) -> None:
    (tmp_path / "x.xml").write_text(_facts_xml(42000, "Mine"))
    reg = build_registry([tmp_path])
    assert len(reg) == 112 and 42000 in reg
    r = reg.resource(42000, 0)
    assert r is not None and (r.units, r.minimum, r.maximum) == ("Cel", 0, 10)


def test_later_folders_override_earlier_ones(tmp_path: Path) -> None:
    for n in ("one", "two"):
        (tmp_path / n).mkdir()
        (tmp_path / n / "x.xml").write_text(_facts_xml(42000, f"From {n}"))
    assert build_registry([tmp_path / "one", tmp_path / "two"]).get(42000).name == "From two"  # type: ignore[union-attr]
    assert build_registry(tmp_path / "one").get(42000).name == "From one"  # type: ignore[union-attr, arg-type]


def test_bad_user_model_raises(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<LWM2M><Object>")
    with pytest.raises(DDFError, match=r"bad\.xml: not well-formed XML"):
        build_registry([tmp_path])


def test_no_user_models_is_the_catalogue() -> None:
    reg = build_registry()
    assert [d.id for d in reg] == sorted(d.id for d in catalogue_definitions())


def test_one_definition_comes_without_a_copy_of_the_catalogue() -> None:
    from lwm2m.model.catalogue import catalogue_definition

    newest = catalogue_definition(3303)
    assert newest is not None and newest is load_catalogue().get(3303)  # definitions are shared
    versions = load_catalogue().versions(3)
    assert catalogue_definition(3, versions[0]) is load_catalogue().get(3, versions[0]) is not None
    assert catalogue_definition(3, "9.9") is None and catalogue_definition(65000) is None
