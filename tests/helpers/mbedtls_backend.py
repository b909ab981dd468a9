"""A DTLS backend on Mbed TLS 2.28, through python-mbedtls's in-memory buffers: a peer we did
not write, behind the session layer's ``Backend`` protocol (``transport/dtls/backend.py``), for
tests and the benchmarks' load clients (the package runs on its own engine).

python-mbedtls gives a ``TLSWrappedBuffer`` per connection: bytes from the
network go in with ``receive_from_network``, records to send come out of
``peek_outgoing``/``consume_outgoing``; nothing here touches a socket.

Things the binding decides that shape this module:

- The server's PSK callback gets only the identity, not the connection; the
  connection being driven is noted in ``_ServerFactory.current`` around each
  call into the library, which is how the PSK identity a peer used is learnt.
- Cookies (HelloVerifyRequest) are always on for servers, made and checked by
  the library with a key of its own. A ClientHello is first fed to a spare
  buffer with the sender's address as the cookie parameter; when the library
  answers with a HelloVerifyRequest that buffer is reset by the binding and
  kept for the next ClientHello, so a flood of ClientHellos creates no state.
- The handshake's retransmission timer runs on the library's own clock;
  calling ``handshake()`` after it ran out is what makes it resend a flight. The
  connection keeps a timer of its own for the layer (``get_timer``), set just after the
  library's deadline (the two clocks tick apart) and doubled like the library's (RFC 6347
  §4.2.4.1); asked too early, the library sends nothing and is asked again a little later.
- An established session can be saved as bytes (``mbedtls_ssl_context_save``)
  and restored without a handshake; a server can only save a session once the
  client's first application record has let it drop its handshake state.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping

from mbedtls import pk, tls, x509
from mbedtls.exceptions import TLSError

from lwm2m.errors import DtlsError, HandshakeError, SessionClosed
from lwm2m.transport.dtls.config import (
    MBEDTLS_MAX_PSK_LENGTH,
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    PskLookup,
    SessionLimits,
    X509Credentials,
)
from lwm2m.transport.dtls.records import datagrams

__all__ = ["MbedtlsBackend"]

_OVER = tls.HandshakeStep.HANDSHAKE_OVER
_NOT_STARTED = (tls.HandshakeStep.HELLO_REQUEST, tls.HandshakeStep.CLIENT_HELLO)
_SLACK = 0.005  # the library's clock and ours tick apart; wake it just after its deadline
_POLL = 0.02  # asked too early (its clock was behind): look again this much later
_MAX_STEPS = 64  # handshake steps per call: a few suffice; a bound in case of a library bug
_MAX_RECORD = 16384 + 2048  # MBEDTLS_SSL_IN_CONTENT_LEN, with room
_READ_BUFFER = bytearray(_MAX_RECORD)  # one per process: plaintext is copied out at once
_READ_VIEW = memoryview(_READ_BUFFER)
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_CN = re.compile(r"(?:^|,\s*)CN=([^,]*)")
# RSS per server handshake in progress. Measured with PSK handshakes stalled after the
# ServerHello flight: 45.6 KiB each when they only accumulate (the library's 16 KiB input and
# output record buffers, the handshake context, our objects), but 88 KiB per handshake slot
# while a flood keeps replacing the oldest (8,000 handshakes through 700 or 1,365 slots: the
# C heap fragments). The budget is for the flood, so the latter, rounded up.
HANDSHAKE_COST = 90 << 10


def _reason(exc: Exception) -> str:
    msg = getattr(exc, "msg", None)
    return str(msg) if msg else type(exc).__name__


def _certificates(data: bytes) -> list[x509.CRT]:
    """Every certificate of a PEM bundle, or the one DER certificate."""
    pems = _PEM_CERT.findall(data)
    if pems:
        return [x509.CRT.from_PEM(p.decode("ascii")) for p in pems]
    return [x509.CRT.from_DER(data)]


def _private_key(data: bytes) -> pk.CipherBase:
    try:
        return pk.ECC.from_buffer(data)
    except Exception:
        return pk.RSA.from_buffer(data)


def _trust_store(data: bytes) -> tls.TrustStore:
    store = tls.TrustStore()
    for crt in _certificates(data):
        store.add(crt)
    return store


def _common_name(subject: str) -> str:
    found = _CN.search(subject)
    return found.group(1).strip() if found else subject


def _configuration(
    ciphers: tuple[str, ...],
    limits: SessionLimits,
    certificate: X509Credentials | None,
    **kw: object,
) -> tls.DTLSConfiguration:
    chain = None
    trust = None
    if certificate is not None:
        try:
            chain = (tuple(_certificates(certificate.certificate)), _private_key(certificate.private_key))
            trust = _trust_store(certificate.trusted) if certificate.trusted else None
        except Exception as exc:
            raise ValueError(f"cannot load the certificate or key: {_reason(exc)}") from None
    return tls.DTLSConfiguration(
        ciphers=ciphers,
        certificate_chain=chain,
        trust_store=trust,
        validate_certificates=trust is not None,
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
        highest_supported_version=tls.DTLSVersion.DTLSv1_2,
        anti_replay=True,  # RFC 6347 §4.1.2.6
        handshake_timeout_min=limits.handshake_timeout_min,
        handshake_timeout_max=limits.handshake_timeout_max,
        **kw,  # type: ignore[arg-type]
    )


class _Connection:
    __slots__ = (
        "_buf",
        "_factory",
        "_fired",
        "_identity",
        "_rto",
        "_timer",
        "established",
        "psk_identity",
    )

    cid = b""  # Mbed TLS 2.28 has no Connection ID
    # What the binding does not tell: whether a handshake was abbreviated, the peer's record
    # size limit, whether a record advanced the replay window (only plaintext read counts).
    resumed = False
    max_application_data: int | None = None
    advanced = False

    def __init__(self, buf: tls.TLSWrappedBuffer, factory: _ServerFactory | _ClientFactory) -> None:
        self._buf = buf
        self._factory = factory
        self._identity: PeerIdentity | None = None
        self.established = False
        self.psk_identity: str | None = None  # set by the server's PSK callback
        self._timer: float | None = None
        self._rto = 0.0
        self._fired = False

    def feed(self, datagram: bytes, now: float) -> bool:
        with contextlib.suppress(BufferError):  # more than the input buffer holds: garbage, dropped
            self._buf.receive_from_network(datagram)
        return False

    def feed_read(self, datagram: bytes, now: float) -> bytes | None:
        self.feed(datagram, now)  # no shorter way through the binding: ``read`` takes it
        return None

    @property
    def records(self) -> _Connection:
        return self  # no shorter way for records either

    def open_application_data(self, datagram: bytes) -> bytes | None:
        return None  # every datagram takes ``feed_read``

    def protect_application_data(self, data: bytes) -> bytes:
        return self.write(data)

    def handshake(self, now: float) -> bool:
        if self.established:
            return True
        fired, self._fired = self._fired, False
        before = len(self._buf._output_buffer)
        try:
            done = self._step()
        finally:
            if len(self._buf._output_buffer) > before:  # a flight went out: time its retransmission
                limits = self._factory.limits
                # RFC 6347 §4.2.4.1: doubled on each timeout, from the minimum for a new flight.
                doubled = min(self._rto * 2, limits.handshake_timeout_max)
                self._rto = doubled if fired else limits.handshake_timeout_min
                self._timer = now + self._rto + _SLACK
            elif fired:
                self._timer = now + _POLL
        if done:
            self._timer = None
        return done

    def _step(self) -> bool:
        buf = self._buf
        factory = self._factory
        factory.current = self
        try:
            for _ in range(_MAX_STEPS):
                if buf._handshake_state is _OVER:
                    self.established = True
                    self._identity = factory.peer_identity(self)
                    return True
                try:
                    buf.do_handshake()
                except tls.WantWriteError:
                    continue  # a record was written to the output buffer; go on
                except tls.WantReadError:
                    return False
        except tls.HelloVerifyRequest:
            raise HandshakeError("unexpected HelloVerifyRequest") from None
        except (TLSError, ValueError) as exc:
            raise HandshakeError(_reason(exc)) from None
        finally:
            factory.current = None
        return False

    def get_timer(self) -> float | None:
        return self._timer

    def handle_timer(self, now: float) -> None:
        # The library resends on its own clock when ``handshake`` is called next.
        self._timer = None
        self._fired = True

    def outgoing(self) -> list[bytes]:
        return datagrams(self._drain(), self._factory.limits.mtu)

    def _drain(self) -> bytes:
        buf = self._buf
        n = len(buf._output_buffer)
        if not n:
            return b""
        out = buf.peek_outgoing(n)
        buf.consume_outgoing(n)
        return out

    def read(self) -> bytes | None:
        try:
            # python-mbedtls's stubs ask for bytes; it writes into any writable buffer.
            n = self._buf.readinto(_READ_VIEW, _MAX_RECORD)  # type: ignore[arg-type]
        except (tls.WantReadError, tls.WantWriteError):
            return None
        except tls.RaggedEOF:
            raise SessionClosed("closed by the peer") from None
        except TLSError as exc:
            raise SessionClosed(_reason(exc)) from None
        return bytes(_READ_VIEW[:n])

    def write(self, data: bytes) -> bytes:
        buf = self._buf
        try:
            n = buf.write(data)
        except (TLSError, tls.WantReadError, tls.WantWriteError) as exc:
            raise SessionClosed(_reason(exc)) from None
        out = buf.peek_outgoing(n)
        buf.consume_outgoing(n)
        return out

    def identity(self) -> PeerIdentity | None:
        return self._identity

    def cipher_suite(self) -> str | None:
        return self._buf.cipher()  # type: ignore[return-value]  # a str at run time, bytes in its stubs

    def close(self) -> bytes:
        try:
            self._buf.shutdown()
        except Exception:
            return b""
        return self._drain()

    def save(self) -> bytes | None:
        try:
            # Its __getstate__ is typed NoReturn (pickling refused); the DTLS buffer's gives a dict.
            return bytes(self._buf.__getstate__()["connection"])  # type: ignore[index]
        except Exception:
            return None

    def peer_certificate_subject(self) -> str | None:
        try:
            crt = self._buf.getpeercert(binary_form=False)
        except Exception:
            return None
        return None if crt is None else str(crt.subject)  # type: ignore[attr-defined]  # a Certificate


def _restore(context: tls._BaseContext, state: bytes, server_name: str | None) -> tls.TLSWrappedBuffer:
    buf = tls.TLSWrappedBuffer.__new__(tls.TLSWrappedBuffer)
    try:
        buf.__setstate__(  # type: ignore[attr-defined]  # defined at run time, not in its stubs
            {"connection": state, "context": context, "server_hostname": server_name}
        )
    except Exception as exc:
        raise DtlsError(f"cannot restore the session: {_reason(exc)}") from None
    return buf


class _PskStore(Mapping[str, bytes]):
    """The Mapping the binding asks for a PSK by identity: a call to our lookup, per handshake."""

    def __init__(self, lookup: PskLookup, factory: _ServerFactory) -> None:
        self._lookup = lookup
        self._factory = factory

    def __getitem__(self, identity: str) -> bytes:
        key = self._lookup(identity)
        if not key:
            raise KeyError(identity)  # the library answers with an unknown_psk_identity alert
        current = self._factory.current
        if current is not None:
            current.psk_identity = identity
        return bytes(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _ServerFactory:
    handshake_cost = HANDSHAKE_COST
    cid_length = 0

    def __init__(self, config: DtlsServerConfig) -> None:
        self.limits = config.limits
        kw: dict[str, object] = {}
        if config.psk_lookup is not None:
            kw["pre_shared_key_store"] = _PskStore(config.psk_lookup, self)
        conf = _configuration(
            tuple(str(c) for c in config.cipher_suites), config.limits, config.certificate, **kw
        )
        self._context = tls.ServerContext(conf)
        self._mtu = config.limits.mtu
        self._spare: tls.TLSWrappedBuffer | None = None
        self.current: _Connection | None = None

    def accept(self, datagram: bytes, client_id: bytes, now: float) -> tuple[_Connection | None, bytes]:
        buf = self._spare
        self._spare = None
        if buf is None:
            buf = self._context.wrap_buffers()
            buf.setmtu(self._mtu)
        buf.setcookieparam(client_id)
        try:
            buf.receive_from_network(datagram)
        except BufferError:
            return None, b""
        conn = _Connection(buf, self)
        self.current = conn
        try:
            for _ in range(_MAX_STEPS):
                try:
                    buf.do_handshake()
                except tls.WantWriteError:
                    continue
                except tls.WantReadError:
                    break
        except tls.HelloVerifyRequest:
            reply = conn._drain()
            if not len(buf._input_buffer):
                self._spare = buf  # reset by the binding: reusable for the next ClientHello
            return None, reply
        except (TLSError, ValueError):
            return None, b""
        finally:
            self.current = None
        if buf._handshake_state in _NOT_STARTED:
            return None, b""  # e.g. a fragment of a ClientHello: nothing to answer
        conn._rto = self.limits.handshake_timeout_min  # the flight now waiting is timed from now
        conn._timer = now + conn._rto + _SLACK
        return conn, b""

    def restore(self, state: bytes) -> _Connection:
        conn = _Connection(_restore(self._context, state, None), self)
        conn.established = True
        return conn

    def ticket_state(self) -> bytes | None:
        return None  # the binding issues no session tickets

    def load_ticket_state(self, data: bytes) -> bool:
        return False

    def peer_identity(self, conn: _Connection) -> PeerIdentity | None:
        if conn.psk_identity is not None:
            return PeerIdentity("psk", conn.psk_identity)
        subject = conn.peer_certificate_subject()
        if subject is not None:
            return PeerIdentity("x509", _common_name(subject), subject)
        return None


class _ClientFactory:
    handshake_cost = HANDSHAKE_COST

    def __init__(self, config: DtlsClientConfig) -> None:
        self.limits = config.limits
        kw: dict[str, object] = {}
        if config.psk is not None and len(config.psk.key) > MBEDTLS_MAX_PSK_LENGTH:
            raise ValueError(f"Mbed TLS 2.28 takes PSKs of at most {MBEDTLS_MAX_PSK_LENGTH} bytes")
        if config.psk is not None:
            kw["pre_shared_key"] = (config.psk.identity, config.psk.key)
        conf = _configuration(
            tuple(str(c) for c in config.cipher_suites), config.limits, config.certificate, **kw
        )
        self._context = tls.ClientContext(conf)
        self._psk_identity = None if config.psk is None else config.psk.identity
        self._server_name = config.server_name
        self._mtu = config.limits.mtu
        self.current: _Connection | None = None

    def connect(self, now: float, peer: bytes = b"") -> _Connection:
        buf = self._context.wrap_buffers(self._server_name)
        buf.setmtu(self._mtu)
        return _Connection(buf, self)

    def restore(self, state: bytes) -> _Connection:
        conn = _Connection(_restore(self._context, state, self._server_name), self)
        conn.established = True
        return conn

    def peer_identity(self, conn: _Connection) -> PeerIdentity | None:
        subject = conn.peer_certificate_subject()
        if subject is not None:
            return PeerIdentity("x509", _common_name(subject), subject)
        if self._psk_identity is not None:
            return PeerIdentity("psk", self._psk_identity)
        return None


class MbedtlsBackend:
    name = "mbedtls"

    def server(self, config: DtlsServerConfig) -> _ServerFactory:
        return _ServerFactory(config)

    def client(self, config: DtlsClientConfig) -> _ClientFactory:
        try:
            return _ClientFactory(config)
        except TLSError as exc:
            raise ValueError(f"DTLS client configuration refused: {_reason(exc)}") from None
