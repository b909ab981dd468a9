"""What the single-value formats (text, opaque, CBOR) share: one record at the request path."""

from __future__ import annotations

from collections.abc import Sequence

from lwm2m.errors import CodecError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.value import Value


def single_value(records: Sequence[Record], base: Path, fmt: str) -> tuple[Path, Value]:
    """The one value a single-value payload carries; CodecError for anything else.

    These formats have no room for a path, so the record must be the
    resource or resource instance the request names (LwM2M-TS-Core 1.2 §7.4.1).
    """
    if len(records) != 1:
        raise CodecError(f"{fmt} carries exactly one value, got {len(records)} records")
    r = records[0]
    if r.path != base:
        raise CodecError(f"{fmt} carries the value of the request path {base}, not of {r.path}")
    check_single_base(base, fmt)
    if r.value is None:
        raise CodecError(f"{fmt} needs a value for {r.path}")
    if r.time is not None:
        raise CodecError(f"{fmt} cannot carry a timestamp ({r.path})")
    return r.path, r.value


def check_single_base(base: Path, fmt: str) -> None:
    if len(base.ids) < 3:
        raise CodecError(f"{fmt} carries a single resource or resource instance value, not {base}")
