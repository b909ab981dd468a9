"""Several server nodes sharing one fleet on Redis (DESIGN.md, "Where its users outgrow one
machine"): node identity, endpoint ownership, the request bus between nodes and the fleet's
event stream. Nothing here knows the server; it wires these parts in."""

from lwm2m.cluster.bus import BusConfig, Handler, RequestBus
from lwm2m.cluster.encoding import Clock, Payload
from lwm2m.cluster.events import EventsConfig, FleetEvents
from lwm2m.cluster.node import ClusterConfig, NodeIdentity
from lwm2m.cluster.ownership import Owner, Ownership, OwnershipConfig

__all__ = [
    "BusConfig",
    "Clock",
    "ClusterConfig",
    "EventsConfig",
    "FleetEvents",
    "Handler",
    "NodeIdentity",
    "Owner",
    "Ownership",
    "OwnershipConfig",
    "Payload",
    "RequestBus",
]
