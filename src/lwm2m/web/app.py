"""The REST API over an :class:`~lwm2m.server.role.Server`, as a Starlette ASGI app.

The routes are the table of :mod:`lwm2m.web.routes`, served by the views of
:mod:`lwm2m.web.views`, which find the app's state in an
:class:`~lwm2m.web.context.ApiContext` (``app.state.api``).

Every device operation answers HTTP 200 with the device's CoAP result in
``code``; HTTP errors are kept for what failed around the device (see
:mod:`lwm2m.web.errors`). An operation for a sleeping queue-mode client answers 202
with a request ID instead, and its outcome follows as a ``REQUEST_DONE`` event and at
``GET /api/requests/{id}`` (:mod:`lwm2m.web.requests`); ``?wait=true`` holds the HTTP
call until the client wakes up, as the Python API does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.export.handoff import ExportWorker
from lwm2m.export.webhooks import Webhooks
from lwm2m.fleet.campaigns import Campaigns, CampaignsConfig, CampaignServer
from lwm2m.fleet.packages import Packages, reachable
from lwm2m.server.role import Server
from lwm2m.storage.firmware import FirmwarePackage
from lwm2m.storage.requests import StoredRequest
from lwm2m.web.auth import BearerAuth
from lwm2m.web.campaign_devices import RoutedDevices
from lwm2m.web.cluster import (
    Cluster,
    FleetPublisher,
    ForwardToOwner,
    call_in_process,
    forwarded_handler,
    request_prefix,
)
from lwm2m.web.context import ApiContext
from lwm2m.web.docs import swagger_ui_dir
from lwm2m.web.errors import EXCEPTION_HANDLERS
from lwm2m.web.guard import LocalApiGuard
from lwm2m.web.openapi import openapi_document
from lwm2m.web.requests import RequestTable, awaited_query
from lwm2m.web.routes import ROUTES, starlette_routes
from lwm2m.web.shapes import EVENT_NAMES, event_view
from lwm2m.web.views.bootstrap import bootstrap_event_view
from lwm2m.web.views.campaigns import event_endpoint as campaign_event_endpoint
from lwm2m.web.views.campaigns import event_view as campaign_event_view

if TYPE_CHECKING:  # needs prometheus-client: the caller that passes metrics imported it
    from lwm2m.export.metrics import ServerMetrics

__all__ = ["create_app"]


def create_app(
    server: Server,
    *,
    api_token: str | None = None,
    requests: RequestTable | None = None,
    bootstrap: BootstrapServer | None = None,
    bind_host: str | None = None,
    allowed_hosts: Iterable[str] = (),
    cors_origins: Iterable[str] = (),
    cluster: Cluster | None = None,
    metrics: ServerMetrics | None = None,
    metrics_token: str | None = None,
    packages: Packages | None = None,
    webhooks: Webhooks | None = None,
    export: ExportWorker | None = None,
    campaigns: CampaignsConfig | None = None,
) -> Starlette:
    """The REST API, SSE stream and OpenAPI document of ``server`` (already started by the caller).

    ``requests`` holds the requests queued for sleeping clients (a default table if None);
    ``bootstrap``, a bootstrap server beside it, adds ``/api/bootstrap`` and its events.
    ``bind_host``, ``allowed_hosts`` and ``cors_origins`` configure the
    :class:`~lwm2m.web.guard.LocalApiGuard` every request passes, token or not.
    ``cluster``, this node's membership of a cluster (not started: the app starts and stops
    it), sends device requests to the node that owns the device and serves the fleet's events
    (:mod:`lwm2m.web.cluster`). ``metrics`` (not started: the app starts and stops it) are
    served at ``GET /metrics``, open, or behind ``metrics_token`` when given
    (:mod:`lwm2m.web.views.prometheus`).
    ``packages``, the firmware packages of ``/api/firmware`` (default: those of the server's
    store), are served to devices at ``/fw/{id}`` over HTTP here and over CoAP by the server.
    ``webhooks`` (not started: the app starts and stops them; default: those of the server's
    store) serve ``/api/webhooks`` and post the server's events (:mod:`lwm2m.export.webhooks`).
    ``export`` (not started: the app starts and stops it), the export worker that posts them
    instead (``webhooks`` made with ``deliver=False``) and publishes to MQTT
    (:mod:`lwm2m.export.handoff`), its counters added to ``metrics``.
    ``campaigns`` sets the leases of the campaigns' runner (:class:`~lwm2m.fleet.campaigns.CampaignsConfig`;
    with a ``cluster``, its node id names the runner and the store is shared).
    """
    api = ApiContext(
        server,
        bootstrap,
        requests=requests if requests is not None else RequestTable(prefix=request_prefix(cluster)),
        swagger_dir=swagger_ui_dir(),
        document=openapi_document(bootstrap=bootstrap is not None),
        cluster=cluster,
        metrics=metrics,
        metrics_token=metrics_token,
    )
    hooks = api.webhooks = add_webhooks(server, webhooks, metrics)
    if export is not None and metrics is not None:
        count_export(export, metrics)
    publisher = FleetPublisher(cluster) if cluster is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if metrics is not None:
            metrics.start()
        # Observations the server takes up after a restart: cancelled like API-started ones.
        api.observations.serve(server.observation_manager.of, server.resumed)
        api.recent.follow_server(server, api.requests)
        await hooks.start()
        if export is not None:
            await export.start()
        if cluster is None:
            await start_campaigns(app, api)
        if bootstrap is not None:
            started = bootstrap.events()
            api.recent.follow(started, bootstrap_event_view, lambda e: e.endpoint, started.close)
        # Requests forwarded by other nodes, and queued requests run again, go through the
        # routes under their error handlers, below the guard and the token check that the
        # entry node applied when the call came.
        routes_only = ExceptionMiddleware(app.router, handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]

        async def replay(call: StoredRequest) -> tuple[int, bytes]:
            status, _, body = await call_in_process(
                app,
                routes_only,
                method=call.method,
                path=call.path,
                query=awaited_query(call.query),
                headers=list(call.headers),
                body=call.body,
            )
            return status, body

        await api.requests.start(server, replay, cluster.node_id if cluster is not None else "")
        if cluster is not None and publisher is not None:
            publisher.follow_server(server, api.requests)
            await cluster.start(server, forwarded_handler(app, routes_only))
            await start_cluster_campaigns(app, publisher)
        yield
        # The campaigns first: their device operations may be on the bus.
        await app.state.campaigns.stop()
        if app.state.campaign_devices is not None:
            await app.state.campaign_devices.close()
        if cluster is not None and publisher is not None:
            await publisher.close()
            await cluster.close()
        await api.recent.close()
        if export is not None:
            await export.close()
        await hooks.close()
        await api.requests.close()
        # The observations go on (their records too) until the server stops: a clean stop
        # followed by a start resumes them, as after a crash.
        await api.observations.close()
        if metrics is not None:
            metrics.close()

    routes = starlette_routes(
        ROUTES, bootstrap=bootstrap is not None, swagger_dir=api.swagger_dir, metrics=metrics is not None
    )
    # The guard is outermost: a refused request never reaches the token check or a route, and
    # CORS preflights (which carry no token) are answered before the token check.
    middleware = [
        Middleware(
            LocalApiGuard,  # type: ignore[arg-type]
            bind_host=bind_host,
            allowed_hosts=tuple(allowed_hosts),
            cors_origins=tuple(cors_origins),
        )
    ]
    if api_token:
        middleware.append(Middleware(BearerAuth, token=api_token))  # type: ignore[arg-type]
    if cluster is not None:
        middleware.append(Middleware(ForwardToOwner, cluster=cluster))  # type: ignore[arg-type]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.api = api
    host_firmware(app, server, packages)
    run_campaigns(app, server, bind_host, cluster, campaigns)
    if metrics is not None:
        count_campaigns(app, metrics)
    app.state.server = server
    app.state.observations = api.observations
    app.state.requests = api.requests
    app.state.bootstrap = bootstrap
    # The security store a bootstrap configuration provisions: this server's.
    app.state.bootstrap_security = server.security
    return app


def host_firmware(app: Starlette, server: Server, packages: Packages | None) -> None:
    """The firmware packages of ``/api/firmware``, also served by ``server`` at ``coap[s]://…/fw/{id}``."""
    if packages is None:
        packages = Packages(server.store.firmware)
    server.host_packages(packages)
    app.state.packages = packages


