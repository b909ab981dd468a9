"""lwm2m.simulator."""
