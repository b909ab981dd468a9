"""Shared fixtures: where the OMA registry snapshot lies, free loopback ports."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.ports import free_udp_port

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REGISTRY_DIR = SHARED / "lwm2m-registry"


@pytest.fixture(scope="session")
def registry_dir() -> Path:
    """The OMA registry snapshot (test data), kept beside the repository."""
    if not (REGISTRY_DIR / "index.csv").is_file():
        pytest.fail(f"the OMA registry snapshot is missing: expected it at {REGISTRY_DIR}")
    return REGISTRY_DIR


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()
