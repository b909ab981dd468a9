"""``lwm2m client`` and ``lwm2m simulate`` with coap+tcp:// server URIs, and ``lwm2m server``'s
--tcp-port/--tls-port checks."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from tests.helpers.certificates import CertificateAuthority, pem_files
from tests.helpers.cli import lwm2m_process, start
from tests.helpers.events import next_event
from tests.helpers.ports import free_tcp_port, free_udp_port
from tests.helpers.simulator import served

from lwm2m.cli import main
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import X509Credentials
from lwm2m.web.app import create_app


async def test_client_over_tcp_registers_is_read_and_deregisters() -> None:
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        events = server.events()
        assert server.tcp_uri is not None
        proc = await lwm2m_process(
            "client", "--server", server.tcp_uri, "--endpoint", "cli-tcp", "--lifetime", "60"
        )
        try:
            registration = (await next_event(events, ClientRegistered, timeout=20)).registration
            assert (registration.endpoint, registration.binding) == ("cli-tcp", "T")
            assert server.transport_of("cli-tcp") == "tcp"
            assert (await server.read("cli-tcp", "/3303/0/5700", timeout=5)).code == Code.CONTENT
            proc.send_signal(signal.SIGINT)
            await next_event(events, ClientDeregistered)
            async with asyncio.timeout(10):
                await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_client_over_tls_with_a_psk_and_with_a_raw_public_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def pem(name: str) -> tuple[Path, bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (tmp_path / f"{name}.pem").write_bytes(private)
        (tmp_path / f"{name}.pub").write_bytes(public)
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return tmp_path / f"{name}.pem", private, der

    _, server_key, _ = pem("server")
    client_file, _, client_der = pem("tracker")
    from lwm2m.transport.dtls import RpkCredentials

    config = ServerConfig(port=0, tls_port=0, rpk=RpkCredentials(server_key))
    async with Server(config) as server:
        await server.security.put(
            SecurityInfo("cli-psk", psk_identity="cli-psk-id", psk_key=bytes(range(16)))
        )
        await server.security.put(SecurityInfo("cli-rpk", rpk=client_der))
        events = server.events()
        assert server.tls_uri is not None
        runs = [
            ("cli-psk", ["--psk-identity", "cli-psk-id", "--psk-key", bytes(range(16)).hex()]),
            ("cli-rpk", ["--rpk-key", str(client_file), "--server-rpk", str(tmp_path / "server.pub")]),
        ]
        for endpoint, options in runs:
            proc = await lwm2m_process("client", "--server", server.tls_uri, "--endpoint", endpoint, *options)
            try:
                registration = (await next_event(events, ClientRegistered, timeout=20)).registration
                assert registration.endpoint == endpoint and server.transport_of(endpoint) == "tls"
                assert (await server.read(endpoint, "/3303/0/5700", timeout=5)).code == Code.CONTENT
                proc.send_signal(signal.SIGINT)
                await next_event(events, ClientDeregistered)
                async with asyncio.timeout(10):
                    await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def test_simulate_over_tcp() -> None:
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        assert server.tcp_uri is not None
        proc = await lwm2m_process(
            "simulate",
            "--server",
            server.tcp_uri,
            "--count",
            "3",
            "--profile",
            "ipso-weather",
            "--duration",
            "1",
        )
        try:
            async with asyncio.timeout(20):
                out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "registered 3/3" in out.decode(), out.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_simulate_over_tls_with_a_psk_each() -> None:
    """``--security psk`` over coaps+tcp://: a key per device, given to the server through its API
    as for coaps://."""
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0, tls_port=0)) as server,
        served(create_app(server, api_token="tls-token")) as base,
    ):
        assert server.tls_uri is not None
        proc = await lwm2m_process(
            "simulate",
            "--server",
            server.tls_uri,
            "--security",
            "psk",
            "--count",
            "3",
            "--prefix",
            "tls",
            "--local-host",
            "127.0.0.1",
            "--duration",
            "1",
            "--api",
            base,
            env={"LWM2M_API_TOKEN": "tls-token"},
        )
        try:
            async with asyncio.timeout(20):
                out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert "TLS with a PSK each" in out.decode() and "DTLS" not in out.decode(), out.decode()
            assert "registered 3/3" in out.decode(), out.decode()
            stored = await server.security.all()
            assert sorted((s.endpoint, s.psk_identity) for s in stored) == [
                (f"tls-{i:05d}", f"tls-{i:05d}") for i in range(3)
            ]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_tls_port_bad_value_is_one_line() -> None:
    result = CliRunner().invoke(main, ["server", "--coap-port", "0", "--tls-port", "70000"])
    assert result.exit_code != 0
    assert "tls_port" in result.output or "--tls-port" in result.output


