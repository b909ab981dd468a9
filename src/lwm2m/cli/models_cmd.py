"""``lwm2m models``: list and show object definitions (the bundled catalogue plus user DDF files)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.errors import DDFError
from lwm2m.model.catalogue import GROUPS, build_registry, group_of, object_to_dict
from lwm2m.model.definition import ObjectDefinition
from lwm2m.model.path import MAX_ID
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ResourceType

_MODEL_HELP = "folder or file of DDF XML that adds to or overrides the catalogue (repeatable)"


def _registry(model_dirs: tuple[str, ...]) -> ObjectRegistry:
    try:
        return build_registry(model_dirs)
    except (DDFError, OSError) as exc:
        fail(f"--model: {exc}")


def _instances(multiple: bool) -> str:
    return "Multiple" if multiple else "Single"


def _mandatory(mandatory: bool) -> str:
    return "Mandatory" if mandatory else "Optional"


def _summary(d: ObjectDefinition) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "version": d.version,
        "lwm2m_version": d.lwm2m_version,
        "multiple": d.multiple,
        "mandatory": d.mandatory,
        "group": group_of(d.id),
        "resource_count": len(d.resources),
    }


@main.group()
def models() -> None:
    """Object definitions: the bundled catalogue (LwM2M core, IPSO, uCIFI) and your DDF files."""


@models.command("list")
@click.option("--group", "-g", type=click.Choice(GROUPS), help="only objects of this ID group")
@click.option("--model", "-m", "model_dirs", multiple=True, help=_MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def list_(group: str | None, model_dirs: tuple[str, ...], as_json: bool) -> None:
    """List the known objects, newest version of each."""
    registry = _registry(model_dirs)
    found = [d for d in registry if group is None or group_of(d.id) == group]
    if as_json:
        click.echo(json.dumps([_summary(d) for d in found], indent=2))
        return
    table = Table(title=f"{len(found)} objects" + (f" in group {group}" if group else ""))
    for col in ("ID", "Name", "Version", "LwM2M", "Instances", "Mandatory", "Resources", "Group"):
        table.add_column(col, justify="right" if col in ("ID", "Resources") else "left")
    for d in found:
        table.add_row(
            str(d.id),
            Text(d.name),  # Text, not markup: names come from user files
            d.version,
            d.lwm2m_version,
            _instances(d.multiple),
            _mandatory(d.mandatory),
            str(len(d.resources)),
            group_of(d.id),
        )
    Console().print(table)


def _object_id(text: str) -> int:
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or int(t) > MAX_ID:
        fail(f"object ID {text!r} is not an integer 0..{MAX_ID}")
    return int(t)


def _range_lines(text: str) -> str:
    # Multi-line "N: label" enumerations keep the XML's indentation; drop it for display.
    return "\n".join(line.strip() for line in text.splitlines())


@models.command()
@click.argument("object_id", metavar="ID")
@click.option("--object-version", "version", help="a version other than the newest, e.g. 1.1")
@click.option("--model", "-m", "model_dirs", multiple=True, help=_MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def show(object_id: str, version: str | None, model_dirs: tuple[str, ...], as_json: bool) -> None:
    """Show one object and its resources."""
    oid = _object_id(object_id)
    registry = _registry(model_dirs)
    d = registry.get(oid, version)
    if d is None:
        if oid in registry:
            known = ", ".join(registry.versions(oid))
            fail(f"object {oid} has no version {version!r} (known: {known})")
        where = (
            "the catalogue or the --model files"
            if model_dirs
            else "the catalogue (add its DDF file with --model)"
        )
        fail(f"unknown object ID {oid}: not in {where}")
    if as_json:
        out = object_to_dict(d, descriptions=True)
        out["group"] = group_of(d.id)
        click.echo(json.dumps(out, indent=2))
        return
    console = Console()
    console.print(
        f"[bold]{d.id} {escape(d.name)}[/bold]  version {d.version}, LwM2M {d.lwm2m_version}, "
        f"{_instances(d.multiple).lower()}, {_mandatory(d.mandatory).lower()}, group {group_of(d.id)}"
        + (f"\n{escape(d.urn)}" if d.urn else ""),
        highlight=False,
    )
    table = Table()
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("Name", min_width=12)  # on a narrow terminal the other columns wrap first
    table.add_column("Operations", no_wrap=True)
    for col in ("Instances", "Mandatory", "Type", "Units", "Range"):
        table.add_column(col)
    for r in d.resources.values():
        table.add_row(
            str(r.id),
            Text(r.name),
            r.operations.value or "-",  # empty: only the bootstrap server may access it
            _instances(r.multiple),
            _mandatory(r.mandatory),
            "" if r.type is ResourceType.NONE else r.type.value,
            Text(r.units),
            Text(_range_lines(r.range)),
        )
    console.print(table)
