"""lwm2m.storage."""
