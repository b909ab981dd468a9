"""Encode/decode operations per second for every LwM2M content format.

Two payloads: the Device object instance /3/0 (the classic example of the
specifications) and a pack of 10 records (10 Temperature instances, the
shape of a typical SenML notification). Each figure is printed beside a
baseline measured in the same run: stdlib ``json`` dumping/loading the same
records in their plain JSON form, since these machines are shared and noisy.

    python bench/codecs.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from lwm2m.codec.formats import get_codec
from lwm2m.errors import CodecError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.jsonform import records_to_json
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
PACK = [Record(P(f"/3303/{i}/5700"), 20.0 + i / 8) for i in range(10)]

FORMATS = ["tlv", "senml-json", "senml-cbor", "lwm2m-cbor", "oma-json"]


def rate(fn: Callable[[], object], seconds: float) -> float:
    n = 0
    batch = 50
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = ap.parse_args()
    models = load_catalogue()
    head = ("payload", "format", "bytes", "encode/s", "decode/s", "enc/json", "dec/json")
    print("{:<8} {:<12} {:>6} {:>11} {:>11} {:>9} {:>9}".format(*head))
    for label, records, base in (("device", DEVICE, P("/3/0")), ("pack10", PACK, P("/3303"))):
        plain = records_to_json(records)
        text = json.dumps(plain)
        base_enc = rate(lambda plain=plain: json.dumps(plain), args.seconds)
        base_dec = rate(lambda text=text: json.loads(text), args.seconds)
        print(f"{label:<8} {'json (base)':<12} {len(text):>6} {base_enc:>11,.0f} {base_dec:>11,.0f}")
        for name in FORMATS:
            codec = get_codec(name)
            try:
                data = codec.encode(records, base, models)
            except CodecError as exc:
                print(f"{label:<8} {name:<12} cannot encode: {exc}")
                continue
            assert codec.decode(data, base, models) == sorted(records, key=lambda r: r.path)
            enc = rate(
                lambda codec=codec, records=records, base=base: codec.encode(records, base, models),
                args.seconds,
            )
            dec = rate(
                lambda codec=codec, data=data, base=base: codec.decode(data, base, models), args.seconds
            )
            print(
                f"{label:<8} {name:<12} {len(data):>6} {enc:>11,.0f} {dec:>11,.0f}"
                f" {enc / base_enc:>9.2f} {dec / base_dec:>9.2f}"
            )
    single = Record(P("/3303/0/5700"), 21.5)
    for name in ("text", "cbor"):
        codec = get_codec(name)
        data = codec.encode([single], single.path, models)
        enc = rate(lambda codec=codec: codec.encode([single], single.path, models), args.seconds)
        dec = rate(lambda codec=codec, data=data: codec.decode(data, single.path, models), args.seconds)
        print(f"{'single':<8} {name:<12} {len(data):>6} {enc:>11,.0f} {dec:>11,.0f}")


if __name__ == "__main__":
    main()
