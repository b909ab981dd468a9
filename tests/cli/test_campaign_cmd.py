"""``lwm2m campaign create|list|show|pause|resume|cancel|delete`` through a running server's REST API
(served in this process on a free port; each command runs in a worker thread, as it runs its own
event loop), over simulated devices, one of which fails its integrity check."""

from __future__ import annotations

import asyncio
import os
import time

from click.testing import CliRunner, Result
from tests.helpers.web import served

from lwm2m.cli import main
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.web.app import create_app


async def lwm2m(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def test_create_list_show_pause_resume_cancel() -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        app = create_app(server, api_token="tok")
        config = FleetConfig(
            count=3, profile="ucifi-water-meter", rate=None, local_host="127.0.0.1", install_seconds=0.02
        )
        async with served(app) as base, Fleet(server.uri, config) as fleet:
            await fleet.wait_registered(timeout=10)
            fleet.devices[2].firmware.verify = lambda package: False
            api = ("--api", base, "--api-token", "tok")
            assert (await lwm2m("campaign", "list", *api)).output == "no campaigns\n"
            package = await app.state.packages.add("wm", "4.0", os.urandom(1000))
            created = await lwm2m(
                "campaign",
                "create",
                package.id,
                "--batch",
                "1",
                "--retries",
                "0",
                "--halt-after",
                "50%",
                *api,
            )
            assert created.exit_code == 0, created.output
            lines = created.output.splitlines()
            assert lines[0].startswith("started ") and "running" in lines[0]
            assert lines[1] == "  waves: 1 1 1"
            cid = lines[0].split()[1]
            runner = app.state.campaigns
            await asyncio.wait_for(runner.wait(cid), 15)
            shown = await lwm2m("campaign", "show", cid, *api)
            assert shown.exit_code == 0, shown.output
            out = shown.output.splitlines()
            assert out[0] == f"{cid}  done  package {package.id}  1 failed, 2 succeeded"
            assert out[1] == "  canary: 1 devices, 1 succeeded, 0 failed, 0 pending"
            endpoint = fleet.devices[2].endpoint
            assert out[-1] == f"  failed {endpoint}: Update Result 5 (integrity check failure)"
            listed = await lwm2m("campaign", "list", *api)
            assert listed.output.splitlines() == [out[0]]
            refused = await lwm2m("campaign", "pause", cid, *api)
            assert refused.exit_code == 2 and "done" in refused.output
            # a campaign waiting for its window: paused, resumed, cancelled
            hour = time.gmtime().tm_hour
            window = f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"
            waiting = await lwm2m("campaign", "create", package.id, "--window", window, *api)
            wid = waiting.output.split()[1]
            assert "paused" in (await lwm2m("campaign", "pause", wid, *api)).output
            assert "running" in (await lwm2m("campaign", "resume", wid, *api)).output
            cancelled = await lwm2m("campaign", "cancel", wid, *api)
            assert cancelled.output == f"{wid}  cancelled  package {package.id}  3 cancelled\n"
            deleted = await lwm2m("campaign", "delete", wid, *api)
            assert deleted.exit_code == 0 and deleted.output == cancelled.output
            gone = await lwm2m("campaign", "show", wid, *api)
            assert gone.exit_code == 2 and "no campaign" in gone.output
            bad = await lwm2m("campaign", "create", package.id, "--canary", "many", *api)
            assert bad.exit_code == 2 and "--canary" in bad.output
            missing = await lwm2m("campaign", "show", "nope", *api)
            assert missing.exit_code == 2 and "no campaign" in missing.output
