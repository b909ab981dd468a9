"""The one exception tree of the package (DESIGN.md, "Errors").

Every exception the package raises on purpose is an :class:`LwM2MError`, in one of the
categories below, so a caller catches what it can handle::

    LwM2MError
    ├── CodecError        a payload that is not valid in its content format
    ├── ModelError        a path, value or object definition that is not valid
    ├── ProtocolError     a CoAP message or LwM2M request/response that breaks the protocol
    ├── ConfigError       a configuration (role config, bootstrap configuration) refused
    ├── DeviceError       an operation answered with a CoAP error code (``code``)
    ├── NotRegistered     no registration for that endpoint
    ├── RequestTimeout    no answer in time (a sleeping device that never woke, a lost peer)
    ├── TransportError    the exchange itself failed (reset, aborted, endpoint closed, HTTP)
    ├── SecurityError     DTLS/TLS, credentials, identities
    ├── StoreError        a store that cannot serve the request
    └── ApiError          a REST API request that cannot be served (``status``)

The categories that describe bad input also derive from :class:`ValueError`, timeouts from
:class:`TimeoutError`, transport failures from :class:`ConnectionError` and the missing
registration from :class:`LookupError`, so code written against the builtins keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class LwM2MError(Exception):
    """The root: anything the package raises on purpose."""


def _code_str(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


# --- the categories ---------------------------------------------------------------------


class CodecError(LwM2MError, ValueError):
    """A payload that cannot be decoded, or values that cannot be encoded, in a content format."""


class ModelError(LwM2MError, ValueError):
    """A path, a value or an object definition that is not valid."""


class ProtocolError(LwM2MError, ValueError):
    """A CoAP message or an LwM2M request or response that breaks the protocol."""


class ConfigError(LwM2MError, ValueError):
    """A configuration refused on construction; the message names the field and why."""


class DeviceError(LwM2MError):
    """An operation answered (or to be answered) with a CoAP error code; ``code`` is that code.

    A client's object handler raises it (or one of the subclasses below) to answer the server
    with that code and the message as diagnostic payload (LwM2M-TS-Core 1.2 §6.3).
    """

    code: int = 0xA0  # 5.00 Internal Server Error

    def __init__(self, message: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.code = type(self).code if code is None else code


class NotRegistered(LwM2MError, LookupError):
    """No client is registered under that endpoint name."""


class RequestTimeout(LwM2MError, TimeoutError):
    """The peer never answered: the endpoint gave up retransmitting, or the caller's timeout ran out."""


class TransportError(LwM2MError, ConnectionError):
    """The exchange itself failed: a reset, an aborted request, a closed endpoint, HTTP."""


class SecurityError(LwM2MError):
    """DTLS/TLS handshakes and sessions, credentials and the identities bound to endpoints."""


class StoreError(LwM2MError, RuntimeError):
    """A store that cannot do what was asked (closed, corrupt, unreachable)."""


class ApiError(LwM2MError):
    """A REST API request that cannot be served; ``status`` is its HTTP status."""

    status: int = 400


# --- codec (content formats, link format) ----------------------------------------------


class LinkFormatError(CodecError):
    """Text that is not RFC 6690 link format, or an attribute value of the wrong kind."""


# --- model --------------------------------------------------------------------------------


class InvalidPath(ModelError):
    """A path string or ID that is not a valid LwM2M path."""


