"""``--log-level`` of the long-running commands, and what ``lwm2m client`` shows of a refused
registration, as a user sees them: subprocesses on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import signal

import pytest
from click.testing import CliRunner
from tests.helpers.cli import line_with, lwm2m_process
from tests.helpers.ports import free_udp_port
from tests.helpers.server import register

from lwm2m.cli import main
from lwm2m.cli.logs import LOG_FORMAT, configure_logging
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.registrar import RegistrationLimits
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint

# time, level, logger name, message
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) (lwm2m[\w.]*): (.*)$")


@pytest.mark.parametrize("command", ["server", "bootstrap", "demo"])
def test_a_bad_log_level_is_one_line_and_exit_2(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--log-level", "loud"])
    assert result.exit_code == 2
    assert "--log-level" in result.output and "'loud'" in result.output
    assert "Traceback" not in result.output


def test_demo_logs_warnings_only_by_default() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert re.search(r"--log-level.*\[default: WARNING\]", " ".join(result.output.split()))
    result = CliRunner().invoke(main, ["server", "--help"])
    assert re.search(r"--log-level.*\[default: INFO\]", " ".join(result.output.split()))


async def _start_server(*options: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_udp_port()
    proc = await lwm2m_process(
        "server",
        "--store",
        "memory",
        "--coap-port",
        str(port),
        "--http-port",
        "0",
        *options,
    )
    assert proc.stdout is not None
    await line_with(proc.stdout, "Ctrl-C stops it", [])
    return proc, port


async def _stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(15):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return err.decode()


async def test_server_debug_logs_a_line_per_coap_message() -> None:
    proc, port = await _start_server("--log-level", "DEBUG")
    try:
        async with open_udp_endpoint() as device:
            created = await device.request(register("sub-1"), ("127.0.0.1", port), timeout=10)
            assert created.code == Code.CREATED
            here = f"127.0.0.1:{device.port}"
    finally:
        err = await _stop(proc)
    parsed = [m.groups() for line in err.splitlines() if (m := LINE.match(line))]
    wire = [text for level, name, text in parsed if name == "lwm2m.transport.wire" and level == "DEBUG"]
    assert any(text.startswith(f"in  {here} CON POST mid=") and " /rd ct=40 " in text for text in wire), err
    assert any(text.startswith(f"out {here} ACK 2.01 Created mid=") for text in wire), err
    assert any(
        name == "lwm2m.server.registrar" and text.startswith("registered 'sub-1'") for _, name, text in parsed
    )


async def test_server_info_logs_registrations_and_no_messages() -> None:
    proc, port = await _start_server()
    try:
        async with open_udp_endpoint() as device:
            assert (
                await device.request(register("sub-2"), ("127.0.0.1", port), timeout=10)
            ).code == Code.CREATED
    finally:
        err = await _stop(proc)
    assert "INFO lwm2m.server.registrar: registered 'sub-2' from 127.0.0.1:" in err
    assert "lwm2m.transport.wire" not in err


async def test_client_prints_the_code_and_diagnostic_of_a_refused_registration() -> None:
    limits = RegistrationLimits(max_endpoint_length=8)
    async with Server(ServerConfig(port=0, registration_limits=limits)) as server:
        proc = await lwm2m_process(
            "client",
            "--server",
            f"coap://127.0.0.1:{server.port}",
            "--endpoint",
            "a-name-too-long",
            env={"NO_COLOR": "1", "COLUMNS": "200"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            line = await line_with(proc.stdout, "refused", seen)
        finally:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(15):
                await proc.communicate()
    diagnostic = "Endpoint Client Name (ep) has 15 bytes; this server takes at most 8"
    assert f'registration refused: 4.00 Bad Request "{diagnostic}"' in line, seen


async def test_client_prints_the_code_and_diagnostic_of_a_refused_bootstrap() -> None:
    from lwm2m.bootstrap import BootstrapServer
    from lwm2m.bootstrap.config import BootstrapServerConfig

    async with BootstrapServer(BootstrapServerConfig(port=0)) as bs:
        proc = await lwm2m_process(
            "client",
            "--bootstrap",
            bs.uri,
            "--endpoint",
            "nobody",
            env={"NO_COLOR": "1", "COLUMNS": "200"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            line = await line_with(proc.stdout, "refused", seen)
        finally:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(15):
                await proc.communicate()
    diagnostic = "no bootstrap configuration for 'nobody' and no default one"
    assert f'Bootstrap-Request refused: 4.00 Bad Request "{diagnostic}"' in line, seen


def test_records_carry_only_what_the_line_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """No caller, thread or process look-ups per record: a Register's line costs a third less."""
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))  # put back after the test
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    lwm2m_logger = logging.getLogger("lwm2m")
    monkeypatch.setattr(lwm2m_logger, "level", lwm2m_logger.level)
    configure_logging("INFO")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    lwm2m_logger.addHandler(handler)
    try:
        logging.getLogger("lwm2m.server.registrar").info("registered %s", "dev")
    finally:
        lwm2m_logger.removeHandler(handler)
    (record,) = records
    assert record.getMessage() == "registered dev"
    assert (record.funcName, record.thread, record.process) == ("(unknown function)", None, None)
    line = logging.Formatter(LOG_FORMAT).format(record)
    assert LINE.match(line) and line.endswith("INFO lwm2m.server.registrar: registered dev")
