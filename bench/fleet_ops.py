"""The fleet operations bench of the issue in one run, one summary table at the end.

1. campaign throughput: ``bench/campaign.py`` (devices updated per minute, a ``--size`` byte
   package over CoAP pull on loopback to ``--count`` simulated devices, at most
   ``--in-flight`` at a time);
2. the cost of metrics on the notification ingest path: ``bench/metrics.py``;
3. the cost of webhooks (a hook wanting every notification): ``bench/export.py``;
4. the cost of the MQTT export (every notification published): ``bench/mqtt_export.py``;
5. the same three costs in the server's instructions per notification, counted by callgrind:
   ``bench/ingest_instructions.py`` (when valgrind is installed), which the other core's work
   and a busy machine do not move.

Each runs in a process of its own, one after the other (their output is shown as it comes);
the ingest benches take ``--observers``, ``--seconds`` and ``--rounds``. The table gives, per
ingest bench, the server process's CPU per notification on/off - 1 (median of the pairs, the
issue's "≤ 5 %" figure) and the ingest rate on/off, and for the export benches the export
worker's own CPU per notification (on the other core) and the handoff's cost per event.
``--stream`` gives the export benches a subscriber in every phase, as the REST API's event
stream is in ``lwm2m server``: the server then makes each event in the off phases too.
``--rate N`` paces the clients at N notifications/s (below what the server takes), so that on
and off phases compare the server's CPU per notification at the same rate: as fast as they go,
an export that takes a core from the clients' process lowers the rate, and a server at a lower
rate spends more CPU per notification (its batches are smaller), which is not the export's cost.

    python bench/fleet_ops.py [--count 1000] [--size 1048576] [--in-flight 100]
                              [--observers 200] [--seconds 3] [--rounds 3] [--stream] [--rate N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 0.05


def run(script: str, args: list[str]) -> str:
    """Run ``bench/script`` with ``args``, showing its output as it comes; answer the output."""
    print(f"\n$ python bench/{script} {' '.join(args)}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(f"  | {line}", end="", flush=True)
        lines.append(line)
    if process.wait() != 0:
        print(f"  bench/{script} ended with status {process.returncode}")
    return "".join(lines)


def number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1).replace(",", "")) if found else None


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="devices of the campaign")
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes of the firmware package")
    parser.add_argument("--in-flight", type=int, default=100, help="devices updated at once")
    parser.add_argument("--observers", type=int, default=200, help="observations of the ingest benches")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each ingest phase")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs of each ingest bench")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="the export benches with a subscriber in every phase (as in `lwm2m server`)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="notifications per second of the ingest benches' clients (0: as fast as they can)",
    )
    args = parser.parse_args(argv)
    ingest = [
        "--observers",
        str(args.observers),
        "--seconds",
        f"{args.seconds:g}",
        "--rounds",
        str(args.rounds),
        "--rate",
        f"{args.rate:g}",
    ]

    campaign = run(
        "campaign.py",
        ["--count", str(args.count), "--size", str(args.size), "--in-flight", str(args.in_flight)],
    )
    metrics = run("metrics.py", ingest)
    exports = [*ingest, "--stream"] if args.stream else ingest
    webhooks = run("export.py", exports)
    mqtt = run("mqtt_export.py", exports)
    counted = run("ingest_instructions.py", []) if shutil.which("valgrind") else ""

    per_minute = number(r"devices updated per minute: ([\d,.]+)", campaign)
    elapsed = number(r"pull, \d+ at a time: ([\d.]+) s", campaign)
    # Instructions per notification on against the REST API's ring (as lwm2m server runs), in
    # percent (the scrape spread in, for metrics): the line's second percentage.
    instructions = {
        name: number(rf"^\s*{re.escape(label)}.*?\s[+-][\d.]+%\s+([+-][\d.]+)%", counted)
        for name, label in (
            ("metrics", "+ a scrape every"),
            ("webhooks", "webhooks: handoff to the worker"),
            ("MQTT", "MQTT: handoff to the worker"),
        )
    }
    rows = [
        (
            "metrics",
            number(r"measured cost: CPU/notification ([+-][\d.]+)%", metrics),
            number(r"rate ([+-][\d.]+)%", metrics),
            None,
            None,
        ),
        (
            "webhooks",
            number(r"CPU per notification ([+-][\d.]+)% \(medians", webhooks),
            number(r"ingest rate ([\d.]+), CPU", webhooks),
            number(r"export worker: ([\d.]+) µs", webhooks),
            number(r"handoff alone, per event: .* = ([\d.]+) µs", webhooks),
        ),
        (
            "MQTT",
            number(r"cost: CPU/notification ([+-][\d.]+)%", mqtt),
            number(r"ingest rate on/off ([\d.]+)", mqtt),
            number(r"export worker: ([\d.]+) µs", mqtt),
            None,
        ),
    ]
    print("\nfleet operations, one run")
    updated = "—" if per_minute is None else f"{per_minute:,.0f}"
    took = "" if elapsed is None else f" ({elapsed:.1f} s)"
    print(
        f"  campaign: {args.count} devices, {args.size:,} byte package over CoAP pull,"
        f" {args.in_flight} at a time: {updated} devices updated per minute{took}"
    )
    print(f"  ingest cost ({args.observers} observations, {args.rounds} x {args.seconds:g} s per phase):")
    print(
        f"  {'':10} {'server CPU/notification':>24} {'rate on/off':>12}"
        f" {'worker µs/notification':>23} {'handoff µs/event':>17} {'instructions':>13}"
    )
    for name, cost, rate, worker, handoff in rows:
        if name == "metrics":
            shown_rate = "—" if rate is None else f"{1 + rate / 100:.2f}"
        else:
            shown_rate = "—" if rate is None else f"{rate:.2f}"
        shown_worker = "—" if worker is None else f"{worker:.2f}"
        shown_handoff = "—" if handoff is None else f"{handoff:.2f}"
        shown_counted = percent(instructions[name])
        print(
            f"  {name:10} {percent(cost):>24} {shown_rate:>12} {shown_worker:>23} {shown_handoff:>17}"
            f" {shown_counted:>13}"
        )
    print(f"  target: server CPU per notification ≤ +{TARGET:.0%} on/off (same run)")
    print("  instructions: the server's per notification against the REST API's ring of events, callgrind")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
