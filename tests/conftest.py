"""Shared fixtures: where the OMA registry snapshot lies, free loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REGISTRY_DIR = SHARED / "lwm2m-registry"


@pytest.fixture(scope="session")
def registry_dir() -> Path:
    """The OMA registry snapshot (test data), kept beside the repository."""
    if not (REGISTRY_DIR / "index.csv").is_file():
        pytest.fail(f"the OMA registry snapshot is missing: expected it at {REGISTRY_DIR}")
    return REGISTRY_DIR


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the OS says is free now (never 5683: a user may run a server there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()
