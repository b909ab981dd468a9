"""A bootstrap configuration with security mode ``rpk`` end to end (LwM2M-TS-Core 1.2 §6.1,
§E.1; RFC 7250): the bootstrap server writes the raw public key account, our client registers
with it over DTLS to our server, whose store holds ``{"rpk": hex}`` for the endpoint."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from tests.helpers.certificates import p256
from tests.helpers.events import next_event

from lwm2m.bootstrap import BootstrapConfig, BootstrapFinished, BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.bootstrap.server import security_info
from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.security import Security, SecurityMode
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.storage.memory import MemorySecurityStore
from lwm2m.tls.certificates import spki_der
from lwm2m.transport.dtls import DtlsClientConfig, PeerIdentity, RpkCredentials, open_dtls_endpoint

SERVER_KEY, DEVICE_KEY = p256(), p256()


def private_der(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def rpk_account(uri: str, short_server_id: int, **options: object) -> BootstrapConfig:
    """A bootstrap configuration handing out one account for the server at ``uri`` in security
    mode rpk: the device's key pair and the server's public key; ``options`` add to the JSON."""
    security = {
        "mode": "rpk",
        "publicKey": spki_der(DEVICE_KEY.public_key()).hex(),
        "privateKey": private_der(DEVICE_KEY).hex(),
        "serverPublicKey": spki_der(SERVER_KEY.public_key()).hex(),
    }
    server = {"uri": uri, "shortServerId": short_server_id, "lifetime": 60, "security": security}
    return BootstrapConfig.from_json({"servers": [server], **options})


async def test_a_bootstrapped_rpk_account_registers_with_the_server() -> None:
    server_config = ServerConfig(
        host="127.0.0.1", port=0, coaps_port=0, rpk=RpkCredentials(private_der(SERVER_KEY))
    )
    async with Server(server_config) as server, BootstrapServer(BootstrapServerConfig(port=0)) as bs:
        assert server.coaps_uri is not None
        device_public = spki_der(DEVICE_KEY.public_key())
        config = rpk_account(server.coaps_uri, 101, deletePaths=["/0", "/1"])
        await bs.set_config("rpk-boot-1", config)
        info = security_info("rpk-boot-1", config)
        assert info is not None and info.rpk == device_public  # the store's {"rpk": hex}
        await server.security.put(info)
        events = server.events()
        temperature = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
        async with Client("rpk-boot-1", bootstrap=bs.uri, objects=[temperature]) as client:
            registration = (await next_event(events, ClientRegistered, timeout=15)).registration
            assert registration.endpoint == "rpk-boot-1"
            assert client.server_uri is not None and client.server_uri.scheme == "coaps"
            account = next(i for i in client.tree.instances(0) if not i.get(Security.BOOTSTRAP))
            assert account.get(Security.MODE) == SecurityMode.RPK
            read = await server.read("rpk-boot-1", "/3303/0/5700")
            assert read.code == Code.CONTENT and read.records[0].value == 21.5
            assert server.dtls is not None
            (session,) = server.dtls.sessions()
            assert session.identity == PeerIdentity("rpk", device_public.hex())


async def test_everything_over_raw_public_keys_bootstrap_server_included() -> None:
    """The device bootstraps with its raw public key (which the bootstrap server's security
    store holds), is handed an RPK account for the LwM2M server, and registers with it."""
    bootstrap_key, other_device = p256(), p256()
    bootstrap_public = spki_der(bootstrap_key.public_key())
    device_public = spki_der(DEVICE_KEY.public_key())
    credentials = MemorySecurityStore()
    await credentials.put(SecurityInfo("rpk-full-1", rpk=device_public))
    await credentials.put(SecurityInfo("rpk-other-1", rpk=spki_der(other_device.public_key())))
    bs_config = BootstrapServerConfig(port=0, coaps_port=0, rpk=RpkCredentials(private_der(bootstrap_key)))
    server_config = ServerConfig(
        host="127.0.0.1", port=0, coaps_port=0, rpk=RpkCredentials(private_der(SERVER_KEY))
    )
    async with Server(server_config) as server, BootstrapServer(bs_config, security=credentials) as bs:
        assert server.coaps_uri is not None and bs.coaps_uri is not None
        config = rpk_account(server.coaps_uri, 7)
        await bs.set_config("rpk-full-1", config)
        await server.security.put(security_info("rpk-full-1", config))
        events, bs_events = server.events(), bs.events()
        own = RpkCredentials(private_der(DEVICE_KEY), (bootstrap_public,))
        async with Client("rpk-full-1", bootstrap=bs.coaps_uri, config=ClientConfig(rpk=own)):
            registration = (await next_event(events, ClientRegistered, timeout=15)).registration
            assert registration.endpoint == "rpk-full-1"
            finished = await next_event(bs_events, BootstrapFinished)
            assert finished.session.endpoint == "rpk-full-1"

        # Another device's key bootstraps only as that device; a key nobody holds, not at all.
        bootstrap = Message.build(Type.CON, Code.POST, uri_path="/bs", uri_query=["ep=rpk-full-1"])
        assert bs.coaps_port is not None
        for key, code in ((other_device, Code.FORBIDDEN), (p256(), Code.FORBIDDEN)):
            client_config = DtlsClientConfig(rpk=RpkCredentials(private_der(key), (bootstrap_public,)))
            async with open_dtls_endpoint(client=client_config) as endpoint:
                answer = await endpoint.request(bootstrap, ("127.0.0.1", bs.coaps_port), timeout=5)
                assert answer.code == code
