"""Soak: a steady fleet with observations, and the server's resident memory minute by minute.

``lwm2m server`` runs as a subprocess on free loopback ports with its default store (SQLite in
a temporary folder) or ``--store memory``; ``lwm2m simulate`` runs ``--devices`` weather
stations in a process of their own, their values moving every ``--update-interval`` seconds.
Once they are registered, this process observes ``/3303/0/5700`` (the temperature) on every
device through the REST API (``POST /api/clients/{ep}/3303/0/5700/observe``), so the server
takes about one notification per device per second, and then watches for ``--minutes``:

- each minute, the server's VmRSS (``/proc/PID/status``), how much it grew since the last
  minute, what SQLite allocated (``sqlite3_memory_used``, asked by a thread in the server),
  the RSS less that, Python's allocated blocks, and the notifications the fleet sent;
- at the end, the growth from the end of the warm-up (``--warmup`` minutes) to the end, in %
  and in MB per minute, of the RSS, of the RSS less SQLite, and of the RSS from the minute
  SQLite's page cache reached its cap: a steady fleet should leave them flat (within ±5%).

What fills up at first, and then stays: SQLite's page cache (``CACHE_KIB`` in
``storage/sqlite.py``: some 35 MB, full after about 4 minutes at 900 notifications/s, later
at a slower ingest), the CoAP duplicate detection (``max_dedup_entries``), and the history
up to its retention (``--history-records`` per device, on disk with SQLite, in RAM with the
memory store: with the default 10,000 a 1,000-device fleet takes hours to fill it, so a
memory-store soak passes a small one, e.g. ``--history-records 100``).

``--sse read`` also keeps a client on ``/api/events`` (as the web console does) reading
every event; ``--sse stall`` opens one that never reads (a browser tab that froze): the
server must not keep what it cannot deliver.

``--tracemalloc N`` runs the server under tracemalloc (N frames) and writes, each minute,
the allocations that grew most since the end of the warm-up, by traceback, to
``--trace-file``: where a growth comes from. It slows the server down: use it on short
runs to find a cause, not for the figures.

    python bench/soak.py [--devices 1000] [--minutes 10] [--store sqlite|memory] [--sse none|read|stall]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HOST = "127.0.0.1"
OBSERVED = "3303/0/5700"
SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from lwm2m.storage.sqlite import CACHE_KIB  # noqa: E402  (the tree this bench belongs to)

SQLITE_CACHE_MB = CACHE_KIB * 1024 / 1e6  # the page cache's cap, as sqlite3_memory_used counts

# The server as ``lwm2m server`` runs it, plus a thread that writes, every few seconds, its
# RSS, what SQLite allocated (its page cache is capped: CACHE_KIB in storage/sqlite.py) and
# Python's allocated blocks to a stats file. With SOAK_FRAMES it also runs under tracemalloc
# and appends, each period, the allocations grown most since the end of the warm-up.
SERVER = r"""
import json, os, sys, threading, time
frames = int(os.environ.get("SOAK_FRAMES") or 0)
if frames:
    import tracemalloc
    tracemalloc.start(frames)
stats_file, period = os.environ["SOAK_STATS"], float(os.environ["SOAK_PERIOD"])
warm = int(os.environ["SOAK_WARMUP"])

def sqlite_memory():
    # SQLite's own allocations (page cache, statements) are not Python's: ask the library.
    try:
        import ctypes, ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return lib.sqlite3_memory_used() / 1e6
    except Exception:
        return float("nan")

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

def stats():
    import gc
    collect = float(os.environ.get("SOAK_COLLECT") or 0)
    collected_at = time.monotonic()
    while True:
        if collect and time.monotonic() >= collected_at + collect:
            # Cyclic garbage waits for a full collection, which the server's thresholds make
            # rare: collected here, what is left is what is still referenced.
            collected_at = time.monotonic()
            gc.collect()
        full = gc.get_stats()[2]["collections"]
        line = json.dumps(
            {"rss": rss(), "sqlite": sqlite_memory(), "blocks": sys.getallocatedblocks(), "full_gc": full}
        )
        with open(stats_file + ".tmp", "w") as f:
            f.write(line)
        os.replace(stats_file + ".tmp", stats_file)
        time.sleep(2.0)

def trace():
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
    ]
    out = os.environ["SOAK_TRACE"]
    base = None
    n = 0
    while True:
        time.sleep(period)
        n += 1
        current, peak = tracemalloc.get_traced_memory()
        rss_now, sqlite_now = rss(), sqlite_memory()
        snap = tracemalloc.take_snapshot().filter_traces(ignore)
        with open(out, "a") as f:
            f.write(
                f"=== period {n}: RSS {rss_now:.1f} MB, Python traced {current / 1e6:.1f} MB"
                f" (peak {peak / 1e6:.1f} MB), SQLite {sqlite_now:.1f} MB\n"
            )
            if base is not None:
                grown = snap.compare_to(base, "traceback")
                f.write(f"--- grown since period {warm}, largest first\n")
                for stat in grown[:12]:
                    f.write(f"{stat.size_diff / 1e3:+.1f} kB, {stat.count_diff:+d} blocks\n")
                    for line in stat.traceback.format(limit=frames):
                        f.write(f"    {line}\n")
        if n == warm:
            base = snap

