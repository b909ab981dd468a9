"""``lwm2m decode`` and ``lwm2m encode``: LwM2M payloads to and from the JSON record form."""

from __future__ import annotations

import binascii
import json
import string
import sys
from collections.abc import Callable
from pathlib import Path as FsPath

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.codec.base import Codec
from lwm2m.codec.formats import get_codec
from lwm2m.errors import CodecError, DDFError, InvalidPath, JsonFormError
from lwm2m.model.catalogue import build_registry
from lwm2m.model.jsonform import records_from_json, records_to_json
from lwm2m.model.path import Path
from lwm2m.model.registry import ObjectRegistry

_FORMAT_HELP = (
    "content format by name (tlv, senml-json, senml-cbor, lwm2m-cbor, oma-json, text, opaque, cbor, link)"
    " or number"
)


def _codec(fmt: str) -> Codec:
    try:
        return get_codec(int(fmt) if fmt.isdigit() else fmt)
    except CodecError as exc:
        fail(f"--format {fmt!r}: {exc}")


def _path(text: str) -> Path:
    try:
        return Path.parse(text)
    except InvalidPath as exc:
        fail(f"--path: {exc}")


def _models(dirs: tuple[str, ...]) -> ObjectRegistry:
    try:
        return build_registry(dirs)
    except (DDFError, OSError) as exc:
        fail(f"--model: {exc}")


def _format_options(command: Callable[..., None]) -> Callable[..., None]:
    """--format, --path and --model, shared by decode and encode."""
    for option in reversed(
        (
            click.option("--format", "-f", "fmt", required=True, help=_FORMAT_HELP),
            click.option(
                "--path", "-p", "path", default="/", show_default=True, help="the path the payload stands for"
            ),
            click.option(
                "--model", "-m", "model_dirs", multiple=True, help="folder or file of DDF XML (repeatable)"
            ),
        )
    ):
        command = option(command)
    return command


def _setup(fmt: str, path: str, model_dirs: tuple[str, ...]) -> tuple[Codec, Path, ObjectRegistry]:
    return _codec(fmt), _path(path), _models(model_dirs)


def _read_arg(arg: str) -> bytes | str:
    """``@FILE`` (``@-`` for standard input) gives the file's bytes; anything else is the text."""
    if not arg.startswith("@"):
        return arg
    name = arg[1:]
    try:
        return sys.stdin.buffer.read() if name == "-" else FsPath(name).read_bytes()
    except OSError as exc:
        fail(f"cannot read {name!r}: {exc.strerror or exc}")


def _hex_bytes(text: str) -> bytes:
    cleaned = "".join(ch for ch in text if ch not in string.whitespace + ":")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next((c for c in cleaned if c not in string.hexdigits), None)
        why = f"{bad!r} is not a hex digit" if bad else "odd number of hex digits"
        fail(f"payload is not hex ({why}); give hex digits or @FILE for raw bytes")


@main.command()
@_format_options
@click.argument("payload")
def decode(fmt: str, path: str, model_dirs: tuple[str, ...], payload: str) -> None:
    """Decode PAYLOAD (hex digits, or @FILE for raw bytes) and print its records as JSON."""
    codec, base, models = _setup(fmt, path, model_dirs)
    raw = _read_arg(payload)
    data = _hex_bytes(raw) if isinstance(raw, str) else raw
    try:
        records = codec.decode(data, base, models)
    except CodecError as exc:
        fail(f"cannot decode as {codec.name}: {exc}")
    click.echo(json.dumps(records_to_json(records), indent=2, ensure_ascii=False))


@main.command()
@_format_options
@click.argument("records")
def encode(fmt: str, path: str, model_dirs: tuple[str, ...], records: str) -> None:
    """Encode RECORDS (the JSON record form, or @FILE) and print the payload as hex."""
    codec, base, models = _setup(fmt, path, model_dirs)
    raw = _read_arg(records)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        fail(f"RECORDS is not JSON: {exc}")
    try:
        parsed = records_from_json(data, models)
        out = codec.encode(parsed, base, models)
    except (JsonFormError, CodecError) as exc:
        fail(f"cannot encode as {codec.name}: {exc}")
    click.echo(binascii.hexlify(out).decode())