def add_webhooks(server: Server, webhooks: Webhooks | None, metrics: ServerMetrics | None) -> Webhooks:
    """The app's webhooks (default: in the server's store, events in their SSE forms), their
    counters added to ``metrics``."""
    if webhooks is None:
        webhooks = Webhooks(server, server.store.webhooks, EVENT_NAMES, event_view)
    if metrics is not None:
        from lwm2m.export.webhooks_metrics import WebhookCollector  # needs prometheus-client, as metrics do

        metrics.register(WebhookCollector(webhooks.counters))
    return webhooks


def count_export(export: ExportWorker, metrics: ServerMetrics) -> None:
    """The export worker's counters in ``/metrics`` (:mod:`lwm2m.export.handoff_metrics`)."""
    from lwm2m.export.handoff_metrics import ExportCollector  # needs prometheus-client, as metrics do

    metrics.register(ExportCollector(lambda: export.counters))


def run_campaigns(
    app: Starlette,
    server: Server,
    bind_host: str | None,
    cluster: Cluster | None = None,
    config: CampaignsConfig | None = None,
) -> None:
    """The firmware update campaigns of ``/api/campaigns``, kept in the server's store; a device
    pulls from the server's CoAP URIs (at ``bind_host``, or 127.0.0.1, when the server listens on
    every address), or from the HTTP base :func:`pull_over_http` gives. On a ``cluster``, the
    runner shares the store's campaigns with the other nodes' (one lease per campaign) and reaches
    the devices other nodes own through them (:mod:`lwm2m.web.campaign_devices`)."""
    packages: Packages = app.state.packages
    host = bind_host if bind_host not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
    app.state.firmware_http = None

    def uris(package: FirmwarePackage) -> dict[str, str]:
        http: str | None = app.state.firmware_http
        return Packages.uris(
            package,
            coap=reachable(server.uri, host),
            coaps=reachable(server.coaps_uri, host),
            http=reachable(http, host),
        )

    config = config or CampaignsConfig()
    devices: CampaignServer = server
    app.state.campaign_devices = None
    if cluster is not None:
        config = CampaignsConfig(node=cluster.node_id, lease=config.lease, shared=True)
        devices = app.state.campaign_devices = RoutedDevices(server, cluster)
    app.state.campaigns = Campaigns(
        devices, packages, server.store.campaigns, uris, labels=server.store.labels.get, config=config
    )


