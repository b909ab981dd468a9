"""lwm2m.fleet: work across the fleet, driven through the server: firmware packages (their store and
hosting, :mod:`lwm2m.fleet.packages`)."""

from lwm2m.fleet.packages import PackageConfig, Packages

__all__ = ["PackageConfig", "Packages"]
