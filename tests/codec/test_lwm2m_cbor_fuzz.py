"""LwM2M-CBOR maps with repeated keys, fuzzed: merged into one tree, or a CodecError, never a loss.

cbor2 cannot write a map with a repeated key, so these tests build the bytes
themselves: each record in its own chain of maps under the top-level map,
split at random places into array keys (LwM2M-TS-Core 1.2 §7.4.7).
"""

from __future__ import annotations

import contextlib

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.codec.lwm2m_cbor import LWM2M_CBOR
from lwm2m.errors import CodecError
from lwm2m.model import Path, Record, sort_records
from lwm2m.model.value import values_equal

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = (
    st.text(max_size=6)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.binary(max_size=6)
)
small_ids = st.integers(0, 3)


def head(major: int, n: int) -> bytes:
    """A definite-length CBOR head (RFC 8949 §3)."""
    if n < 24:
        return bytes(((major << 5) | n,))
    return bytes(((major << 5) | 25,)) + n.to_bytes(2, "big")


def cbor_map(pairs: list[tuple[bytes, bytes]], indefinite: bool) -> bytes:
    body = b"".join(k + v for k, v in pairs)
    if indefinite:
        return b"\xbf" + body + b"\xff"
    return head(5, len(pairs)) + body


@st.composite
def chain(draw: st.DrawFn, ids: tuple[int, ...], leaf: bytes) -> bytes:
    """``leaf`` under ``ids`` as nested one-pair maps, cut into keys of one ID or arrays of IDs;
    returns one (key, value) pair's bytes for the enclosing map."""
    cuts = sorted(draw(st.sets(st.integers(1, len(ids) - 1), max_size=len(ids) - 1))) if len(ids) > 1 else []
    parts = [ids[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True)]
    value = leaf
    for part in reversed(parts[1:]):
        key = cbor2.dumps(part[0] if len(part) == 1 else list(part))
        value = cbor_map([(key, value)], draw(st.booleans()))
    first = parts[0]
    return cbor2.dumps(first[0] if len(first) == 1 else list(first)) + value


@st.composite
def records_with_repeats(draw: st.DrawFn) -> tuple[list[Record], bytes]:
    paths = draw(
        st.lists(
            st.tuples(st.sampled_from([3, 3303]), small_ids, small_ids, st.none() | small_ids).map(
                lambda t: t[:3] if t[3] is None else t
            ),
            min_size=1,
            max_size=8,
            unique=True,
        )
    )
    # Keep it a tree: no resource with a value and also instances.
    paths = [p for p in paths if not (len(p) == 3 and any(q[:3] == p and len(q) == 4 for q in paths))]
    records = [Record(Path(p), draw(values)) for p in paths]
    pairs = [draw(chain(r.path.ids, cbor2.dumps(r.value))) for r in records]
    # Some records twice, with the same value: a repeat that must merge.
    pairs += draw(st.lists(st.sampled_from(pairs), max_size=3))
    pairs = draw(st.permutations(pairs))
    data = b"\xbf" + b"".join(pairs) + b"\xff"
    return sort_records(records), data


def same(a: list[Record], b: list[Record]) -> bool:
    return len(a) == len(b) and all(
        x.path == y.path and values_equal(x.value, y.value)  # type: ignore[arg-type]
        for x, y in zip(a, b, strict=True)
    )


@FUZZ
@given(records_with_repeats())
def test_any_split_with_repeated_keys_decodes_to_every_record(case: tuple[list[Record], bytes]) -> None:
    records, data = case
    assert same(LWM2M_CBOR.decode(data, Path(())), records)


@FUZZ
@given(records_with_repeats(), st.data())
def test_a_conflicting_repeat_is_a_codec_error(case: tuple[list[Record], bytes], data: st.DataObject) -> None:
    records, blob = case
    victim = data.draw(st.sampled_from(records))
    other = data.draw(values.filter(lambda v: not values_equal(v, victim.value)))  # type: ignore[arg-type]
    conflict = data.draw(chain(victim.path.ids, cbor2.dumps(other)))
    try:
        LWM2M_CBOR.decode(blob[:-1] + conflict + b"\xff", Path(()))
    except CodecError as exc:
        assert str(victim.path) in str(exc)
    else:
        raise AssertionError(f"{victim.path} given as {victim.value!r} and {other!r} decoded")


@FUZZ
@given(records_with_repeats(), st.data())
def test_mutated_repeated_key_payloads_raise_only_codec_error(
    case: tuple[list[Record], bytes], data: st.DataObject
) -> None:
    raw = bytearray(case[1])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:]
            if not raw:
                raw.append(0xBF)
        else:
            raw.insert(pos, data.draw(st.integers(0, 255)))
    try:
        out = LWM2M_CBOR.decode(bytes(raw), Path(()))
    except CodecError:
        return
    paths = [r.path for r in out]
    assert len(paths) == len(set(paths))  # one tree: no path twice


@FUZZ
@given(st.binary(max_size=200).map(lambda b: b"\xbf" + b))
def test_random_indefinite_maps_raise_only_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        LWM2M_CBOR.decode(data, Path(()))
