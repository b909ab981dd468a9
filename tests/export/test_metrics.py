"""``GET /metrics`` of a running server with real devices: our client over UDP (register, read,
observe and notify, Send, a request queued for a sleeping client, de-register) and over DTLS
(a handshake that completes, one that fails on a wrong key); each scrape parses with
prometheus-client's own parser and the values move as the devices do."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.client import temperature, until
from tests.helpers.events import next_event
from tests.helpers.pki import KEY, OTHER_KEY
from tests.helpers.ports import free_tcp_port, free_udp_port

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.coap.numbers import Code
from lwm2m.errors import ConfigError
from lwm2m.export.metrics import LoopLag, MetricsConfig, ServerMetrics
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientSleeping, NotificationReceived
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import PskCredentials
from lwm2m.web.app import create_app

Sample = tuple[str, frozenset[tuple[str, str]]]


class Scraper:
    """Scrapes ``/metrics`` of an app (its lifespan running) and reads samples by name and labels."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api
        self.samples: dict[Sample, float] = {}
        self.names: set[str] = set()

    async def scrape(self) -> Scraper:
        response = await self.api.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")
        self.samples = {}
        self.names = set()
        for family in text_string_to_metric_families(response.text):
            self.names.add(family.name)
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return self

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for one not (yet) exposed, as a counter never counted."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


@contextlib.asynccontextmanager
async def scraping(server: Server, **app_options: object) -> AsyncIterator[Scraper]:
    metrics = ServerMetrics(server, MetricsConfig(lag_interval=0.02))
    app = create_app(server, metrics=metrics, **app_options)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as api,
    ):
        yield Scraper(api)


async def test_a_device_through_register_read_notify_send_and_deregister() -> None:
    async with Server(ServerConfig(port=0)) as server, scraping(server) as m:
        events = server.events()
        await m.scrape()
        assert m("lwm2m_registrations") == 0
        assert m("lwm2m_requests_received_total", operation="register", code="2.01") == 0
        temp = temperature()
        async with Client("met-1", server.uri, [temp]) as client:
            await client.wait_registered(5)
            await m.scrape()
            assert m("lwm2m_registrations") == 1
            assert m("lwm2m_requests_received_total", operation="register", code="2.01") == 1

            assert (await server.read("met-1", "/3303/0/5700")).code == Code.CONTENT
            assert (await server.read("met-1", "/3303/0/9999")).code == Code.NOT_FOUND
            await m.scrape()
            assert m("lwm2m_requests_sent_total", operation="read", code="2.05") == 1
            assert m("lwm2m_requests_sent_total", operation="read", code="4.04") == 1
            assert m("lwm2m_request_duration_seconds_count", operation="read") == 2
            assert m("lwm2m_request_duration_seconds_bucket", operation="read", le="+Inf") == 2
            assert 0 < m("lwm2m_request_duration_seconds_sum", operation="read") < 5

            observation = await server.observe("met-1", "/3303/0/5700")
            for value in (22.0, 23.0):
                temp.set(5700, value)
                await next_event(events, NotificationReceived)
            await m.scrape()
            assert m("lwm2m_requests_sent_total", operation="observe", code="2.05") == 1
            assert m("lwm2m_notifications_received_total") == 2
            assert m("lwm2m_observations") == 1
            await observation.cancel()
            await m.scrape()
            assert m("lwm2m_notifications_received_total") == 2  # kept when the observation ends
            assert m("lwm2m_observations") == 0

            assert (await client.send(["/3303/0/5700"])).code == Code.CHANGED
            await m.scrape()
            assert m("lwm2m_sends_received_total") == 1
            assert m("lwm2m_requests_received_total", operation="send", code="2.04") == 1
        await asyncio.sleep(0.05)  # a tick of the lag timer at least
        await m.scrape()
        assert m("lwm2m_registrations") == 0
        assert m("lwm2m_requests_received_total", operation="deregister", code="2.02") == 1
        # The lag timer ticked (every 20 ms) and the process collector answered.
        assert m("lwm2m_event_loop_lag_seconds_count") > 0
        assert m("lwm2m_event_loop_lag_seconds_bucket", le="+Inf") == m("lwm2m_event_loop_lag_seconds_count")
        assert m("process_cpu_seconds_total") > 0
        assert "lwm2m_dtls_handshakes" not in m.names  # no DTLS served


