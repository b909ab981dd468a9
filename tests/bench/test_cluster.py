"""bench/cluster.py end to end at a tiny size, so that the benchmark does not rot: Redis, three
nodes and nginx, simulated devices registering through nginx, observed and notifying, the
reads, the failover and the SQLite node; every figure line is printed, and no process it
started outlives it. Nothing here is timed: the figures are printed, never checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.procs import parents

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cluster.py"
DEVICES = 12


def still_running(folder: Path) -> list[str]:
    """Command lines of live processes that name ``folder`` (nodes' data, nginx's and Redis's
    folders are all under it)."""
    found = []
    for pid in parents():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(cmdline)
    return found


def test_a_tiny_run_prints_every_figure_and_stops_what_it_started(tmp_path: Path) -> None:
    argv = [sys.executable, str(SCRIPT), "--devices", str(DEVICES), "--processes", "2"]
    argv += ["--lifetime", "10", "--update-interval", "1", "--window", "1", "--reads", "3", "--idle", "0.5"]
    argv += ["--timeout", "20", "--state", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for line in (
        f"cluster  registered {DEVICES}/{DEVICES}",
        f"cluster  observed {DEVICES}/{DEVICES} devices' /3303/0/5700",
        "bytes per registration with one observation",
        "per node CPU-second",
        "idle before (no observation)",
        "per node CPU-second beyond idle",
        "read     same node  p50",
        "read     other node p50",
        "failover kill -9 of n",
        f"sqlite   one node: registered {DEVICES}/{DEVICES}",
        f"sqlite   observed {DEVICES}/{DEVICES}",
        "ratio    cluster/sqlite",
    ):
        assert line in out, out
    # Each node's share of the window's notifications and CPU is printed beside the total.
    for node in ("n1", "n2", "n3", "sqlite"):
        assert f"         {node}: " in out, out
    assert still_running(tmp_path) == []
