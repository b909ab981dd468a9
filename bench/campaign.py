"""Firmware update campaign throughput: devices updated per minute over CoAP pull on loopback.

Our server (``Server``, memory store) with its firmware packages and the campaign runner
(``lwm2m.fleet.campaigns.Campaigns``) runs in this process; the simulated devices
(``lwm2m.simulator.Fleet``) run in a child process, so that the two share the machine's cores
as a server and its devices would. Once every device has registered, one campaign pulls a
``--size`` byte package (1 MiB by default) to all ``--count`` devices over CoAP (Block2, 1,024
byte blocks: RFC 7959), at most ``--in-flight`` at a time after a canary of one, each device
followed through /5/0/3 and /5/0/5 to its Update Result. Printed: the time from the campaign's
start to its end, the devices updated, and devices updated per minute.

    python bench/campaign.py [--count 1000] [--size 1048576] [--in-flight 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import Connection

from lwm2m.fleet.campaigns import Campaigns, CampaignSpec, Retries, Waves
from lwm2m.fleet.packages import PackageConfig, Packages
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.storage.campaigns import MemoryCampaignStore
from lwm2m.storage.firmware import MemoryPackageStore


def devices(uri: str, count: int, conn: Connection) -> None:
    """The child process: ``count`` simulated devices until the parent says stop."""

    async def run() -> None:
        config = FleetConfig(
            count=count, profile="ucifi-water-meter", rate=None, local_host="127.0.0.1", install_seconds=0.05
        )
        async with Fleet(uri, config) as fleet:
            await fleet.wait_registered(timeout=120)
            for device in fleet.devices:
                device.firmware.download_timeout = 600.0
            conn.send("registered")
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    asyncio.run(run())


async def main(args: argparse.Namespace) -> None:
    async with Server(ServerConfig(host="127.0.0.1", port=0)) as server:
        packages = Packages(MemoryPackageStore(), PackageConfig(max_size=max(args.size, 1)))
        server.host_packages(packages)
        package = await packages.add("bench", "2.0.0", os.urandom(args.size))
        parent, child = mp.Pipe()
        process = mp.get_context("spawn").Process(target=devices, args=(server.uri, args.count, child))
        process.start()
        try:
            ready = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
            assert ready == "registered"
            runner = Campaigns(
                server, packages, MemoryCampaignStore(), lambda p: Packages.uris(p, coap=server.uri)
            )
            spec = CampaignSpec(
                package.id,
                waves=Waves(canary=1, batch=args.count, in_flight=args.in_flight),
                retries=Retries(0),
                step_timeout=600.0,
                poll_interval=30.0,
            )
            started = time.perf_counter()
            campaign = await runner.create(spec)
            await runner.wait(campaign.id, poll=0.2)
            elapsed = time.perf_counter() - started
            await runner.stop()
            counts = campaign.counts()
            updated = counts.get("succeeded", 0)
            print(
                f"campaign: {args.count} devices, {args.size} byte package over CoAP pull, "
                f"{args.in_flight} at a time: {elapsed:.1f} s, counts {counts}"
            )
            print(f"devices updated per minute: {updated / elapsed * 60:.0f}")
        finally:
            parent.send("stop")
            await asyncio.get_running_loop().run_in_executor(
                None, process.join, 30
            )  # the server answers meanwhile
            if process.is_alive():
                process.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--in-flight", type=int, default=100)
    arguments = parser.parse_args()
    if arguments.count < 1 or arguments.in_flight < 1 or arguments.size < 1:
        sys.exit("--count, --size and --in-flight are positive")
    asyncio.run(main(arguments))
