"""lwm2m.bootstrap."""
