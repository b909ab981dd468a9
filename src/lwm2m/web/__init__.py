"""lwm2m.web."""