threading.Thread(target=stats, daemon=True).start()
if frames:
    threading.Thread(target=trace, daemon=True).start()
from lwm2m.cli import main
main(sys.argv[1:], prog_name="lwm2m")
"""


def growth(name: str, series: list[float], first: int) -> None:
    """How ``series`` (one value a minute) moved from minute ``first`` to its end."""
    if len(series) <= first:
        return
    base, end = series[first - 1], series[-1]
    span = len(series) - first
    high, low = max(series[first - 1 :]), min(series[first - 1 :])
    print(
        f"{name} after warm-up (minute {first} -> {len(series)}): {end - base:+.1f} MB"
        f" ({(end - base) / base * 100:+.1f}%), {(end - base) / span:+.2f} MB/min;"
        f" range {low:.1f}-{high:.1f} MB ({(high - low) / base * 100:.1f}% of {base:.1f} MB)"
    )


def server_stats(path: Path) -> dict[str, float]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Api:
    """The server's REST API over plain HTTP (JSON in, JSON out)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, timeout: float = 30.0) -> tuple[int, object]:
        request = urllib.request.Request(self.base + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, body.decode(errors="replace")

    def endpoints(self) -> list[str]:
        """Every registered endpoint, following pages when the listing is paged."""
        names: list[str] = []
        cursor: str | None = None
        while True:
            query = "?limit=1000" + (f"&cursor={urllib.request.quote(cursor)}" if cursor else "")
            status, body = self.call("GET", "/api/clients" + query)
            if status != 200:
                raise RuntimeError(f"GET /api/clients answered {status}: {body}")
            if isinstance(body, list):  # an unpaged listing
                return [c["endpoint"] for c in body]
            assert isinstance(body, dict)
            names.extend(c["endpoint"] for c in body["clients"])
            cursor = body.get("next")
            if not cursor:
                return names


class EventReader(threading.Thread):
    """A client of ``/api/events``: reads every event (``stall=False``) or none at all."""

    def __init__(self, port: int, *, stall: bool) -> None:
        super().__init__(daemon=True)
        self.port, self.stall = port, stall
        self.events = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=None)
            conn.request("GET", "/api/events")
            answer = conn.getresponse()
            if self.stall:
                # Headers read, body never: the server's socket buffer fills and then it must
                # hold (or drop) what this client does not take.
                threading.Event().wait()
            for line in answer:
                if line.startswith(b"event:"):
                    self.events += 1
        except Exception as exc:  # reported at the end
            self.error = repr(exc)


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(what: str, check: object, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what}: the process ended ({proc.returncode}); its output:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, RuntimeError):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.5)
    sys.exit(f"{what}: not done after {timeout:.0f} s; the log:\n{log.read_text()[-3000:]}")


def last_line(log: Path, prefix: str) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith(prefix)]
    return lines[-1] if lines else ""