class DDFError(ModelError):
    """A DDF file that cannot be read; the message names the file and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem

    def __reduce__(self) -> tuple[type[DDFError], tuple[str, str]]:
        # Keep it picklable (e.g. across a process pool) despite the two-argument constructor.
        return type(self), (self.source, self.problem)


class JsonFormError(ModelError):
    """JSON that is not a valid list of records."""


# --- protocol -----------------------------------------------------------------------------


class MessageError(ProtocolError):
    """A datagram that is not a well-formed CoAP message (a message format error).

    ``mid`` and ``type`` are set when the 4-byte header could be read, so that
    an endpoint can answer a malformed CON with RST (RFC 7252 §4.2) and drop a
    malformed NON (§4.3). ``version_ok`` is False for an unknown version, which
    must be silently ignored (§3).
    """

    def __init__(
        self, reason: str, *, mid: int | None = None, type: int | None = None, version_ok: bool = True
    ) -> None:
        super().__init__(reason)
        self.mid = mid
        self.type = type
        self.version_ok = version_ok


class RegistrationError(ProtocolError):
    """A Register, Update or De-register request with a bad parameter or payload.

    ``str(error)`` is the diagnostic for the response payload; ``code`` the
    response code (4.00 Bad Request unless said otherwise).
    """

    def __init__(self, diagnostic: str, code: int = 0x80) -> None:
        super().__init__(diagnostic)
        self.code = code


class BootstrapError(ProtocolError):
    """A bootstrap request with a bad method, path, parameter or payload.

    ``str(error)`` is the diagnostic for the response payload; ``code`` the response code.
    """

    def __init__(self, diagnostic: str, code: int = 0x80) -> None:
        super().__init__(diagnostic)
        self.code = code


class InvalidAttributes(ProtocolError):
    """An attribute name or value that LwM2M does not allow."""


class OperationError(ProtocolError):
    """An operation that cannot be put into a CoAP request as asked."""


class ResponseError(ProtocolError):
    """A client's answer whose payload cannot be understood (wrong format, bad content)."""


class LayoutConflict(ConfigError):
    """A bootstrap configuration that would write or delete the device's bootstrap server account."""


# --- answers with a CoAP error code ------------------------------------------------------


class BadRequest(DeviceError):
    code = 0x80  # 4.00


class Unauthorized(DeviceError):
    code = 0x81  # 4.01


class NotFound(DeviceError):
    code = 0x84  # 4.04


class MethodNotAllowed(DeviceError):
    code = 0x85  # 4.05


class NotAcceptable(DeviceError):
    code = 0x86  # 4.06


class UnsupportedContentFormat(DeviceError):
    code = 0x8F  # 4.15


class ObserveRefused(DeviceError):
    """The client answered an Observe without starting an observation (an error, or no Observe
    option); ``response`` is its answer."""

    def __init__(self, response: object) -> None:
        code: int = getattr(response, "code", 0)
        diagnostic: str = getattr(response, "diagnostic", "")
        super().__init__(f"observe refused: {_code_str(code)} {diagnostic}", code)
        self.response: Any = response


