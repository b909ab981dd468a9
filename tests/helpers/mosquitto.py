"""A real MQTT broker for tests: Debian's ``mosquitto`` on a free loopback port.

:class:`Mosquitto` is one broker process with its own folder (its ``-c`` configuration: one
``listener PORT 127.0.0.1`` with ``allow_anonymous true``, and its log); it can be stopped and
started again on the same port, as a broker that goes away and comes back (with
``persistence``, keeping its clients' sessions and queued messages across the restart). It stops what it
started; a test that needs it fails (it is not skipped) when ``mosquitto`` is missing, since
``make test`` installs it.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.ports import free_tcp_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """``mosquitto`` on 127.0.0.1:``port`` (a free one unless given), configured in ``folder``."""

    def __init__(self, folder: Path, port: int | None = None, *, persistence: bool = False) -> None:
        self.folder = folder
        self.port = port or free_tcp_port()
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is missing: `make test` installs Debian's mosquitto")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "mosquitto.conf"
        saved = f"persistence true\npersistence_location {self.folder}/\n"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # Run as root, mosquitto becomes the user "mosquitto", which may not write in the
            # test's folder (its log, its saved sessions): stay the user that started it.
            f"user {getpass.getuser()}",
            saved.strip() if self.persistence else "persistence false",
            f"log_dest file {self.folder / 'mosquitto.log'}",
        ]
        config.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.folder / "mosquitto.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mosquitto on port {self.port} exited with {self.proc.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto on port {self.port} did not start within {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@contextmanager
def mosquitto(folder: Path) -> Iterator[Mosquitto]:
    """A started broker, stopped at the end."""
    broker = Mosquitto(folder).start()
    try:
        yield broker
    finally:
        broker.stop()
