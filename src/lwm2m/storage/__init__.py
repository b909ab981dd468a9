"""lwm2m.storage: the role stores (registrations, observations, history, security, bootstrap
configurations), grouped as a :class:`Store` and opened from a URL by :func:`open_store`."""

from lwm2m.storage.base import Store
from lwm2m.storage.url import open_store

__all__ = ["Store", "open_store"]
