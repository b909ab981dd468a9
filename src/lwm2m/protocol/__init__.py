"""lwm2m.protocol."""
