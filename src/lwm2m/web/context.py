"""What the views of one app share: the server, the bootstrap server beside it, the kept
observations, the queued requests, the recent events and the OpenAPI document.

The app holds one :class:`ApiContext` in ``app.state.api``; a view reaches it with
:func:`api_context`, so views are plain importable functions (datasette's ``views/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.export.webhooks import Webhooks
from lwm2m.protocol.registration import Registration
from lwm2m.server.role import Server
from lwm2m.web.cluster import Cluster
from lwm2m.web.observations import ObservationKeeper
from lwm2m.web.requests import RequestTable
from lwm2m.web.sse import RecentEvents

if TYPE_CHECKING:  # the metrics module needs prometheus-client, imported only when metrics are on
    from lwm2m.export.metrics import ServerMetrics

__all__ = ["ApiContext", "api_context", "bootstrap_context"]


@dataclass(slots=True)
class ApiContext:
    """The state of one REST API app, owned by the app from its start (lifespan) to its stop."""

    server: Server
    bootstrap: BootstrapServer | None = None
    requests: RequestTable = field(default_factory=RequestTable)
    observations: ObservationKeeper = field(default_factory=ObservationKeeper)
    recent: RecentEvents = field(default_factory=RecentEvents)
    swagger_dir: Path | None = None  # Swagger UI's files, when swagger-ui-py is installed
    document: dict[str, Any] = field(default_factory=dict)  # the OpenAPI document of the app
    cluster: Cluster | None = None  # this node's membership when several nodes share the fleet
    metrics: ServerMetrics | None = None  # served at /metrics when given
    metrics_token: str | None = None  # the bearer token /metrics requires, if any
    webhooks: Webhooks | None = None  # /api/webhooks and the posting of events (set by create_app)

    def sleeping(self, registration: Registration) -> bool:
        """A queue-mode client that is not awake now (LwM2M-TS-Core 1.2 §6.5)."""
        return registration.queue_mode and not self.server.presence.is_awake(registration.endpoint)


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


def bootstrap_context(request: Request) -> tuple[BootstrapServer, Any]:
    """The bootstrap server of the app and the security store its configurations provision (an
    LwM2M server's, or None): set by :func:`lwm2m.web.app.create_app` and by
    :func:`lwm2m.web.bootstrap_api.create_bootstrap_app`."""
    state = request.app.state
    return state.bootstrap, state.bootstrap_security
