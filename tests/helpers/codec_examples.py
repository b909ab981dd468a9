"""The Device object instance /3/0 of the LwM2M-TS-Core examples, as records."""

from __future__ import annotations

from lwm2m.model.path import Path
from lwm2m.model.record import Record

P = Path.parse

DEVICE = [
    Record(P("/3/0/0"), "Open Mobile Alliance"),
    Record(P("/3/0/1"), "Lightweight M2M Client"),
    Record(P("/3/0/2"), "345000123"),
    Record(P("/3/0/3"), "1.0"),
    Record(P("/3/0/6/0"), 1),
    Record(P("/3/0/6/1"), 5),
    Record(P("/3/0/7/0"), 3800),
    Record(P("/3/0/7/1"), 5000),
    Record(P("/3/0/8/0"), 125),
    Record(P("/3/0/8/1"), 900),
    Record(P("/3/0/9"), 100),
    Record(P("/3/0/10"), 15),
    Record(P("/3/0/11/0"), 0),
    Record(P("/3/0/13"), 1367491215),
    Record(P("/3/0/14"), "+02:00"),
    Record(P("/3/0/16"), "U"),
]