def test_coaps_tcp_client_takes_a_psk() -> None:
    result = CliRunner().invoke(
        main,
        [
            "client",
            "--endpoint",
            "e",
            "--server",
            "coaps+tcp://127.0.0.1:5684",
            "--psk-identity",
            "a",
            "--psk-key",
            "not-hex",
        ],
    )
    # A PSK serves coaps+tcp:// (through our TLS engine) as it serves coaps://: what is refused
    # is the bad key, in a line that names it, not the kind of credentials.
    assert result.exit_code != 0 and "--psk-key" in result.output and "--cert" not in result.output


async def test_client_over_tls_with_certificate_files(tmp_path: Path) -> None:
    ca = CertificateAuthority("cli tcp CA")
    server_cert, device = ca.issue("127.0.0.1", usage="server"), ca.issue("cli-tls", usage="client")
    files = pem_files(tmp_path, ca, server_cert, device)
    credentials = X509Credentials(
        server_cert.cert_pem(), server_cert.key_pem(), Path(files["ca"]).read_bytes()
    )
    async with Server(ServerConfig(port=0, tls_port=0, certificate=credentials)) as server:
        await server.security.put(SecurityInfo("cli-tls", x509=True))
        events = server.events()
        assert server.tls_uri is not None
        args = ["--cert", files["client"], "--key", files["client_key"], "--ca", files["ca"]]
        proc = await lwm2m_process("client", "--server", server.tls_uri, "--endpoint", "cli-tls", *args)
        try:
            await next_event(events, ClientRegistered, timeout=20)
            assert server.transport_of("cli-tls") == "tls"
        finally:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                await proc.communicate()


def test_server_with_tcp_port_takes_a_libcoap_registration_and_shows_its_transport() -> None:
    coap_client = shutil.which("coap-client-notls")
    if coap_client is None:
        pytest.skip("coap-client-notls is not installed (Debian's libcoap3-bin)")
    coap, tcp, http = free_udp_port(), free_tcp_port(), free_tcp_port()
    proc = start(
        coap,
        http,
        None,
        "--store",
        "memory",
        "--tcp-port",
        str(tcp),
        ready=f"coap+tcp://127.0.0.1:{tcp}",
        lines=6,
    )
    try:
        uri = f"coap+tcp://127.0.0.1:{tcp}/rd?ep=cli-libcoap&lt=60&lwm2m=1.1&b=T"
        done = subprocess.run(
            [coap_client, "-m", "post", "-t", "40", "-e", "</3/0>", uri],
            capture_output=True,
            text=True,
            timeout=20,
        )
        # coap-client exits 0 whatever the answer: the registration in the REST API is the proof.
        assert "4." not in done.stderr and "5." not in done.stderr, done
        body = httpx.get(f"http://127.0.0.1:{http}/api/clients/cli-libcoap", timeout=5).json()
        assert (body["binding"], body["transport"]) == ("T", "tcp")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_bootstrap_server_over_tcp_sets_a_device_up(tmp_path: Path) -> None:
    """``lwm2m bootstrap --tcp-port`` and ``lwm2m client --bootstrap coap+tcp://``: the device
    bootstraps over TCP and registers with the coap+tcp:// server it was given."""
    from tests.cli.test_bootstrap_cmd import _line
    from tests.helpers.cli import interrupt

    data = str(tmp_path / "data")
    bs_port, bs_tcp, http = free_udp_port(), free_tcp_port(), free_tcp_port()
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        events = server.events()
        assert server.tcp_uri is not None
        add = ["bootstrap", "config", "add", "cli-bs-tcp", "--server", server.tcp_uri, "--binding", "T"]
        added = await asyncio.to_thread(CliRunner().invoke, main, [*add, "--data", data])
        assert added.exit_code == 0, added.output
        bs = await lwm2m_process(
            "bootstrap", "--coap-port", str(bs_port), "--tcp-port", str(bs_tcp), "--http-port", str(http),
            "--data", data,
        )  # fmt: skip
        client = None
        try:
            assert bs.stdout is not None
            assert f"CoAP over TCP on coap+tcp://127.0.0.1:{bs_tcp}" in await _line(bs.stdout, "over TCP")
            client = await lwm2m_process(
                "client", "--bootstrap", f"coap+tcp://127.0.0.1:{bs_tcp}", "--endpoint", "cli-bs-tcp"
            )
            registration = (await next_event(events, ClientRegistered, timeout=20)).registration
            assert (registration.endpoint, registration.binding) == ("cli-bs-tcp", "T")
            assert server.transport_of("cli-bs-tcp") == "tcp"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", timeout=5) as api:
                listing = (await api.get("/api/bootstrap")).json()
            assert [s["status"] for s in listing["sessions"]] == ["finished"]
        finally:
            await interrupt(client, bs)


def test_bootstrap_tls_port_without_certificate_is_one_line() -> None:
    result = CliRunner().invoke(main, ["bootstrap", "--coap-port", "0", "--tls-port", "0"])
    assert result.exit_code != 0
    assert "--tls-port needs --dtls-cert" in result.output
