"""lwm2m.fleet: work across the fleet, driven through the server: firmware packages (their store and
hosting, :mod:`lwm2m.fleet.packages`), device labels (:mod:`lwm2m.fleet.labels`)."""

from lwm2m.fleet.labels import DeviceLabels, LabelConfig, labels_match
from lwm2m.fleet.packages import PackageConfig, Packages

__all__ = ["DeviceLabels", "LabelConfig", "PackageConfig", "Packages", "labels_match"]
