"""bench/node_million.py: a tiny run prints every figure (memory per registration and per
observation, lookups and pages in the store and through the REST API, the restart on SQLite)
and stops the server it started. Nothing here is timed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.bench.test_cluster import still_running

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "node_million.py"


def run(*args: str) -> str:
    """What the bench prints, run with ``args``; it must end well."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, str(SCRIPT), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_tiny_run_prints_every_figure_and_stops_the_server(tmp_path: Path) -> None:
    out = run(
        "--count", "500", "--observed", "50", "--samples", "5", "--limit", "10", "--state", str(tmp_path)
    )
    for figure in (
        "memory   500 registrations in the store:",
        "lookup by endpoint   p50",
        "a page of 10",
        "register 50 registrations over CoAP",
        "observe  50 observations (one per registered device):",
        "sqlite   500 registrations and 500 observations written in",
        "restart  lwm2m server on them answers CoAP",
        "its 500 stored observations all taken up",
        "RSS at the end",
        "GET /api/clients/{ep}",
        "GET /api/clients?limit=10&cursor=",
    ):
        assert figure in out, out
    assert still_running(tmp_path) == []


def test_the_observe_phase_tells_where_the_memory_goes() -> None:
    out = run("--count", "50", "--observed", "50", "--phases", "observe", "--trace", "3")
    assert "B per registration in all; the top 3:" in out, out
    assert "B per observation in all; the top 3:" in out, out
    places = [line for line in out.splitlines() if " blocks  " in line]
    assert len(places) == 6 and all(".py:" in line for line in places), out


def test_the_observe_phase_runs_on_sqlite_too(tmp_path: Path) -> None:
    out = run(
        "--count",
        "50",
        "--observed",
        "50",
        "--phases",
        "observe",
        "--observe-store",
        "sqlite",
        "--state",
        str(tmp_path),
    )
    assert "observe  the server's store: sqlite" in out, out
    assert "observe  50 observations (one per registered device):" in out, out
    assert list(tmp_path.iterdir()) == []  # its folder went with it
