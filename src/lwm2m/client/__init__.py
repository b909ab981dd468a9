"""lwm2m.client."""
