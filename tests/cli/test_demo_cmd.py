"""``lwm2m demo`` in a real process on free ports: the server, the console and a fleet; SIGINT stops it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers.ports import free_tcp_port, free_udp_port


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_demo_runs_server_console_and_fleet_and_stops_on_sigint(tmp_path: Path) -> None:
    coap, http = free_udp_port(), free_tcp_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lwm2m",
            "demo",
            "--coap-port",
            str(coap),
            "--http-port",
            str(http),
            "--count",
            "6",
            "--rate",
            "100",
            "--data",
            str(tmp_path / "demo-data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"console on (http://\S+)/", line)
        assert match, line + proc.stderr.read()  # type: ignore[union-attr]
        base = match.group(1)
        assert base == f"http://127.0.0.1:{http}"
        status, page = get(f"{base}/")
        assert status == 200 and b"console.js" in page
        status, script = get(f"{base}/console/console.js")
        assert status == 200 and b"streamEvents" in script
        deadline = time.monotonic() + 20
        clients: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            clients = json.loads(get(f"{base}/api/clients")[1])["clients"]
            if len(clients) == 6:
                break
            time.sleep(0.2)
        assert len(clients) == 6, clients
        assert all(str(c["endpoint"]).startswith("demo-") for c in clients)
        # The default store is SQLite in the demo's own data folder.
        assert (tmp_path / "demo-data" / "lwm2m.db").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_demo_names_a_bad_profile() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lwm2m", "demo", "--profile", "toaster"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--profile 'toaster'" in proc.stderr and "mixed" in proc.stderr
