"""lwm2m.transport."""