class RegistrationFailed(LwM2MError):
    """The server refused a Register or an Update; ``code`` is its answer and ``diagnostic``
    the reason its payload gave (RFC 7252 §5.5.2), if any. ``retry_after``: the seconds the
    server asked the client to wait first (a 4.29's Max-Age, RFC 8516 §3), else None."""

    def __init__(
        self, message: str, code: int | None = None, diagnostic: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.diagnostic = diagnostic
        self.retry_after = retry_after


class ClientBootstrapError(LwM2MError):
    """A client bootstrap that did not end with an accepted Bootstrap-Finish; the message says why."""


class BootstrapSessionError(ProtocolError):
    """A step of a bootstrap server's session went wrong; the message is the session's failure reason."""


class FirmwareError(LwM2MError):
    """Raised by a firmware download or hook: the process ends with Update Result ``result``."""

    def __init__(self, result: object, message: str = "") -> None:
        name: str = getattr(result, "name", str(result))
        super().__init__(message or name.lower().replace("_", " "))
        self.result: Any = result


# --- requests to devices ----------------------------------------------------------------


class QueueTimeout(RequestTimeout):
    """A request for a sleeping client expired before the client woke up."""


class RequestReset(TransportError):
    """The peer answered the request with RST (RFC 7252 §4.2)."""


class RequestAborted(TransportError):
    """The exchange broke off (e.g. a block-wise transfer failed); the reason is the message."""


class EndpointClosed(TransportError):
    """The endpoint was closed while the request was outstanding."""


# --- security -----------------------------------------------------------------------------


class DtlsError(SecurityError):
    """A DTLS connection failed or cannot be made."""


class HandshakeError(DtlsError):
    """The handshake failed: a bad key, an untrusted certificate, a timeout, a protocol error."""


class SessionClosed(DtlsError):
    """An established session ended: the peer closed it or it broke."""


class DtlsUnavailable(SecurityError, ImportError):
    """No TLS library for DTLS is installed (the ``dtls`` extra)."""


class DtlsHandshakeError(RequestAborted, SecurityError):
    """The DTLS handshake with the peer of a request failed (its reason is the message)."""


class NoDtlsSession(RequestAborted, SecurityError):
    """No DTLS session with the peer, and no client credentials to make one."""


class IdentityInUse(SecurityError, ValueError):
    """The PSK identity already belongs to another endpoint."""


# --- outgoing HTTP --------------------------------------------------------------------------


class HttpError(TransportError):
    """A request that did not give an answer (or, for ``HttpClient.get``, not a body)."""


class HttpNameError(HttpError):
    """The host name does not resolve."""


class HttpStatusError(HttpError):
    """The server answered with a status other than 200."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url} answered HTTP {status}")
        self.status = status


class HttpRedirectError(HttpError):
    """A redirect to something that is not HTTP(S) (``unsupported``), or too many of them."""

    def __init__(self, message: str, *, unsupported: bool) -> None:
        super().__init__(message)
        self.unsupported = unsupported


class HttpBodyTooLarge(HttpError):
    """The body is longer than the caller allows."""


class HttpProtocolError(HttpError):
    """The answer is not well-formed HTTP/1.1."""


# --- the REST API ---------------------------------------------------------------------------


class InvalidRequest(ApiError):
    """A query parameter or body the API cannot use; the message names the bad value."""

    status = 400


class ResourceNotFound(ApiError, LookupError):
    """Something the API was asked about that it does not hold (an observation, a model)."""

    status = 404


class UnsupportedMethod(ApiError):
    """A method the resource does not take; ``allow`` lists those it takes (RFC 9110 §15.5.6:
    a 405 carries ``Allow``)."""

    status = 405

    def __init__(self, method: str, allow: Iterable[str], what: str) -> None:
        self.allow = tuple(allow)
        super().__init__(f"{method} is not allowed on {what}; use {', '.join(self.allow)}")


class TableFull(ApiError):
    """Every entry of the request table is a request still waiting for its client."""

    status = 503


class RemoteApiError(TransportError):
    """A running server's REST API refused a call, or could not be reached; the message says
    which and why (the CLI's and the simulator's calls to a server)."""


# --- DTLS engine (lwm2m.tls) ---
# records, the anti-replay window and record protection (tls/record.py, tls/replay.py,
# tls/protection.py)


class RecordError(ProtocolError):
    """Bytes that are not a well-formed DTLS/TLS record: truncated, a bad length, an unknown
    content type, a CID record that the receiver did not negotiate (RFC 6347 §4.1, RFC 9146 §4)."""


class RecordOverflow(RecordError):
    """A record longer than RFC 6347 §4.1 / RFC 5246 §6.2 allow (the ``record_overflow`` alert)."""


class BadRecordMac(DtlsError):
    """A protected record that does not authenticate (the ``bad_record_mac`` alert, RFC 5246 §7.2.2)."""


# prf, messages, reassembly: the key schedule, the handshake messages and their fragments.


class HandshakeFormatError(ProtocolError):
    """A DTLS handshake message, extension or fragment is malformed; the message names the field."""


class KeyScheduleError(DtlsError):
    """A key schedule input is unusable: a PSK or secret of a length the engine does not take."""


# connection: the PSK handshake state machine (tls/connection.py).


class HandshakeAborted(HandshakeError):
    """The handshake cannot go on; ``alert`` is the fatal alert the connection sends the peer
    (RFC 5246 §7.2.2), and the connection reports the message as its reason."""

    def __init__(self, alert: int, reason: str) -> None:
        super().__init__(reason)
        self.alert = alert
        self.reason = reason

    def __reduce__(self) -> tuple[type[HandshakeAborted], tuple[int, str]]:
        return (type(self), (self.alert, self.reason))


# resumption: session state as bytes, session tickets (tls/state.py, tls/tickets.py).


class SessionStateError(ProtocolError):
    """Exported session or connection state that cannot be read back: truncated, of another
    format version, or holding a value out of range; the message names the field."""


# --- ECDHE-ECDSA with raw public keys and X.509 (tls/keyexchange.py, tls/certificates.py) ---


class BadSignature(HandshakeError):
    """A ServerKeyExchange or CertificateVerify signature does not verify, or uses an algorithm
    that was not offered."""


class InvalidPeerKey(HandshakeError):
    """The peer's ECDH point or certificate key is not a P-256 key this engine takes."""


class CertificateRejected(HandshakeError):
    """The peer's certificate, chain or raw public key is malformed, unusable or refused by
    the policy (the bad_certificate alert)."""


class UnknownCertificateAuthority(CertificateRejected):
    """No trust anchor vouches for the peer's chain, or its raw public key is unknown (the
    unknown_ca alert)."""


class CertificateTypeMismatch(HandshakeError):
    """No certificate type in common with the peer (RFC 7250 §4.2: unsupported_certificate)."""


# --- the transport's DTLS record limits (tls/connection.py, transport/dtls/layer.py) ---


class RecordTooLarge(DtlsError):
    """Application data that one record to this peer cannot carry (its record_size_limit or
    max_fragment_length, RFC 8449 §4, RFC 6066 §4): that message is not sent, the session stays."""


# --- cluster (lwm2m.cluster): node bytes, endpoint ownership, the request bus, fleet events ---


class NoNodeByte(StoreError):
    """Every one-byte node id (1..255, the first byte of a DTLS Connection ID) is held by a
    live node: no further node can join until one leaves or its heartbeat lapses."""


class NodeNotJoined(StoreError):
    """The node has no one-byte id yet: ``join()`` has not run, or ``leave()`` has."""


class ClusterPayloadError(ProtocolError):
    """A bus payload or fleet event that is neither bytes nor a JSON-encodable dict, or a bus
    message or stored event that cannot be decoded."""


class BusClosed(TransportError):
    """The request bus is not started, or was closed while a request waited for its answer."""


class BusTimeout(RequestTimeout):
    """No answer from the node a request was sent to within its timeout (the node is gone or
    too busy); the web layer answers 504 as for any :class:`RequestTimeout`."""


class RemoteHandlerError(TransportError):
    """The node that took a bus request failed while handling it; ``node`` names it, ``kind``
    the class name of its exception, and the message is that exception's text."""

    def __init__(self, node: str, kind: str, message: str) -> None:
        super().__init__(f"node {node!r}: {kind}: {message}")
        self.node = node
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[type[RemoteHandlerError], tuple[str, str, str]]:
        return type(self), (self.node, self.kind, self.message)


class InvalidEventId(ApiError, ValueError):
    """A fleet event id (``Last-Event-ID``) that is not a Redis Stream id ``MS-SEQ``."""

    status = 400


# --- DTLS Connection ID forwarding between cluster nodes (transport/dtls/link.py, forwarding.py) ---


class LinkMessageError(ProtocolError):
    """A datagram on the node-to-node link that is not a link message: too short, of an
    unknown version, kind or address family, or whose tag does not authenticate it with the
    cluster key. It is dropped and counted, never answered."""


# --- DTLS session takeover between cluster nodes (transport/dtls/takeover.py, server/role.py) ---


class TakeoverRefused(DtlsError):
    """A session in the shared store cannot be taken over once more: the write sequence range
    the next taker would get does not fit below 2^48 (RFC 6347 §4.1), or its saved state is not
    a server session's. Its device makes a new handshake."""


# --- queued requests of sleeping devices in the store ------------------------------------------


class RequestQueueFull(TableFull):
    """The store keeps as many requests for sleeping clients as it may: for the endpoint, or in all
    (``lwm2m.storage.requests.RequestQueueLimits``)."""


# --- firmware packages and their hosting (fleet/packages.py, storage/firmware.py, web/views/firmware.py) ---


class InvalidPackage(ApiError, ValueError):
    """A firmware package the server does not take: an empty body, or a name or version that is
    not one (the message says which rule it breaks)."""

    status = 400


class PackageTooLarge(ApiError):
    """A firmware package over the size the server keeps per package (``PackageConfig.max_size``)."""

    status = 413


class TooManyPackages(ApiError):
    """The store holds as many firmware packages as it may (``PackageConfig.max_packages``):
    delete one first."""

    status = 507


class PackageNotFound(ResourceNotFound):
    """No firmware package with that id (never stored, or deleted)."""


# --- device labels, the per-device message trace (fleet/labels.py, server/trace.py, web/views/) ---


class InvalidLabels(ApiError, ValueError):
    """A label set or a label selector the server does not take: not an object of strings, too
    many labels, or a key or value that is not one (the message says which rule it breaks)."""


# --- webhooks (export/webhooks.py, storage/webhooks.py, web/views/webhooks.py) ---


class InvalidWebhook(ApiError, ValueError):
    """A webhook the server does not take: a URL that is not http:// or https:// with a host, no
    event type or an unknown one, or a secret that is not a short string (the message says which)."""


# --- firmware update campaigns (fleet/campaigns.py, storage/campaigns.py) ---


class InvalidCampaign(ApiError, ValueError):
    """A campaign the server does not run: a target, delivery, wave, retry, window or halt
    setting out of its range (the message says which)."""

    status = 400


class TooManyTraces(ApiError):
    """As many endpoints are traced as the server traces at once (``TraceConfig.max_endpoints``):
    switch one off first."""

    status = 409


# --- MQTT export and commands (export/mqtt.py) --------------------------------------------------


class MqttCommandError(ApiError):
    """A command taken on an MQTT command topic that cannot be carried out as given: not a JSON
    object, no ``id`` or ``op``, an unknown ``op``, a value of the wrong kind (the message names
    it). It is answered on the reply topic, never raised further."""

    status = 400


class TooManyWebhooks(ApiError):
    """The store holds as many webhooks as it may (``OutboxLimits.hooks``): delete one first."""

    status = 507


class WebhookNotFound(ResourceNotFound):
    """No webhook with that id (never registered, or deleted)."""


class CampaignNotFound(ResourceNotFound):
    """No firmware update campaign with that id."""


class CampaignStateError(ApiError):
    """A pause, resume or cancel the campaign's status does not allow (a finished campaign
    cannot be resumed)."""

    status = 409


# --- CoAP over TCP and TLS, RFC 8323 (coap/framing.py, coap/connection.py, transport/tcp.py) ---


class FramingError(ProtocolError):
    """A byte stream that is not CoAP over TCP (RFC 8323 §3.2): a bad length, token length or
    option. The stream cannot be resynchronised: the connection is aborted (7.05)."""


class FrameTooLarge(FramingError):
    """A message longer than the Max-Message-Size we announced (RFC 8323 §5.3.1); ``size`` is the
    length its header announced."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class ConnectionAborted(TransportError):
    """The CoAP over TCP/TLS connection ended (an Abort, a Release, the peer closed it, an idle
    timeout) while the request was outstanding; the reason is the message."""


# --- export worker (export/handoff.py, export/worker.py, export/channel.py) ---


class ExportChannelError(TransportError):
    """What came over the stream between the server and its export worker is not a frame of
    the channel (too long, undecodable, an unknown kind of event): the stream is given up and
    the worker started again."""


# --- OSCORE, RFC 8613 (coap/oscore/, transport/udp.py, server/security.py) ---


class OscoreError(SecurityError):
    """A message OSCORE cannot protect or verify. ``code`` is the CoAP error a server answers an
    unverifiable request with (RFC 8613 §8.2), unprotected, with the message as diagnostic."""

    code: int = 0x80  # 4.00 Bad Request


class OscoreOptionError(OscoreError, ProtocolError):
    """An OSCORE option value or a COSE object that does not decode (RFC 8613 §6.1, §8.2 step 2):
    4.02 Bad Option."""

    code = 0x82


class OscoreContextNotFound(OscoreError):
    """No security context for the request's kid and kid context (RFC 8613 §8.2 step 2): 4.01."""

    code = 0x81


class OscoreReplay(OscoreError):
    """A Partial IV already seen, or older than the replay window (RFC 8613 §7.4): 4.01."""

    code = 0x81


class OscoreDecryptFailed(OscoreError):
    """The AEAD tag does not verify (RFC 8613 §8.2 step 6, §8.4 step 5): 4.00."""

    code = 0x80


class OscoreSequenceUnavailable(OscoreError):
    """No sender sequence number can be used: the context is exhausted (2^40 - 1, RFC 8613
    §7.2.1), or the next range is not yet stored (Appendix B.1.1); 5.03 to the application."""

    code = 0xA3


class OscoreEchoRequired(OscoreError):
    """A request that verified, but whose freshness the server cannot tell: its replay window
    was lost in a restart (RFC 8613 Appendix B.1.2). ``challenge`` is the protected 4.01
    response with an Echo option (RFC 9175 §2.4) to send back; the client repeats its request
    with that Echo value."""

    code = 0x81

    def __init__(self, message: str, challenge: Any) -> None:
        super().__init__(message)
        self.challenge = challenge


class OscoreRequestFailed(RequestAborted, SecurityError):
    """Our OSCORE-protected request got no answer that verifies: the peer answered unprotected
    (RFC 8613 §8.2: it could not verify the request; the message names its code and diagnostic),
    or the answer failed verification (§8.4)."""


# --- campaigns across cluster nodes (fleet/campaigns.py, storage/campaigns.py, redis_campaigns.py) ---


class CampaignFenced(CampaignStateError):
    """A write of a campaign's state by a runner whose lease is no longer the newest: another
    node took the campaign over since (its lease lapsed), and the write is refused so that the
    two runners' writes never interleave."""


# --- DTLS record fast path (tls/connection.py open_application_data, transport/dtls/layer.py) --------


class RecordDropped(DtlsError):
    """A record of an established DTLS session that was dropped without an alert: a replay, or
    one too old for the replay window (RFC 6347 §4.1.2.6). The receiver takes it as it takes a
    record that does not authenticate (:class:`BadRecordMac`): it did not come from the peer."""


# --- LwM2M Gateway, object 25 (protocol/gateway.py) ---


class GatewayError(ProtocolError):
    """A gateway's object 25 content that cannot stand for its end devices: a missing Device ID,
    Prefix or IoT Device Objects resource, a bad or repeated prefix, a bad object list, too many
    end devices (LwM2M-TS-Gateway 1.1, object 25)."""


# --- campaign runner failover (web/campaign_devices.py) ---


class OwnerGone(BusTimeout):
    """The node a device request waited for stopped beating before it answered (it was killed):
    no answer will come. The device is reached again through its new route; whether the dead
    node had passed the request on to the device is unknown, as after any timeout."""
