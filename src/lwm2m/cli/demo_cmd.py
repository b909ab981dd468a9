"""``lwm2m demo``: what the stack runs today, on loopback, in one command.

Until the LwM2M server lands, the demo serves the object catalogue and the
content-format decoders over CoAP, through the same sans-IO endpoint and
asyncio transport the server will use:

- ``GET /.well-known/core``: the resources (RFC 6690 link format)
- ``GET /models``: every object definition (ID, name, version) as JSON
- ``GET /models/{id}``: one definition with its resources (Block2 when large)
- ``POST /decode?path=/3/0`` with a Content-Format: the payload as JSON records
"""

from __future__ import annotations

import asyncio
import json
import signal

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.linkformat import Link, serialize_links
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import CodecError, ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import build_registry, object_to_dict
from lwm2m.model.ddf import DDFError
from lwm2m.model.jsonform import records_to_json
from lwm2m.model.path import InvalidPath, Path
from lwm2m.model.registry import ObjectRegistry
from lwm2m.transport.eventloop import run
from lwm2m.transport.udp import open_udp_endpoint

JSON_FORMAT = 50  # application/json (RFC 7252 §12.3)


def _reply(code: Code, payload: bytes | str = b"", content_format: int | None = None) -> Message:
    data = payload.encode() if isinstance(payload, str) else payload
    return Message.build(Type.ACK, code, content_format=content_format, payload=data)


def _json(value: object) -> Message:
    return _reply(Code.CONTENT, json.dumps(value, ensure_ascii=False), JSON_FORMAT)


class CatalogueResources:
    """The demo's CoAP resources: a plain-function handler, answered in the ACK."""

    def __init__(self, models: ObjectRegistry) -> None:
        self.models = models
        links = [Link.of("/models", rt="lwm2m.models", ct=str(JSON_FORMAT)), Link.of("/decode")]
        links += [Link.of(f"/models/{d.id}", title=d.name, ct=str(JSON_FORMAT)) for d in models]
        self.well_known = serialize_links(links).encode()

    def __call__(self, event: RequestReceived) -> Message:
        msg = event.message
        path = msg.uri_path
        if path == (".well-known", "core"):
            return self._get(msg) or _reply(Code.CONTENT, self.well_known, ContentFormat.LINK)
        if path == ("models",):
            listing = [{"id": d.id, "name": d.name, "version": d.version} for d in self.models]
            return self._get(msg) or _json(listing)
        if len(path) == 2 and path[0] == "models":
            definition = self.models.get(int(path[1])) if path[1].isdigit() else None
            if definition is None:
                return _reply(Code.NOT_FOUND, f"no object {path[1]!r} in the catalogue")
            return self._get(msg) or _json(object_to_dict(definition))
        if path == ("decode",):
            return self._decode(msg)
        return _reply(Code.NOT_FOUND, f"no resource {msg.uri_path_str}")

    @staticmethod
    def _get(msg: Message) -> Message | None:
        return None if msg.code == Code.GET else _reply(Code.METHOD_NOT_ALLOWED, "only GET here")

    def _decode(self, msg: Message) -> Message:
        if msg.code != Code.POST:
            return _reply(Code.METHOD_NOT_ALLOWED, "POST a payload with a Content-Format")
        query = dict(q.partition("=")[::2] for q in msg.uri_query)
        try:
            base = Path.parse(query.get("path", "/"))
            fmt = msg.content_format
            if fmt is None:
                return _reply(Code.BAD_REQUEST, "the payload needs a Content-Format option")
            codec = get_codec(fmt)
            records = codec.decode(msg.payload, base, self.models)
        except (InvalidPath, CodecError) as exc:
            return _reply(Code.BAD_REQUEST, str(exc))
        return _json(records_to_json(records))


async def serve(host: str, port: int, models: ObjectRegistry, stop: asyncio.Event) -> None:
    async with open_udp_endpoint(host, port, handler=CatalogueResources(models)) as ep:
        click.echo(f"lwm2m demo: CoAP on {ep.uri()} ({len(models)} object definitions)")
        click.echo(f"  coap-client-notls {ep.uri('/.well-known/core')}")
        click.echo(f"  coap-client-notls {ep.uri('/models/3303')}")
        click.echo(f"  coap-client-notls -m post -t 0 -e 21.5 '{ep.uri('/decode')}?path=/3303/0/5700'")
        click.echo("Ctrl-C stops it.")
        await stop.wait()
    click.echo("lwm2m demo: stopped")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve CoAP on")
@click.option("--coap-port", default=5683, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model", "-m", "model_dirs", multiple=True, help="folder or file of DDF XML (repeatable)")
def demo(host: str, coap_port: int, model_dirs: tuple[str, ...]) -> None:
    """Serve the object catalogue and the payload decoders over CoAP on loopback."""
    try:
        models = build_registry(model_dirs)
    except (DDFError, OSError) as exc:
        fail(f"--model: {exc}")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(host, coap_port, models, stop)

    try:
        run(_main())
    except OSError as exc:
        fail(f"cannot serve on {host}:{coap_port}: {exc.strerror or exc}")
