"""The REST API's views: importable functions that take the app's state from
``request.app.state.api`` (:class:`~lwm2m.web.context.ApiContext`). The route table that
maps URLs to them is :mod:`lwm2m.web.routes`."""

# The view modules; each is imported where the route table names it.
__all__ = [
    "base",
    "bootstrap",
    "clients",
    "composite",
    "console",
    "device",
    "docs",
    "events",
    "history",
    "labels",
    "models",
    "observations",
    "prometheus",
    "requests",
    "security",
    "trace",
]
