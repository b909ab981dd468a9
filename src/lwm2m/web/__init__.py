"""The REST/SSE API, its generated OpenAPI document and the web console (ASGI, Starlette)."""

from lwm2m.web.app import create_app
from lwm2m.web.bootstrap_api import create_bootstrap_app

__all__ = ["create_app", "create_bootstrap_app"]