async def test_a_request_queued_for_a_sleeping_client() -> None:
    async with Server(ServerConfig(port=0, awake_time=0.2)) as server, scraping(server) as m:
        events = server.events()
        config = ClientConfig(queue_mode=True, awake_time=0.2, lifetime=300)
        async with Client("dozy", server.uri, [temperature()], config=config) as client:
            await client.wait_registered(5)
            await m.scrape()
            assert (
                m("lwm2m_queue_mode_clients", state="awake"),
                m("lwm2m_queue_mode_clients", state="sleeping"),
            ) == (
                1,
                0,
            )
            await next_event(events, ClientSleeping)
            await m.scrape()
            assert m("lwm2m_queue_mode_clients", state="sleeping") == 1
            assert m("lwm2m_queued_requests") == 0
            read = asyncio.create_task(server.read("dozy", "/3303/0/5700", timeout=5))
            await until(lambda: server.presence.waiting == 1)
            await m.scrape()
            assert m("lwm2m_queued_requests") == 1
            client.trigger_update()  # it wakes up: the queued read goes out
            assert (await read).code == Code.CONTENT
            await m.scrape()
            assert m("lwm2m_queued_requests") == 0
            assert m("lwm2m_queue_mode_clients", state="awake") == 1
            assert m("lwm2m_requests_received_total", operation="update", code="2.04") == 1
            assert m("lwm2m_requests_sent_total", operation="read", code="2.05") == 1


async def test_dtls_handshakes_completed_and_failed_and_their_alerts() -> None:
    async with Server(ServerConfig(port=0, coaps_port=0)) as server, scraping(server) as m:
        await server.security.put(SecurityInfo("dtls-m", "dtls-m-id", KEY))
        assert server.coaps_uri is not None
        await m.scrape()
        assert m("lwm2m_dtls_handshakes_total", result="completed") == 0
        good = Client(
            "dtls-m",
            server.coaps_uri,
            [temperature()],
            config=ClientConfig(psk=PskCredentials("dtls-m-id", KEY)),
        )
        async with good:
            await good.wait_registered(5)
            await m.scrape()
            assert m("lwm2m_dtls_handshakes_total", result="completed") == 1
            assert m("lwm2m_dtls_sessions", state="established") == 1
            assert m("lwm2m_requests_received_total", operation="register", code="2.01") == 1
        bad = Client(
            "dtls-m",
            server.coaps_uri,
            config=ClientConfig(psk=PskCredentials("dtls-m-id", OTHER_KEY), retry_initial=0.05),
        )
        async with bad:
            await until(lambda: bad.errors >= 1)
        await m.scrape()
        assert m("lwm2m_dtls_handshakes_total", result="failed") >= 1
        # The server refused the wrong key with a fatal alert (RFC 5246 §7.2); the good client's
        # close_notify at its stop was one received.
        assert m("lwm2m_dtls_alerts_total", direction="sent") >= 1
        assert m("lwm2m_dtls_alerts_total", direction="received") >= 1
        assert m("lwm2m_dtls_events_total", event="handshakes_started") >= 2


async def test_the_lag_timer_measures_a_blocked_loop() -> None:
    lag = LoopLag(0.01)
    lag.start()
    try:
        await asyncio.sleep(0.03)
        time.sleep(0.06)  # the loop is held: the next tick comes late
        await asyncio.sleep(0.03)
    finally:
        lag.close()
    assert lag.histogram.count >= 2
    assert lag.histogram.sum >= 0.04
    with pytest.raises(ConfigError):
        MetricsConfig(lag_interval=0)


def test_the_package_runs_without_prometheus_client() -> None:
    """Without the metrics extra the server, its API and the demo import and run their CLI;
    ``--metrics`` says what is missing and ``--no-metrics`` is fine."""
    script = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import lwm2m.web.app, lwm2m.cli.demo_cmd, lwm2m.server\n"
        "from click.testing import CliRunner\n"
        "from lwm2m.cli import main\n"
        "from lwm2m.cli.server_cmd import metrics_wanted\n"
        "assert CliRunner().invoke(main, ['server', '--help']).exit_code == 0\n"
        "assert metrics_wanted(None) is False and metrics_wanted(False) is False\n"
        "result = CliRunner().invoke(main, ['server', '--metrics', '--store', 'memory'])\n"
        "print(result.exit_code, result.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 ") and "pip install 'lwm2m[metrics]'" in done.stdout


def test_lwm2m_server_serves_metrics_behind_its_token_and_no_metrics_turns_them_off() -> None:
    command = [sys.executable, "-m", "lwm2m", "server", "--store", "memory"]
    for extra, expected in ((["--metrics-token", "scrape-secret"], 200), (["--no-metrics"], 404)):
        coap, http = free_udp_port(), free_tcp_port()
        ports = ["--coap-port", str(coap), "--http-port", str(http)]
        proc = subprocess.Popen(
            [*command, *ports, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            assert f"http://127.0.0.1:{http}/api" in proc.stdout.readline()
            banner = []  # the start-up lines, up to the last one
            while not (line := proc.stdout.readline()).startswith("Ctrl-C") and line:
                banner.append(line)
            assert any("Prometheus metrics: " in line for line in banner) is (expected == 200), banner
            url = f"http://127.0.0.1:{http}/metrics"
            answer = httpx.get(url, headers={"Authorization": "Bearer scrape-secret"}, timeout=5)
            assert answer.status_code == expected
            if expected == 200:
                assert "lwm2m_registrations 0.0" in answer.text and "process_cpu_seconds_total" in answer.text
                assert httpx.get(url, timeout=5).status_code == 401
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