def pull_over_http(app: Starlette, base: str) -> None:
    """Devices that pull only over HTTP(S) (/5/0/8) get ``base/fw/…``: the app's own address
    (``http://host:port``), known once it listens."""
    app.state.firmware_http = base


async def start_campaigns(app: Starlette, api: ApiContext) -> None:
    """The campaigns' events to the SSE stream; the stored campaigns running go on."""
    campaigns: Campaigns = app.state.campaigns
    stream = campaigns.events()
    api.recent.follow(stream, campaign_event_view, campaign_event_endpoint, stream.close)
    await campaigns.start()


async def start_cluster_campaigns(app: Starlette, publisher: FleetPublisher) -> None:
    """A cluster node's campaigns, once its bus serves: their events go on the fleet's stream
    (every node's SSE stream carries them); the runner takes up the stored campaigns that no
    other node's runner holds, and those whose runner's lease lapses later."""
    campaigns: Campaigns = app.state.campaigns
    stream = campaigns.events()
    publisher.follow(stream, campaign_event_view, campaign_event_endpoint, stream.close)
    await campaigns.start()


def count_campaigns(app: Starlette, metrics: ServerMetrics) -> None:
    """Campaign progress in ``/metrics`` (:mod:`lwm2m.fleet.campaigns_metrics`)."""
    from lwm2m.fleet.campaigns_metrics import CampaignCollector  # needs prometheus-client, as metrics does

    metrics.register(CampaignCollector(app.state.campaigns))
