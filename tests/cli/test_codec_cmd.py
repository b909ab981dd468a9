from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lwm2m.cli import main

DEVICE = [
    {"path": "/3/0/0", "value": "Open Mobile Alliance"},
    {"path": "/3/0/7/0", "value": 3800},
    {"path": "/3/0/7/1", "value": 5000},
    {"path": "/3/0/13", "value": 1367491215},
]


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("fmt", ["tlv", "senml-json", "senml-cbor", "lwm2m-cbor", "oma-json", "11542", "112"])
def test_encode_then_decode_gives_the_records_back(fmt: str) -> None:
    code, out, err = run("encode", "--format", fmt, "--path", "/3/0", json.dumps(DEVICE))
    assert code == 0, err
    hexed = out.strip()
    bytes.fromhex(hexed)
    code, out, err = run("decode", "--format", fmt, "--path", "/3/0", hexed)
    assert code == 0, err
    assert json.loads(out) == DEVICE


def test_decode_reads_raw_bytes_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "payload.bin"
    f.write_bytes(b"21.5")
    code, out, _ = run("decode", "-f", "text", "-p", "/3303/0/5700", f"@{f}")
    assert code == 0
    assert json.loads(out) == [{"path": "/3303/0/5700", "value": 21.5}]


def test_opaque_and_objlnk_use_the_json_form() -> None:
    code, out, _ = run("decode", "-f", "opaque", "-p", "/5/0/0", "00ff10")
    assert json.loads(out) == [{"path": "/5/0/0", "value": "AP8Q"}]
    code, out, _ = run("encode", "-f", "text", "-p", "/2/0/0", '[{"path": "/2/0/0", "value": 3}]')
    assert code == 0 and bytes.fromhex(out.strip()) == b"3"


def test_user_model_types_values(tmp_path: Path) -> None:
    (tmp_path / "x.xml").write_text(
        """<LWM2M><Object ObjectType="MODefinition"><Name>X</Name><ObjectID>40000</ObjectID>
        <MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory><Resources>
        <Item ID="1"><Name>F</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Mandatory</Mandatory><Type>Float</Type><RangeEnumeration/><Units/></Item>
        </Resources></Object></LWM2M>"""
    )
    code, out, err = run("decode", "-f", "cbor", "-p", "/40000/0/1", "--model", str(tmp_path), "02")
    assert code == 0, err
    assert json.loads(out) == [{"path": "/40000/0/1", "value": 2.0}]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("decode", "-f", "nope", "-p", "/3/0", "00"), "--format 'nope'"),
        (("decode", "-f", "tlv", "-p", "/3/x", "00"), "--path"),
        (("decode", "-f", "tlv", "-p", "/3/0", "zz"), "not hex"),
        (("decode", "-f", "tlv", "-p", "/3/0", "c8"), "cannot decode as tlv"),
        (("decode", "-f", "tlv", "-p", "/3/0", "@/nonexistent/file"), "cannot read"),
        (("encode", "-f", "tlv", "-p", "/3/0", "{not json"), "not JSON"),
        (("encode", "-f", "tlv", "-p", "/3/0", '[{"path": "/3/0/7/0", "value": "x"}]'), "Integer"),
        (("encode", "-f", "tlv", "-p", "/3/0", '[{"path": "/4/0/1", "value": 1}]'), "/4/0/1"),
        (("decode", "-f", "tlv", "-p", "/3/0", "--model", "/nonexistent", "00"), "--model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lwm2m", "decode", "-f", "text", "-p", "/3/0/9", "3835"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout) == [{"path": "/3/0/9", "value": 85}]
