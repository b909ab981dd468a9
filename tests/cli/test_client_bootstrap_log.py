"""``lwm2m client --bootstrap`` names each request of the bootstrap server by its Bootstrap
Interface operation (LwM2M-TS-Core 1.2 §6.1.7): ``POST /bs`` is Bootstrap-Finish, not a Create."""

from __future__ import annotations

import asyncio
import signal

from tests.helpers.cli import line_with, lwm2m_process
from tests.helpers.server import next_event

from lwm2m.bootstrap import BootstrapConfig, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.protocol.bootstrap import downlink_name
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server


def test_every_bootstrap_operation_has_its_name() -> None:
    def named(code: Code, path: str, **options: object) -> str:
        return downlink_name(Message.build(Type.CON, code, uri_path=path, **options))  # type: ignore[arg-type]

    assert named(Code.POST, "/bs") == "Bootstrap-Finish"
    assert named(Code.GET, "/", accept=CF.LINK) == "Bootstrap-Discover"
    assert named(Code.GET, "/1/0") == "Bootstrap-Read"
    assert named(Code.PUT, "/0/1") == "Bootstrap-Write"
    assert named(Code.DELETE, "/0") == "Bootstrap-Delete"
    assert named(Code.POST, "/1/0/8") == "not a bootstrap operation"


async def test_the_bootstrap_log_names_each_operation() -> None:
    async with (
        Server(ServerConfig(port=0)) as server,
        BootstrapServer(BootstrapServerConfig(port=0)) as bs,
    ):
        config = {
            "servers": [{"uri": server.uri, "shortServerId": 101, "lifetime": 60}],
            "deletePaths": ["/0"],
        }
        await bs.set_config("cli-bs", BootstrapConfig.from_json(config))
        events = server.events()
        proc = await lwm2m_process(
            "client",
            "--bootstrap",
            bs.uri,
            "--endpoint",
            "cli-bs",
            env={"NO_COLOR": "1"},
        )
        assert proc.stdout is not None
        seen: list[str] = []
        try:
            finish = await line_with(proc.stdout, "POST /bs", seen)
            await next_event(events, ClientRegistered)
        finally:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                await proc.wait()
        assert "(Bootstrap-Finish)" in finish and "Create" not in finish
        lines = "".join(seen)
        assert "GET / (Bootstrap-Discover, accept link" in lines
        assert "DELETE /0 (Bootstrap-Delete)" in lines
        assert "PUT /0/1 (Bootstrap-Write, " in lines and "PUT /1/0 (Bootstrap-Write, " in lines
        assert "(Create)" not in lines and "(Delete)" not in lines
