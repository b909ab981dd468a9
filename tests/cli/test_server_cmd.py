"""``lwm2m server`` as a user runs it: a subprocess serving CoAP and the REST API."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path as FsPath

import httpx
import pytest
from tests.helpers.ports import free_tcp_port, free_udp_port

from lwm2m.cli.server_cmd import open_data, store_url
from lwm2m.model.path import Path
from lwm2m.model.record import Record


def test_server_serves_the_api_and_stops_on_sigint() -> None:
    coap, http = free_udp_port(), free_tcp_port()
    command = [sys.executable, "-m", "lwm2m", "server", "--coap-port", str(coap), "--http-port", str(http)]
    guard = ["--allowed-host", "lwm2m.lan", "--cors-origin", "http://dash.example:3000"]
    proc = subprocess.Popen(
        [*command, "--store", "memory", *guard], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"coap://127.0.0.1:{coap}" in line and f"http://127.0.0.1:{http}/api" in line, line
        answer = httpx.get(f"http://127.0.0.1:{http}/api/clients", timeout=5)
        assert answer.status_code == 200 and answer.json() == {"clients": [], "next": None}
        assert "access-control-allow-origin" not in answer.headers
        named = httpx.get(f"http://127.0.0.1:{http}/api/clients", headers={"Host": "lwm2m.lan"}, timeout=5)
        assert named.status_code == 200
        evil = httpx.get(f"http://127.0.0.1:{http}/api/clients", headers={"Host": "evil.example"}, timeout=5)
        assert evil.status_code == 421
        dash = {"Origin": "http://dash.example:3000"}
        cors = httpx.get(f"http://127.0.0.1:{http}/api/clients", headers=dash, timeout=5)
        assert cors.headers["access-control-allow-origin"] == "http://dash.example:3000"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_non_loopback_http_host_needs_a_token() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lwm2m", "server", "--http-host", "0.0.0.0", "--http-port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--api-token" in done.stderr
    assert time.monotonic() - started < 30


def test_bad_guard_options_are_named() -> None:
    for option, value in (("--cors-origin", "dash.example"), ("--allowed-host", "lwm2m.lan:80")):
        done = subprocess.run(
            [sys.executable, "-m", "lwm2m", "server", "--http-port", "1", option, value],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and option in done.stderr and value in done.stderr, done.stderr


def test_expiry_options_reach_the_endpoints_configuration() -> None:
    from lwm2m.cli.server_cmd import state_limits

    assert state_limits(None, None) == {}
    options = state_limits(30.0, 20.0)
    coap, dtls = options["coap"], options["dtls_limits"]
    assert coap.exchange_lifetime == coap.non_lifetime == coap.reassembly_lifetime == 30.0
    assert dtls.handshake_lifetime == 20.0 and dtls.handshake_timeout_max == 20.0
    assert state_limits(600.0, None)["coap"].non_lifetime == 145.0  # RFC 7252 NON_LIFETIME


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_history_records_bounds_the_history_per_device(kind: str, tmp_path: FsPath) -> None:
    store = open_data(str(tmp_path), kind, history_records=3)
    try:
        for i in range(50):
            store.history.add("dev", [Record(Path.parse("/3303/0/5700"), float(i))], received_at=1000.0 + i)
        await store.history.flush()
        kept = await store.history.query("dev")
        assert [e.record.value for e in kept] == [49.0, 48.0, 47.0]
    finally:
        store.close()


def test_data_and_store_options_name_a_store_url(tmp_path: FsPath) -> None:
    assert store_url(str(tmp_path / "unused"), "memory") == "memory://"
    assert not (tmp_path / "unused").exists()
    folder = tmp_path / "data"
    assert store_url(str(folder), None) == f"sqlite://{folder / 'lwm2m.db'}"
    assert folder.is_dir()  # created for the database


def test_a_data_folder_that_is_a_file_is_one_line_naming_it(tmp_path: FsPath) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    command = [sys.executable, "-m", "lwm2m", "server", "--data", str(taken / "sub")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--data" in done.stderr and "Traceback" not in done.stderr


def test_history_records_must_be_positive() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lwm2m", "server", "--history-records", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--history-records" in done.stderr
