"""``lwm2m models list`` and ``lwm2m models show``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lwm2m.cli import main

WIDE = {"COLUMNS": "200"}  # rich wraps tables to the terminal width


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=WIDE)


def user_model(folder: Path, oid: int = 42000, name: str = "My [Meter]", version: str = "1.0") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / f"{oid}.xml").write_text(
        f"""<LWM2M><Object ObjectType="MODefinition"><Name>{name}</Name><ObjectID>{oid}</ObjectID>
<ObjectVersion>{version}</ObjectVersion><MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory>
<Resources><Item ID="1"><Name>Reading</Name><Operations>R</Operations>
<MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory><Type>Float</Type><RangeEnumeration>0..99</RangeEnumeration><Units>m3</Units>
<Description>The reading.</Description></Item></Resources></Object></LWM2M>""",
        encoding="utf-8",
    )
    return folder


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0]


def test_registered_on_the_main_group() -> None:
    result = run("--help")
    assert result.exit_code == 0 and "models" in result.output
    result = run("models", "--help")
    assert result.exit_code == 0 and "list" in result.output and "show" in result.output


def test_list() -> None:
    result = run("models", "list")
    assert result.exit_code == 0, result.output
    assert "111 objects" in result.output
    for text in ("LWM2M Security", "Device", "Temperature", "ucifi"):
        assert text in result.output


@pytest.mark.parametrize(
    ("group", "count", "has", "lacks"),
    [("core", 11, 3, 3303), ("ipso", 53, 3303, 3), ("ucifi", 47, 3410, 3303)],
)
def test_list_by_group(group: str, count: int, has: int, lacks: int) -> None:
    result = run("models", "list", "--group", group, "--json")
    assert result.exit_code == 0, result.output
    ids = [o["id"] for o in json.loads(result.output)]
    assert len(ids) == count and has in ids and lacks not in ids
    assert {o["group"] for o in json.loads(result.output)} == {group}
    table = run("models", "list", "-g", group)
    assert f"{count} objects in group {group}" in table.output


def test_list_json() -> None:
    result = run("models", "list", "--json")
    data = json.loads(result.output)
    assert len(data) == 111
    device = next(o for o in data if o["id"] == 3)
    assert device == {
        "id": 3,
        "name": "Device",
        "version": "1.2",
        "lwm2m_version": "1.1",
        "multiple": False,
        "mandatory": True,
        "group": "core",
        "resource_count": 23,
    }


def test_list_bad_group() -> None:
    result = run("models", "list", "--group", "nope")
    assert result.exit_code == 2 and "'nope'" in result.output


def test_list_with_user_models(tmp_path: Path) -> None:
    folder = user_model(tmp_path / "models")
    result = run("models", "list", "--model", str(folder), "--json")
    ids = [o["id"] for o in json.loads(result.output)]
    assert len(ids) == 112 and 42000 in ids
    result = run("models", "list", "-m", str(folder), "--group", "vendor-private")
    assert "My [Meter]" in result.output  # names are shown as text, not as rich markup


def test_show() -> None:
    result = run("models", "show", "3303")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "3303 Temperature" in out and "version 1.1" in out
    for text in ("5700", "Sensor Value", "Mandatory", "Float", "6050", "0..1", " s ", "5605", " E "):
        assert text in out, text


def test_show_bootstrap_only_operations() -> None:
    result = run("models", "show", "0")
    assert result.exit_code == 0 and "LWM2M  Server URI" in result.output


def test_show_json() -> None:
    result = run("models", "show", "3303", "--json")
    data = json.loads(result.output)
    assert (data["id"], data["name"], data["group"]) == (3303, "Temperature", "ipso")
    r5700 = next(r for r in data["resources"] if r["id"] == 5700)
    assert r5700 == {
        "id": 5700,
        "name": "Sensor Value",
        "operations": "R",
        "multiple": False,
        "mandatory": True,
        "type": "Float",
        "units": "",
        "range": "",
        "minimum": None,
        "maximum": None,
    }


def test_show_user_model_with_description(tmp_path: Path) -> None:
    folder = user_model(tmp_path / "models")
    data = json.loads(run("models", "show", "42000", "--model", str(folder), "--json").output)
    assert data["resources"][0]["description"] == "The reading."
    table = run("models", "show", "42000", "--model", str(folder)).output
    assert "My [Meter]" in table and "Reading" in table and "m3" in table and "0..99" in table


def test_show_user_override(tmp_path: Path) -> None:
    folder = user_model(tmp_path / "models", oid=3303, name="Thermometer", version="1.1")
    result = run("models", "show", "3303", "-m", str(folder), "--json")
    assert json.loads(result.output)["name"] == "Thermometer"


def test_show_older_version(tmp_path: Path) -> None:
    folder = user_model(tmp_path / "models", oid=3303, name="Old Temperature", version="1.0")
    assert json.loads(run("models", "show", "3303", "-m", str(folder), "--json").output)["version"] == "1.1"
    result = run("models", "show", "3303", "-m", str(folder), "--object-version", "1.0", "--json")
    assert json.loads(result.output)["name"] == "Old Temperature"
    assert_one_line_error(run("models", "show", "3303", "--object-version", "7.0"), "'7.0'", "1.1")


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("8", ["unknown object ID 8", "--model"]),
        ("42000", ["unknown object ID 42000"]),
        ("65535", ["'65535'", "0..65534"]),
        ("abc", ["'abc'"]),
        ("-1", ["'-1'"]),
    ],
)
def test_show_unknown_id(arg: str, words: list[str]) -> None:
    result = CliRunner().invoke(main, ["models", "show", "--", arg], env=WIDE)
    assert_one_line_error(result, *words)


def test_bad_user_model(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<LWM2M><Object>")
    assert_one_line_error(run("models", "list", "--model", str(tmp_path)), "bad.xml", "not well-formed")
    assert_one_line_error(run("models", "show", "3", "--model", str(tmp_path / "absent")), "absent")
