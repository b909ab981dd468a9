"""bench/ingest_instructions.py end to end at a tiny size, so that the benchmark does not rot:
callgrind, the export worker, mosquitto and the webhook receiver; every figure line is printed,
and no process it started outlives it. Nothing here is timed: the figures are printed, never
checked.

The bench runs under a small wrapper that makes itself the child subreaper (Linux
``PR_SET_CHILD_SUBREAPER``): whatever the bench started and left behind, even in a session of
its own as the export worker is, becomes the wrapper's child and is seen there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.bench.test_cluster import still_running

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "ingest_instructions.py"

# Runs the command given (its output to files: a pipe would wait for whatever holds it), then
# answers the processes left over as its children (orphans of the command, reparented here),
# then kills and reaps them.
WRAPPER = """
import ctypes, json, os, signal, subprocess, sys, time
PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
folder = sys.argv[1]
with open(f"{folder}/out", "w") as out, open(f"{folder}/err", "w") as err:
    rc = subprocess.run(sys.argv[2:], stdout=out, stderr=err).returncode
time.sleep(0.5)
left = []
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
    except OSError:
        continue
    if int(fields[1]) == os.getpid() and fields[0] != "Z":
        left.append(cmdline)
        os.kill(int(entry), signal.SIGKILL)
while True:
    try:
        if os.waitpid(-1, 0)[0] == 0:
            break
    except ChildProcessError:
        break
output = {name: open(f"{folder}/{name}").read() for name in ("out", "err")}
print(json.dumps({"rc": rc, **output, "left": left}))
"""


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_a_tiny_run_prints_every_figure_and_stops_what_it_started(tmp_path: Path) -> None:
    state = tmp_path / "state"
    argv = [sys.executable, "-c", WRAPPER, str(tmp_path), sys.executable, str(SCRIPT)]
    argv += ["--devices", "4", "--notifications", "40", "--warmup", "8", "--state", str(state)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    wrapped = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert wrapped.returncode == 0, wrapped.stdout + wrapped.stderr
    done = json.loads(wrapped.stdout)
    out = done["out"]
    assert done["rc"] == 0, out + done["err"]
    assert "server instructions per notification (callgrind; 40 SenML-CBOR notifications per phase" in out, (
        out
    )
    for label in (
        "plain  ",
        "the REST API's ring of events (RecentEvents)",
        "/metrics on (lag timer)",
        "+ a scrape every 15 s at 10,000/s",
        "webhooks: handoff to the worker",
        "MQTT: handoff to the worker",
        "plain again",
    ):
        line = next((line for line in out.splitlines() if line.strip().startswith(label.strip())), None)
        assert line is not None and "%" in line, (label, out)
    # Every notification fed to the export phases went to the worker.
    assert out.count("40 events handed over") == 2, out
    assert "largest: " in out and "against the ring" in out and "vs the ring (lwm2m server)" in out, out
    assert "export workers started and stopped: " in out, out
    assert done["left"] == [], done["left"]
    assert still_running(tmp_path) == []
