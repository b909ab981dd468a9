"""The REST API of a bootstrap server on its own (``lwm2m bootstrap``): ``/api/bootstrap`` and
an ``/api/events`` stream of the bootstrap events (:mod:`lwm2m.web.views.bootstrap`); beside
an LwM2M server, :func:`lwm2m.web.app.create_app` serves the same routes."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.web.auth import BearerAuth
from lwm2m.web.errors import EXCEPTION_HANDLERS
from lwm2m.web.guard import LocalApiGuard
from lwm2m.web.routes import BOOTSTRAP_ROUTES, starlette_routes

__all__ = ["create_bootstrap_app"]


def create_bootstrap_app(
    bootstrap: BootstrapServer,
    *,
    api_token: str | None = None,
    security: Any = None,
    bind_host: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
) -> Starlette:
    """The REST API of a bootstrap server that runs without an LwM2M server (``lwm2m bootstrap``):
    ``/api/bootstrap`` and an ``/api/events`` stream of the bootstrap events, behind the same
    :class:`~lwm2m.web.guard.LocalApiGuard` as the server's API. ``security`` (an LwM2M
    server's security store or policy, with ``async put(SecurityInfo)``) is given the
    credentials each configuration hands out."""
    routes = starlette_routes(BOOTSTRAP_ROUTES, bootstrap=True, swagger_dir=None, console_files=False)
    guard = {"bind_host": bind_host, "allowed_hosts": allowed_hosts, "cors_origins": cors_origins}
    middleware = [Middleware(LocalApiGuard, **guard)]  # type: ignore[arg-type]
    if api_token:
        middleware.append(Middleware(BearerAuth, token=api_token))  # type: ignore[arg-type]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.state.bootstrap = bootstrap
    app.state.bootstrap_security = security
    return app