def notifications_sent(log: Path) -> int | None:
    """The fleet's count of notifications sent, from the simulator's last summary line."""
    line = last_line(log, "registered ")
    marker = "notifications sent "
    if marker not in line:
        return None
    return int(line.split(marker)[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=2, help="minutes before the growth is measured")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument(
        "--history-records", type=int, default=None, help="the server's --history-records (values per device)"
    )
    parser.add_argument("--sse", choices=("none", "read", "stall"), default="none")
    parser.add_argument("--update-interval", type=float, default=1.0, help="seconds between value changes")
    parser.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per second: faster moving values"
    )
    parser.add_argument("--period", type=float, default=60.0, help="seconds between RSS lines (a 'minute')")
    parser.add_argument(
        "--collect",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run a full garbage collection in the server this often: tells cyclic garbage from leaks",
    )
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="trace the server")
    parser.add_argument("--trace-file", default="soak-trace.txt")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="lwm2m-soak-"))
    coap, http_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    env = _env()
    server_args = [
        "server",
        "--coap-port",
        str(coap),
        "--http-port",
        str(http_port),
        "--data",
        str(folder / "data"),
    ]
    if args.store == "memory":
        server_args += ["--store", "memory"]
    if args.history_records is not None:
        server_args += ["--history-records", str(args.history_records)]
    stats_file = folder / "server-stats.json"
    env.update(
        SOAK_STATS=str(stats_file),
        SOAK_PERIOD=str(args.period),
        SOAK_WARMUP=str(args.warmup),
        SOAK_COLLECT=str(args.collect),
    )
    if args.tracemalloc:
        trace = Path(args.trace_file).resolve()
        trace.unlink(missing_ok=True)
        env.update(SOAK_FRAMES=str(args.tracemalloc), SOAK_TRACE=str(trace))
    command = [sys.executable, "-c", SERVER, *server_args]
    api = Api(f"http://{HOST}:{http_port}")
    print(
        f"soak: {args.devices} devices, values every {args.update_interval:g} s, {args.store} store,"
        f" SSE {args.sse}, {args.minutes:g} minutes (warm-up {args.warmup}), logs in {folder}",
        flush=True,
    )
    server_log, sim_log = folder / "server.log", folder / "simulate.log"
    with process(command, server_log, env) as server:
        wait_for("server start", lambda: api.call("GET", "/api/models")[0] == 200, 60, server, server_log)
        rss_idle = rss_mb(server.pid)
        simulate = [
            sys.executable,
            "-m",
            "lwm2m",
            "simulate",
            "--server",
            f"coap://{HOST}:{coap}",
            "--count",
            str(args.devices),
            "--profile",
            "ipso-weather",
            "--update-interval",
            str(args.update_interval),
            "--rate",
            "500",
            "--seed",
            "1",
            "--speed",
            str(args.speed),
            "--report-every",
            "5",
        ]
        with process(simulate, sim_log, env) as sim:
            started = time.monotonic()
            wait_for("registration", lambda: len(api.endpoints()) >= args.devices, 300, sim, sim_log)
            registered = time.monotonic() - started
            names = sorted(api.endpoints())

            def observe(ep: str) -> bool:
                status, _ = api.call("POST", f"/api/clients/{ep}/{OBSERVED}/observe")
                return status == 200

            with ThreadPoolExecutor(16) as pool:
                ok = sum(pool.map(observe, names))
            print(
                f"registered {len(names)} in {registered:.1f} s; observing {OBSERVED} on {ok} of them"
                f" (server RSS idle {rss_idle:.1f} MB, now {rss_mb(server.pid):.1f} MB)",
                flush=True,
            )
            reader = None
            if args.sse != "none":
                reader = EventReader(http_port, stall=args.sse == "stall")
                reader.start()
            print(
                f"{'minute':>6} {'RSS MB':>8} {'change':>8} {'SQLite MB':>9} {'RSS-SQLite':>10}"
                f" {'Python blocks':>13} {'full GCs':>8} {'notifications':>13}",
                flush=True,
            )
            samples: list[float] = []
            rest: list[float] = []  # RSS less what SQLite holds (its page cache has a fixed cap)
            sqlite_mb: list[float] = []
            t0 = time.monotonic()
            last_sent = notifications_sent(sim_log) or 0
            minutes = round(args.minutes)
            for minute in range(1, minutes + 1):
                time.sleep(max(0.0, t0 + minute * args.period - time.monotonic()))
                for proc, log in ((server, server_log), (sim, sim_log)):
                    if proc.poll() is not None:
                        sys.exit(f"a process ended early; its log:\n{log.read_text()[-3000:]}")
                rss = rss_mb(server.pid)
                change = rss - samples[-1] if samples else 0.0
                samples.append(rss)
                stats = server_stats(stats_file)
                sqlite = stats.get("sqlite", float("nan"))
                rest.append(rss - sqlite)
                sqlite_mb.append(sqlite)
                sent = notifications_sent(sim_log) or last_sent
                print(
                    f"{minute:>6} {rss:>8.1f} {change:>+8.1f} {sqlite:>9.1f} {rss - sqlite:>10.1f}"
                    f" {stats.get('blocks', 0):>13,} {stats.get('full_gc', 0):>8} {sent - last_sent:>13}",
                    flush=True,
                )
                last_sent = sent
            if reader is not None:
                state = f"{reader.events} events read" if not reader.stall else "stalled"
                print(f"SSE client: {state}" + (f", error {reader.error}" if reader.error else ""))
            print(f"the fleet: {last_line(sim_log, 'registered ')}")
    first = max(args.warmup, 1)
    growth("RSS", samples, first)
    growth("RSS less SQLite", rest, first)
    # SQLite's page cache fills up to its fixed cap as the database grows: a warm-up that
    # takes longer than the rest at a slow ingest. From the minute it reached the cap on:
    full = next((i for i, m in enumerate(sqlite_mb) if m >= 0.95 * SQLITE_CACHE_MB), None)
    if full is not None and full + 1 > first:
        growth(f"RSS once SQLite's cache is full ({SQLITE_CACHE_MB:.0f} MB)", samples, full + 1)
    if args.tracemalloc:
        print(f"allocations by traceback: {Path(args.trace_file).resolve()}")
    if args.keep:
        print(f"kept {folder}")
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
