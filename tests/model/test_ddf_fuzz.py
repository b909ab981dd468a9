"""The DDF loader fuzzed: any bytes, any text, and valid documents with mutated elements give
object definitions or a DDFError naming the source, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.errors import DDFError
from lwm2m.model.ddf import parse_ddf
from lwm2m.model.definition import ObjectDefinition

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OBJECT_FIELDS = {
    "Name": "Test",
    "ObjectID": "42000",
    "ObjectURN": "urn:oma:lwm2m:x:42000",
    "LWM2MVersion": "1.1",
    "ObjectVersion": "1.0",
    "MultipleInstances": "Multiple",
    "Mandatory": "Optional",
}
ITEM_FIELDS = {
    "Name": "Value",
    "Operations": "R",
    "MultipleInstances": "Single",
    "Mandatory": "Optional",
    "Type": "Integer",
    "RangeEnumeration": "0..10",
    "Units": "m",
    "Description": "d",
}


def document(head: str, obj: dict[str, str], rid: str, item: dict[str, str]) -> str:
    facts = "".join(f"<{k}>{v}</{k}>" for k, v in obj.items())
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in item.items())
    return (
        f'{head}<LWM2M><Object ObjectType="MODefinition">{facts}'
        f'<Resources><Item ID="{rid}">{fields}</Item></Resources></Object></LWM2M>'
    )


def parse_or_ddf_error(data: bytes | str) -> None:
    try:
        out = parse_ddf(data, "fuzz.xml")
    except DDFError as exc:
        assert exc.source == "fuzz.xml"
        return
    assert out and all(isinstance(d, ObjectDefinition) for d in out)


@pytest.mark.parametrize(
    "head",
    [
        '<?xml version="1.0" encoding="UTF-9"?>',
        '<?xml version="1.0" encoding="ebcdic-nonsense"?>',
        '<?xml version="1.0" encoding="UTF-16"?>',
        '<?xml version="1.0" encoding="utf-32"?>',
        '<?xml version="1.0" encoding="rot13"?>',
        '<?xml version="1.0" encoding="hex"?>',
        '<?xml version="1.0" encoding="base64"?>',
        '<?xml version="1.0" encoding="idna"?>',
        '<?xml version="1.0" encoding="undefined"?>',
    ],
)
def test_unknown_or_unusable_encodings_are_ddf_errors(head: str) -> None:
    with pytest.raises(DDFError, match=r"fuzz\.xml"):
        parse_ddf(document(head, OBJECT_FIELDS, "0", ITEM_FIELDS).encode(), "fuzz.xml")


def test_text_that_is_not_unicode_and_deep_nesting() -> None:
    parse_or_ddf_error("<LWM2M>\udcff</LWM2M>")
    deep = "<a>" * 5000 + "</a>" * 5000
    parse_or_ddf_error(document("", {**OBJECT_FIELDS, "Name": deep}, "0", ITEM_FIELDS))
    parse_or_ddf_error(document("", OBJECT_FIELDS, "0", {**ITEM_FIELDS, "Type": deep}))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    parse_or_ddf_error(data)


@FUZZ
@given(st.text(max_size=200))
def test_random_text(data: str) -> None:
    parse_or_ddf_error(data)


# Values that are close to valid ones, or plainly hostile.
field_values = st.sampled_from(
    [
        "",
        " ",
        "-1",
        "65535",
        "99999999999999999999",
        "1.0",
        "2.x",
        "Multiple",
        "Single",
        "Mandatory",
        "Optional",
        "RWE",
        "X",
        "String",
        "Objlnk",
        "Float",
        "Time",
        "nonsense",
        "1..0",
        "0...1e999",
        "-1e309..1e309",
        "0..18446744073709551616",
        "<x/>",
        "&amp;",
        "\u0663",
        "&#0;",
    ]
) | st.text(alphabet=st.characters(blacklist_characters="<&", blacklist_categories=("Cs",)), max_size=12)


@FUZZ
@given(
    st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0"?>\n']),
    st.dictionaries(st.sampled_from(list(OBJECT_FIELDS)), field_values),
    st.sampled_from(["0", "-1", "65535", "x", "", "1e3", "\u0663"]),
    st.dictionaries(st.sampled_from(list(ITEM_FIELDS)), field_values),
    st.sets(st.sampled_from([*OBJECT_FIELDS, *ITEM_FIELDS])),
)
def test_valid_documents_with_mutated_fields(
    head: str, obj: dict[str, str], rid: str, item: dict[str, str], dropped: set[str]
) -> None:
    obj = {k: v for k, v in {**OBJECT_FIELDS, **obj}.items() if k not in dropped}
    item = {k: v for k, v in {**ITEM_FIELDS, **item}.items() if k not in dropped}
    text = document(head, obj, rid, item)
    parse_or_ddf_error(text)
    parse_or_ddf_error(text.encode("utf-8", "surrogatepass"))
