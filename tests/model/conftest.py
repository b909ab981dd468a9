"""The registry snapshot's own tables (index.csv, resources.csv) and its files, loaded once."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lwm2m.model.ddf import load_ddf_dir
from lwm2m.model.definition import ObjectDefinition


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def snapshot_index(registry_dir: Path) -> dict[int, dict[str, str]]:
    return {int(row["object_id"]): row for row in _read_csv(registry_dir / "index.csv")}


@pytest.fixture(scope="session")
def snapshot_resources(registry_dir: Path) -> dict[int, dict[int, dict[str, str]]]:
    out: dict[int, dict[int, dict[str, str]]] = {}
    for row in _read_csv(registry_dir / "resources.csv"):
        out.setdefault(int(row["object_id"]), {})[int(row["resource_id"])] = row
    return out


@pytest.fixture(scope="session")
def snapshot_definitions(registry_dir: Path) -> dict[int, ObjectDefinition]:
    """Every object of the snapshot, without descriptions (as the catalogue holds them)."""
    return {d.id: d for d in load_ddf_dir(registry_dir, descriptions=False)}
