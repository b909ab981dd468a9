"""What a DTLS endpoint keeps per instance, for fleets of simulated devices (one endpoint each):
the layer's counters start empty and read as 0, and the endpoints ``CoapDtlsEndpoint.create``
makes share one Message ID and token generator (RFC 7252 §4.4, §5.3.1) and, when client-only,
one bounded failure log."""

from __future__ import annotations

from lwm2m.coap.endpoint import Endpoint, EndpointConfig
from lwm2m.transport.dtls import DtlsClientConfig, DtlsLayer, DtlsServerConfig, PskCredentials
from lwm2m.transport.dtls.engine_backend import EngineBackend

CLIENT = DtlsClientConfig(psk=PskCredentials("dev-1", bytes(16)))
SERVER = DtlsServerConfig(psk_lookup={"dev-1": bytes(16)}.get)


def test_counters_start_empty_and_read_as_zero() -> None:
    layer = DtlsLayer(Endpoint(), client=EngineBackend().client(CLIENT))
    assert len(layer.counters) == 0
    assert layer.counters["handshakes_started"] == 0 and layer.counters["errors"] == 0
    assert len(layer.counters) == 0  # reading a name does not store it
    layer.counters["errors"] += 1
    layer.counters["errors"] += 1
    assert layer.counters == {"errors": 2}


def test_a_garbage_datagram_is_counted_from_zero() -> None:
    layer = DtlsLayer(Endpoint(), server=EngineBackend().server(SERVER))
    layer.receive_datagram(bytes(20_000), ("192.0.2.1", 5684), 0.0)
    assert layer.counters["dropped_oversize"] == 1


async def test_created_endpoints_share_the_generator_and_clients_the_log() -> None:
    from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint

    config = EndpointConfig()
    endpoints = [
        await CoapDtlsEndpoint.create("127.0.0.1", 0, client=CLIENT),
        await CoapDtlsEndpoint.create("127.0.0.1", 0, client=CLIENT, config=config),
        await CoapDtlsEndpoint.create("127.0.0.1", 0, server=SERVER),
    ]
    try:
        a, b, server = endpoints
        assert a.endpoint._rng is b.endpoint._rng is server.endpoint._rng
        assert a._session_log is b._session_log
        assert server._session_log is not a._session_log
    finally:
        for endpoint in endpoints:
            await endpoint.close()
