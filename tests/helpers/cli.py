"""CLI test helpers: reading a process's output, starting a server process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


async def line_with(stream: asyncio.StreamReader, text: str, seen: list[str], timeout: float = 10) -> str:
    """The first line of ``stream`` that holds ``text``; every line read is added to ``seen``."""
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the output ended before {text!r}: {seen}")
            seen.append(line)
            if text in line:
                return line


def lwm2m_popen(*args: str) -> subprocess.Popen[str]:
    """``python -m lwm2m ARGS`` with its stdout and stderr piped, as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "lwm2m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def start(
    coap: int, http: int, data: Path | None, *options: str, ready: str | None = None, lines: int = 1
) -> subprocess.Popen[str]:
    """``lwm2m server`` on those ports (``--data`` unless None; ``options`` added), once one of
    its first ``lines`` lines holds ``ready`` (by default its plain CoAP URI); else it is killed and
    the test fails with what it printed."""
    args = ["server", "--coap-port", str(coap), "--http-port", str(http), *options]
    proc = lwm2m_popen(*args, *([] if data is None else ["--data", str(data)]))
    assert proc.stdout is not None
    text = f"coap://127.0.0.1:{coap}" if ready is None else ready
    seen = ""
    for _ in range(lines):
        line = proc.stdout.readline()
        if text in line:
            return proc
        seen += line
    # Not ready: the process goes, and what it said is the failure's message.
    proc.kill()
    _, errors = proc.communicate(timeout=10)
    raise AssertionError(f"lwm2m server never printed {text!r}: {seen}{errors or ''}")


async def lwm2m_process(*args: str, env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
    """``python -m lwm2m ARGS`` with its stdout and stderr piped; ``env`` adds to the environment."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def interrupt(*procs: asyncio.subprocess.Process | None) -> None:
    """SIGINT to each process still running, then wait for it (killed after 15 s)."""
    import signal

    for proc in procs:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
