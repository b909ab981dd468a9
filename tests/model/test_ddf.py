"""The DDF loader against the whole OMA registry snapshot, its quirks, and hostile XML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lwm2m.errors import DDFError
from lwm2m.model.ddf import load_ddf, load_ddf_dir, load_ddf_file, parse_ddf, parse_range
from lwm2m.model.definition import ObjectDefinition, Operations
from lwm2m.model.value import ResourceType

MISSING = "<missing>"  # resources.csv: the element is absent, which is not the same as empty
NO_DECLARATION = (10241, 10252, 10255, 18830, 18831)
REORDERED_UCIFI = (3410, 3416, 3418, 3421, 3422, 3430, 3432, *range(3451, 3462))


def ddf(resources: str = "", *, head: str = "", obj: str = "") -> bytes:
    """A small DDF document; ``head`` goes before ``<LWM2M>``, ``obj`` replaces the object's facts."""
    facts = obj or (
        "<Name>Test</Name><ObjectID>42000</ObjectID><ObjectURN>urn:oma:lwm2m:x:42000</ObjectURN>"
        "<LWM2MVersion>1.1</LWM2MVersion><ObjectVersion>1.0</ObjectVersion>"
        "<MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory>"
    )
    return (
        f'{head}<LWM2M><Object ObjectType="MODefinition">{facts}<Resources>{resources}</Resources>'
        "</Object></LWM2M>"
    ).encode()


def item(rid: int | str = 0, **elements: str | None) -> str:
    """A resource ``<Item>``; an element given as None is left out."""
    fields = {
        "Name": "Value",
        "Operations": "R",
        "MultipleInstances": "Single",
        "Mandatory": "Optional",
        "Type": "Integer",
        "RangeEnumeration": "",
        "Units": "",
        "Description": "",
    }
    fields.update(elements)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v is not None)
    return f'<Item ID="{rid}">{body}</Item>'


def one(data: bytes, **kwargs: bool) -> ObjectDefinition:
    [d] = parse_ddf(data, "test.xml", **kwargs)
    return d


# -- the whole snapshot --------------------------------------------------------------------------


