"""``lwm2m firmware add|list|rm`` through a running server's REST API (served in this process on a
free port; each command runs in a worker thread, as it runs its own event loop)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from click.testing import CliRunner, Result
from tests.helpers.web import served

from lwm2m.cli import main
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app


async def lwm2m(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def test_add_list_rm(tmp_path: Path) -> None:
    data = os.urandom(70_000)
    file = tmp_path / "lamp-2.1.0.bin"
    file.write_bytes(data)
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server, api_token="tok")
        async with served(app) as base:
            api = ("--api", base, "--api-token", "tok")
            assert (await lwm2m("firmware", "list", *api)).output == "no firmware packages\n"
            added = await lwm2m("firmware", "add", str(file), "--version", "2.1.0+build.7", *api)
            assert added.exit_code == 0, added.output
            (stored,) = await app.state.packages.all()
            assert (stored.name, stored.version) == ("lamp-2.1.0", "2.1.0+build.7")
            assert stored.sha256 == hashlib.sha256(data).hexdigest()
            lines = added.output.splitlines()
            assert (
                lines[0]
                == f"added {stored.id}  lamp-2.1.0 2.1.0+build.7  70000 bytes  sha256 {stored.sha256}"
            )
            assert lines[1].startswith("  coap: coap://127.0.0.1:")
            assert lines[1].endswith(f"/fw/{stored.id}/lamp-2.1.0@2.1.0%2Bbuild.7")
            named = await lwm2m("firmware", "add", str(file), "--version", "3", "--name", "lamp", *api)
            assert named.exit_code == 0, named.output
            listed = (await lwm2m("firmware", "list", *api)).output.splitlines()
            assert [line.split()[:3] for line in listed] == [
                [stored.id, "lamp-2.1.0", "2.1.0+build.7"],
                [listed[1].split()[0], "lamp", "3"],
            ]
            removed = await lwm2m("firmware", "rm", stored.id, *api)
            assert removed.exit_code == 0 and removed.output == f"removed {stored.id}\n"
            again = await lwm2m("firmware", "rm", stored.id, *api)
            assert again.exit_code == 2 and "no firmware package" in again.output
            assert len(await app.state.packages.all()) == 1


async def test_bad_input_and_refusals_exit_with_one_line(tmp_path: Path) -> None:
    file = tmp_path / "fw.bin"
    file.write_bytes(b"x")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server, api_token="tok")
        async with served(app) as base:
            bad_version = await lwm2m("firmware", "add", str(file), "--version", "1 0", "--api", base)
            assert bad_version.exit_code == 2 and "version '1 0'" in bad_version.output
            nothing = await lwm2m("firmware", "add", str(empty), "--version", "1", "--api", base)
            assert nothing.exit_code == 2 and "empty" in nothing.output
            no_token = await lwm2m("firmware", "add", str(file), "--version", "1", "--api", base)
            assert no_token.exit_code == 2 and "bearer token" in no_token.output
            assert await app.state.packages.all() == []
    down = await lwm2m("firmware", "list", "--api", base)
    assert down.exit_code == 2 and base in down.output
