"""lwm2m.server."""