def test_loads_every_file(registry_dir: Path, snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    files = sorted(registry_dir.glob("*.xml"))
    assert len(files) == 327
    assert len(snapshot_definitions) == 327
    assert {int(f.stem) for f in files} == set(snapshot_definitions)


def test_objects_agree_with_index_csv(
    snapshot_index: dict[int, dict[str, str]], snapshot_definitions: dict[int, ObjectDefinition]
) -> None:
    assert set(snapshot_index) == set(snapshot_definitions)
    wrong = []
    for oid, row in snapshot_index.items():
        d = snapshot_definitions[oid]
        got = (
            d.name,
            d.version,
            d.lwm2m_version,
            "Multiple" if d.multiple else "Single",
            "Mandatory" if d.mandatory else "Optional",
            str(len(d.resources)),
            d.urn,
        )
        want = tuple(
            row[k]
            for k in (
                "name",
                "object_version",
                "lwm2m_version",
                "multiple_instances",
                "mandatory",
                "resource_count",
                "urn",
            )
        )
        if got != want:
            wrong.append((oid, got, want))
    assert not wrong


def test_resources_agree_with_resources_csv(
    snapshot_resources: dict[int, dict[int, dict[str, str]]],
    snapshot_definitions: dict[int, ObjectDefinition],
) -> None:
    assert sum(len(r) for r in snapshot_resources.values()) == 3464
    assert sum(len(d.resources) for d in snapshot_definitions.values()) == 3464
    wrong = []
    for oid, d in snapshot_definitions.items():
        rows = snapshot_resources.get(oid, {})
        assert set(rows) == set(d.resources), oid
        for rid, row in rows.items():
            r = d.resources[rid]
            got = (
                r.name,
                r.operations.value,
                "Multiple" if r.multiple else "Single",
                "Mandatory" if r.mandatory else "Optional",
                "" if r.type is ResourceType.NONE else r.type.value,
                r.range,
                r.units,
            )
            want = (
                row["name"],
                row["operations"],
                row["multiple_instances"],
                row["mandatory"],
                row["type"],
                "" if row["range_enumeration"] == MISSING else row["range_enumeration"],
                "" if row["units"] == MISSING else row["units"],
            )
            if got != want:
                wrong.append((oid, rid, got, want))
    assert not wrong


def test_numeric_bounds_follow_the_range_text(snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    bounded = 0
    for d in snapshot_definitions.values():
        for r in d.resources.values():
            assert (r.minimum, r.maximum) == parse_range(r.range, r.type)
            if r.minimum is not None:
                bounded += 1
                assert r.maximum is not None and r.minimum <= r.maximum
                assert ".." in r.range
    assert bounded > 600


def test_descriptions_are_optional(registry_dir: Path) -> None:
    [with_text] = load_ddf_file(registry_dir / "3303.xml")
    [facts] = load_ddf_file(registry_dir / "3303.xml", descriptions=False)
    assert with_text.description.startswith("This IPSO object should be used with a temperature sensor")
    assert with_text.resources[5700].description == "Last or Current Measured Value from the Sensor."
    assert facts.description == "" and all(r.description == "" for r in facts.resources.values())
    assert facts.resources[5700].name == with_text.resources[5700].name


# -- the quirks of the registry README -----------------------------------------------------------


def test_byte_order_mark(registry_dir: Path, snapshot_index: dict[int, dict[str, str]]) -> None:
    with_bom = [oid for oid, row in snapshot_index.items() if row["bom"] == "yes"]
    assert len(with_bom) == 19
    for oid in with_bom:
        data = (registry_dir / f"{oid}.xml").read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")
        assert parse_ddf(data)[0].id == oid
    assert one(b"\xef\xbb\xbf" + ddf(head='<?xml version="1.0" encoding="UTF-8"?>\n')).id == 42000
    assert one(b"\xef\xbb\xbf" + ddf()).id == 42000


def test_no_xml_declaration(registry_dir: Path) -> None:
    for oid in NO_DECLARATION:
        data = (registry_dir / f"{oid}.xml").read_bytes().removeprefix(b"\xef\xbb\xbf")
        assert data.startswith(b"<!--")
        assert parse_ddf(data)[0].id == oid
    assert one(ddf(head="<!-- licence -->\n")).name == "Test"


@pytest.mark.parametrize("encoding", ["UTF-8", "utf-8"])
def test_declared_encoding_in_either_case(encoding: str) -> None:
    head = f'<?xml version="1.0" encoding="{encoding}"?>'
    d = one(ddf(item(Name="Température"), head=head))
    assert d.resources[0].name == "Température"


def test_blank_lines_before_the_declaration() -> None:
    assert one(ddf(head='\n\n<?xml version="1.0" encoding="utf-8"?>\n')).id == 42000


def test_text_input() -> None:
    text = ddf(item(Name="Température")).decode()
    assert one(text).resources[0].name == "Température"  # type: ignore[arg-type]


def test_crlf_line_endings(registry_dir: Path) -> None:
    # A normal checkout of the upstream repository gives CRLF; XML normalises it to LF.
    for oid in (3387, 3303, 0):
        lf = (registry_dir / f"{oid}.xml").read_bytes()
        crlf = lf.replace(b"\n", b"\r\n")
        assert parse_ddf(crlf) == parse_ddf(lf)
    assert "\r" not in load_ddf_file(registry_dir / "3387.xml")[0].resources[800].range


def test_schema_url_with_and_without_www(registry_dir: Path) -> None:
    for oid in (3303, 0):  # http://openmobilealliance.org/... and http://www.openmobilealliance.org/...
        assert load_ddf_file(registry_dir / f"{oid}.xml")[0].id == oid


def test_element_order_does_not_matter(
    snapshot_resources: dict[int, dict[int, dict[str, str]]],
    snapshot_definitions: dict[int, ObjectDefinition],
) -> None:
    no_range = [
        (oid, rid)
        for oid, rows in snapshot_resources.items()
        for rid, row in rows.items()
        if row["range_enumeration"] == MISSING
    ]
    assert len(no_range) == 145 and {oid for oid, _ in no_range} == set(REORDERED_UCIFI)
    for oid, rid in no_range:
        r = snapshot_definitions[oid].resources[rid]
        assert r.name and (r.range, r.minimum) == ("", None)
    scrambled = (
        '<Item ID="7"><Description>d</Description><Units>s</Units><Type>Float</Type>'
        "<Mandatory>Mandatory</Mandatory><MultipleInstances>Multiple</MultipleInstances>"
        "<Operations>RW</Operations><RangeEnumeration>0..10</RangeEnumeration><Name>N</Name></Item>"
    )
    facts = (
        "<Mandatory>Mandatory</Mandatory><MultipleInstances>Single</MultipleInstances>"
        "<ObjectVersion>1.1</ObjectVersion><ObjectID>42001</ObjectID><Name>Scrambled</Name>"
    )
    d = one(ddf(scrambled, obj=facts))
    assert (d.id, d.name, d.version, d.multiple, d.mandatory) == (42001, "Scrambled", "1.1", False, True)
    r = d.resources[7]
    assert (r.name, r.operations, r.multiple, r.mandatory, r.type, r.units) == (
        "N",
        Operations.RW,
        True,
        True,
        ResourceType.FLOAT,
        "s",
    )
    assert (r.range, r.minimum, r.maximum) == ("0..10", 0, 10)


def test_description2_straight_after_description1(registry_dir: Path) -> None:
    [d] = load_ddf_file(registry_dir / "511.xml")
    assert d.id == 511 and d.description.startswith("This Object enables collecting")
    facts = (
        "<Name>T</Name><Description1>one</Description1><Description2>two</Description2>"
        "<ObjectID>42000</ObjectID><MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>"
    )
    assert one(ddf(obj=facts)).description == "one\n\ntwo"


def test_unsigned_integer_in_a_file_pointing_to_the_v1_0_schema(registry_dir: Path) -> None:
    [d] = load_ddf_file(registry_dir / "20.xml")
    assert ResourceType.UNSIGNED_INTEGER in {r.type for r in d.resources.values()}


def test_empty_type_and_operations(snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    resources = [r for d in snapshot_definitions.values() for r in d.resources.values()]
    executables = [r for r in resources if r.operations is Operations.E]
    assert len(executables) == 273 and all(r.type is ResourceType.NONE for r in executables)
    assert snapshot_definitions[10482].resources[5].type is ResourceType.NONE
    assert snapshot_definitions[10482].resources[5].operations.readable
    bootstrap_only = [
        (d.id, r.id)
        for d in snapshot_definitions.values()
        for r in d.resources.values()
        if r.operations.value == ""
    ]
    assert len(bootstrap_only) == 42 and {oid for oid, _ in bootstrap_only} == {0, 20, 21, 23}
    d = one(ddf(item(Operations="", Type="") + item(1, Operations="", Type=None)))
    assert d.resources[0].operations is Operations.NONE and d.resources[0].type is ResourceType.NONE
    assert d.resources[1].type is ResourceType.NONE  # no <Type> at all
    assert one(ddf(item(Operations="<![CDATA[]]>", Type=" "))).resources[0].type is ResourceType.NONE


def test_whitespace_only_range_and_units() -> None:
    r = one(ddf(item(RangeEnumeration=" \n\t ", Units="  "))).resources[0]
    assert (r.range, r.units, r.minimum) == ("", "", None)
    r = one(ddf(item(RangeEnumeration=None, Units=None))).resources[0]
    assert (r.range, r.units) == ("", "")


def test_names_are_stripped(registry_dir: Path, snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    padded = re.compile(rb"<Name>(\s+[^<]*?|[^<]*?\s+)</Name>")
    count = 0
    for f in sorted(registry_dir.glob("*.xml")):
        for raw in padded.findall(f.read_bytes()):
            count += 1
            name = raw.decode().strip()
            d = snapshot_definitions[int(f.stem)]
            assert name in {d.name} | {r.name for r in d.resources.values()}
    assert count == 14
    assert all(r.name == r.name.strip() for d in snapshot_definitions.values() for r in d.resources.values())
    assert one(ddf(item(Name="  Padded Name \n"))).resources[0].name == "Padded Name"
    assert snapshot_definitions[0].resources[0].name == "LWM2M  Server URI"  # inner spaces kept


def test_descriptions_with_cdata_entities_and_odd_characters(registry_dir: Path) -> None:
    [d0] = load_ddf_file(registry_dir / "0.xml")
    assert d0.description and "<![CDATA[" not in d0.description
    [d505] = load_ddf_file(registry_dir / "505.xml")
    assert "â€" in d505.description + "".join(r.description for r in d505.resources.values())
    d = one(ddf(item(Description="<![CDATA[a < b & “c”]]>"), obj=""))
    assert d.resources[0].description == "a < b & “c”"
    d = one(ddf(item(Description="a &lt; b &amp; c\u00a0d…")))
    assert d.resources[0].description == "a < b & c\u00a0d…"


def test_resources_are_held_in_id_order(registry_dir: Path) -> None:
    raw = (registry_dir / "3303.xml").read_bytes()
    ids_in_file = [int(x) for x in re.findall(rb'<Item ID="(\d+)"', raw)]
    assert ids_in_file != sorted(ids_in_file)
    [d] = load_ddf_file(registry_dir / "3303.xml")
    assert list(d.resources) == sorted(ids_in_file)


def test_highest_resource_id(snapshot_definitions: dict[int, ObjectDefinition]) -> None:
    assert max(r.id for d in snapshot_definitions.values() for r in d.resources.values()) == 6057


def test_missing_or_empty_versions_mean_1_0() -> None:
    facts = "<Name>T</Name><ObjectID>42000</ObjectID><MultipleInstances>Single</MultipleInstances>"
    facts += "<Mandatory>Optional</Mandatory>"
    d = one(ddf(obj=facts))
    assert (d.version, d.lwm2m_version, d.urn) == ("1.0", "1.0", "")
    d = one(ddf(obj=facts + "<ObjectVersion/><LWM2MVersion> </LWM2MVersion>"))
    assert (d.version, d.lwm2m_version) == ("1.0", "1.0")


def test_several_objects_in_one_document() -> None:
    facts = "<MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>"
    data = (
        f'<LWM2M><Object ObjectType="MODefinition"><Name>A</Name><ObjectID>42000</ObjectID>{facts}</Object>'
        f'<Object ObjectType="MODefinition"><Name>B</Name><ObjectID>42001</ObjectID>{facts}'
        f"<Resources>{item(1)}</Resources></Object></LWM2M>"
    ).encode()
    a, b = parse_ddf(data)
    assert (a.name, len(a.resources), b.name, len(b.resources)) == ("A", 0, "B", 1)


@pytest.mark.parametrize(
    ("text", "type_", "bounds"),
    [
        ("0..100", ResourceType.INTEGER, (0, 100)),
        ("-1..1", ResourceType.INTEGER, (-1, 1)),
        ("-110..-48", ResourceType.INTEGER, (-110, -48)),
        ("0.000001..1.0", ResourceType.FLOAT, (0.000001, 1.0)),
        ("-100.0..100.0", ResourceType.FLOAT, (-100.0, 100.0)),
        ("0..18446744073709551615", ResourceType.UNSIGNED_INTEGER, (0, 18446744073709551615)),
        ("1..864000", ResourceType.TIME, (1, 864000)),
        ("0..1", ResourceType.BOOLEAN, (0, 1)),
        (" 0 .. 10 ", ResourceType.INTEGER, (0, 10)),
        ("1...15", ResourceType.INTEGER, (1, 15)),
        ("0..255", ResourceType.STRING, (0, 255)),  # a length in bytes
        ("0..255 bytes", ResourceType.STRING, (0, 255)),
        ("1..64 Bytes", ResourceType.STRING, (1, 64)),
        ("0..255 bytes", ResourceType.INTEGER, (None, None)),
        ("0..100", ResourceType.OBJLNK, (None, None)),
        ("0..100", ResourceType.NONE, (None, None)),
        ("", ResourceType.INTEGER, (None, None)),
        ("6", ResourceType.OPAQUE, (None, None)),
        ("1 bytes", ResourceType.INTEGER, (None, None)),
        ("255", ResourceType.INTEGER, (None, None)),
        ("16,32,48", ResourceType.OPAQUE, (None, None)),
        ("0..247, 255", ResourceType.INTEGER, (None, None)),
        ("0..3, 99", ResourceType.INTEGER, (None, None)),
        ("0; 3.8..20.5", ResourceType.FLOAT, (None, None)),
        ("<7 to >12.5", ResourceType.INTEGER, (None, None)),
        ("8-Bits", ResourceType.INTEGER, (None, None)),
        ("ON;OFF", ResourceType.FLOAT, (None, None)),
        ("2 Instances", ResourceType.INTEGER, (None, None)),
        (
            "The possible values are those listed in the LwM2M Core Specification",
            ResourceType.STRING,
            (None, None),
        ),
        ("0: RELEASED\n\t\t\t\t1: PRESSED\n\t\t\t\t2: FAULT", ResourceType.UNSIGNED_INTEGER, (None, None)),
        ("-30..-120", ResourceType.INTEGER, (None, None)),  # reversed: not clear which was meant
        ("0..1..2", ResourceType.INTEGER, (None, None)),
        ("a..b", ResourceType.INTEGER, (None, None)),
    ],
)
def test_parse_range(text: str, type_: ResourceType, bounds: tuple) -> None:
    got = parse_range(text, type_)
    assert got == bounds
    assert [type(x) for x in got] == [type(x) for x in bounds]  # integers stay exact


def test_range_text_is_kept_as_written() -> None:
    r = one(ddf(item(RangeEnumeration="  0..255 bytes ", Type="String"))).resources[0]
    assert (r.range, r.minimum, r.maximum) == ("0..255 bytes", 0, 255)


# -- sources: bytes, file, folder ----------------------------------------------------------------


def test_load_from_bytes_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(ddf(item()))
    (tmp_path / "b.xml").write_bytes(ddf(obj="<Name>B</Name><ObjectID>5</ObjectID>" + _FLAGS))
    (tmp_path / "notes.txt").write_text("not a DDF file")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.xml").write_text("<broken")  # subfolders are not read
    assert [d.id for d in load_ddf(ddf())] == [42000]
    assert [d.id for d in load_ddf(tmp_path / "a.xml")] == [42000]
    assert [d.id for d in load_ddf(str(tmp_path))] == [5, 42000]
    assert [d.id for d in load_ddf_dir(tmp_path)] == [5, 42000]


_FLAGS = "<MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>"


def test_same_object_and_version_twice_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(ddf())
    (tmp_path / "b.xml").write_bytes(ddf())
    with pytest.raises(DDFError, match=r"b\.xml: object 42000 version 1\.0 is also defined in .*a\.xml"):
        load_ddf_dir(tmp_path)


def test_two_versions_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(ddf())
    (tmp_path / "b.xml").write_bytes(ddf().replace(b"<ObjectVersion>1.0", b"<ObjectVersion>1.2"))
    assert [(d.id, d.version) for d in load_ddf_dir(tmp_path)] == [(42000, "1.0"), (42000, "1.2")]


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "the file is empty"),
        (b"   \n", "the file is empty"),
        (b"<LWM2M><Object>", "not well-formed XML"),
        (b"<LWM2M></LWM3M>", "not well-formed XML"),
        (b"just text", "not well-formed XML"),
        (b"<DDFList/>", "the root element is <DDFList>, expected <LWM2M>"),
        (b"<LWM2M/>", "<LWM2M> holds no <Object>"),
        (ddf(obj="<Name>T</Name>" + _FLAGS), "<Object> has no ID"),
        (ddf(obj="<Name>T</Name><ObjectID>abc</ObjectID>" + _FLAGS), "ID 'abc' is not an integer 0..65534"),
        (ddf(obj="<Name>T</Name><ObjectID>65535</ObjectID>" + _FLAGS), "ID '65535' is not an integer"),
        (ddf(obj="<Name>T</Name><ObjectID>-3</ObjectID>" + _FLAGS), "ID '-3' is not an integer"),
        (ddf(obj="<ObjectID>7</ObjectID>" + _FLAGS), "object 7 has no <Name>"),
        (
            ddf(obj="<Name>T</Name><ObjectID>7</ObjectID><Mandatory>Optional</Mandatory>"),
            "no <MultipleInstances>",
        ),
        (
            ddf(obj="<Name>T</Name><ObjectID>7</ObjectID><MultipleInstances>Many</MultipleInstances>"),
            "<MultipleInstances> is 'Many', expected Multiple or Single",
        ),
        (ddf(obj="<Name>T</Name><ObjectID>7</ObjectID><ObjectVersion>one</ObjectVersion>" + _FLAGS), "'one'"),
        (ddf(item(0) + item(0)), "object 42000: resource ID 0 appears twice"),
        (ddf(item("x")), "resource <Item>: ID 'x' is not an integer"),
        (ddf("<Item><Name>N</Name></Item>"), "resource <Item> has no ID"),
        (ddf(item(3, Name=None)), "object 42000 resource 3 has no <Name>"),
        (ddf(item(3, Operations=None)), "object 42000 resource 3 has no <Operations>"),
        (ddf(item(3, Operations="RX")), "object 42000 resource 3: unknown operations 'RX'"),
        (ddf(item(3, Type="Double")), "object 42000 resource 3: unknown resource type 'Double'"),
        (ddf(item(3, Mandatory="Yes")), "<Mandatory> is 'Yes', expected Mandatory or Optional"),
    ],
)
def test_bad_ddf_raises_a_clear_error(data: bytes, says: str) -> None:
    with pytest.raises(DDFError) as err:
        parse_ddf(data, "mine.xml")
    assert str(err.value).startswith("mine.xml: ")
    assert says in str(err.value)
    assert err.value.source == "mine.xml"


def test_ddf_error_is_a_value_error() -> None:
    assert issubclass(DDFError, ValueError)


def test_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "9999.xml"
    bad.write_text("<LWM2M><Object>")
    with pytest.raises(DDFError, match=re.escape(str(bad)) + ": not well-formed XML: .*line 1"):
        load_ddf_file(bad)
    with pytest.raises(DDFError, match=re.escape(str(bad))):
        load_ddf_dir(tmp_path)
    with pytest.raises(DDFError, match="cannot read"):
        load_ddf_file(tmp_path / "absent.xml")
    with pytest.raises(DDFError, match="not a folder"):
        load_ddf_dir(tmp_path / "absent")


def test_case_and_spaces_of_flags_are_tolerated() -> None:
    facts = "<Name>T</Name><ObjectID>7</ObjectID><MultipleInstances> single </MultipleInstances>"
    facts += "<Mandatory>MANDATORY</Mandatory>"
    d = one(ddf(item(Operations=" rw ", MultipleInstances="multiple"), obj=facts))
    assert (d.multiple, d.mandatory) == (False, True)
    assert (d.resources[0].operations, d.resources[0].multiple) == (Operations.RW, True)


# -- hostile XML ---------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<LWM2M><Object ObjectType="MODefinition"><Name>&lol9;</Name><ObjectID>42000</ObjectID>
<MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory></Object></LWM2M>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE LWM2M [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<LWM2M><Object ObjectType="MODefinition"><Name>&secret;</Name><ObjectID>42000</ObjectID>
<MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory></Object></LWM2M>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE LWM2M SYSTEM "http://example.invalid/evil.dtd">
<LWM2M/>
"""


@pytest.mark.parametrize(
    "data", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD], ids=["laughs", "xxe", "dtd"]
)
def test_hostile_xml_is_refused(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(DDFError, match=r"evil\.xml: refused unsafe XML"):
        parse_ddf(data, "evil.xml")
    f = tmp_path / "evil.xml"
    f.write_bytes(data)
    with pytest.raises(DDFError, match="refused unsafe XML"):
        load_ddf(f)


def test_ddf_error_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(DDFError("a.xml", "bad")))
    assert (str(err), err.source, err.problem) == ("a.xml: bad", "a.xml", "bad")
