"""The OSCORE layer of one CoAP endpoint (RFC 8613 §8), sans-IO: which context protects what.

The transport runs the messages of its endpoint's application side through it:

- a request carrying an OSCORE option is looked up by its kid and kid context among the
  recipient contexts (``add``), verified and handed to the application as an
  ``OscoreRequestReceived`` (the inner request, its context and binding); a request that does
  not verify gets the unprotected error of §8.2 (4.02, 4.01 or 4.00, with a diagnostic), one
  of unknown freshness the protected 4.01 Echo challenge (Appendix B.1.2);
- the answer to such a request is protected with the same context (``protect_response``); an
  accepted Observe registration keeps its binding, so that every notification on that relation
  is protected with a Partial IV of its own (§4.1.3.5.2), until the relation ends;
- a request whose context the layer lacks, or that does not verify with the one it holds (or
  seems a replay to it), is
  looked up by its ``directory`` (a server's security store) when one is set: the layer answers
  ``OscoreLookup`` and the transport tries the request again once the look-up is done (the
  context may have been added or replaced meanwhile); each verified request is reported to the
  directory, which checks now and then that the entry behind its context still stands;
- our requests to a peer bound to a context (``add(context, peer=addr)``) are protected
  (``protect_request``), their responses and notifications verified (``unprotect_response``),
  notifications in the order of their Partial IVs (§7.4.1).

State is bounded: relations and requests in flight at ``max_entries`` each, the oldest dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.logbudget import LogBudget
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.oscore.context import ECHO_OPTION, OSCORE_OPTION, OscoreContext, RequestBinding
from lwm2m.coap.oscore.cose import OscoreOption
from lwm2m.errors import (
    OscoreContextNotFound,
    OscoreDecryptFailed,
    OscoreEchoRequired,
    OscoreError,
    OscoreReplay,
)

__all__ = ["OscoreDirectory", "OscoreLayer", "OscoreLookup", "OscoreRequestReceived", "PendingRequest"]

log = logging.getLogger(__name__)

MAX_ENTRIES = 65_536
_MAX_AGE_ZERO = (OptionNumber.MAX_AGE, b"")


@dataclass(frozen=True, slots=True)
class OscoreRequestReceived(RequestReceived):
    """A request that arrived protected: ``message`` is the verified inner request, ``context``
    the security context it verified with (its recipient ID and ID context name the peer, as a
    DTLS identity does), ``binding`` what its response is bound to."""

    context: OscoreContext | None = None
    binding: RequestBinding | None = None
    protected: RequestReceived | None = None  # the request as it came: the endpoint answers that


@dataclass(slots=True)
class PendingRequest:
    """A request we protected: its context and binding, the Partial IV of the latest
    notification accepted (§7.4.1), and the inner request (repeated for an Echo challenge)."""

    context: OscoreContext
    binding: RequestBinding
    request: Message
    latest: int = -1


class OscoreDirectory(Protocol):
    """Where the layer finds contexts it does not hold (a server's security store)."""

    def lookup(self, kid: bytes, kid_context: bytes | None, now: float) -> Awaitable[object] | None:
        """A look-up of the context of ``kid`` (and ``kid_context``), to wait for before the
        request is tried again; None when none is due (known not to be there lately, or too
        many under way)."""
        ...

    def verified(self, context: OscoreContext, now: float) -> None:
        """A request verified with ``context``."""
        ...


@dataclass(frozen=True, slots=True)
class OscoreLookup:
    """The answer to a request whose context is being looked up: try it again once ``done``
    is (with ``lookup=False``)."""

    done: Awaitable[object]


def error_response(exc: OscoreError) -> Message:
    """The unprotected answer to a request that does not verify (RFC 8613 §8.2): its code, the
    reason as diagnostic payload, Max-Age 0 so that no proxy caches it."""
    return Message(Type.ACK, exc.code, options=(_MAX_AGE_ZERO,), payload=str(exc).encode())


class OscoreLayer:
    """The OSCORE contexts of an endpoint and the state tying messages to them."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self._recipients: dict[tuple[bytes | None, bytes], OscoreContext] = {}
        self._peers: dict[Any, OscoreContext] = {}
        self._relations: dict[tuple[Any, bytes], tuple[OscoreContext, RequestBinding]] = {}
        self.pending: dict[bytes, PendingRequest] = {}  # by token of our request
        self._max = max_entries
        self._log = LogBudget(log)
        self.directory: OscoreDirectory | None = None

    # --- contexts --------------------------------------------------------------------------

    def add(self, context: OscoreContext, *, peer: Any = None) -> None:
        """Accept requests protected with ``context``; with ``peer``, protect our requests to that
        address with it too."""
        self._recipients[(context.id_context, context.recipient_id)] = context
        if peer is not None:
            self._peers[peer] = context

    def remove(self, context: OscoreContext) -> None:
        key = (context.id_context, context.recipient_id)
        if self._recipients.get(key) is context:
            del self._recipients[key]
        for addr in [a for a, c in self._peers.items() if c is context]:
            del self._peers[addr]
        for rel in [r for r, (c, _) in self._relations.items() if c is context]:
            del self._relations[rel]

    def bind_peer(self, addr: Any, context: OscoreContext) -> None:
        """Protect our requests to ``addr`` with ``context`` (a server reaches its registered
        client with the context the client registered with)."""
        self._peers[addr] = context
        if len(self._peers) > self._max:
            del self._peers[next(iter(self._peers))]

    def context_for(self, addr: Any) -> OscoreContext | None:
        return self._peers.get(addr)

    def find(self, kid: bytes, kid_context: bytes | None) -> OscoreContext | None:
        ctx = self._recipients.get((kid_context, kid))
        if ctx is None and kid_context is None:
            # A request may leave out the ID Context the context has (RFC 8613 §6.1): unique kid.
            found = [c for (_, rid), c in self._recipients.items() if rid == kid]
            ctx = found[0] if len(found) == 1 else None
        return ctx

    @property
    def contexts(self) -> list[OscoreContext]:
        return list(self._recipients.values())

    # --- the server's side -------------------------------------------------------------------

    def unprotect_request(
        self, event: RequestReceived, now: float, *, lookup: bool = True
    ) -> OscoreRequestReceived | Message | OscoreLookup:
        """The verified request of ``event``, or the answer to send in its place, or (with a
        ``directory`` and ``lookup``) the look-up to wait for before trying it again."""
        message = event.message
        option: OscoreOption | None = None
        try:
            value = message.option(OSCORE_OPTION)
            option = OscoreOption.decode(value or b"")
            if option.kid is None:
                raise OscoreContextNotFound("Security context not found")
            context = self.find(option.kid, option.kid_context)
            if context is None:
                raise OscoreContextNotFound("Security context not found")
            inner, binding = context.unprotect_request(message, option)
        except OscoreEchoRequired as exc:
            answer: Message = exc.challenge
            return answer
        except OscoreError as exc:
            directory = self.directory
            if (
                lookup
                and directory is not None
                and option is not None
                and option.kid is not None
                and isinstance(exc, (OscoreContextNotFound, OscoreDecryptFailed, OscoreReplay))
            ):
                # Another node (or a tool on the store) may have added or changed the entry (a
                # device with new parameters starts its sequence numbers afresh: a "replay" of
                # the old context's window).
                done = directory.lookup(option.kid, option.kid_context, now)
                if done is not None:
                    return OscoreLookup(done)
            level = logging.DEBUG if isinstance(exc, OscoreReplay) else logging.INFO
            self._log.log(
                "OSCORE requests refused", now, level, "OSCORE request from %s refused: %s", event.addr, exc
            )
            return error_response(exc)
        self.bind_peer(event.addr, context)
        if self.directory is not None:
            self.directory.verified(context, now)
        return OscoreRequestReceived(
            event.addr, inner, event.observe, event.block1, event.block2, context, binding, event
        )

    def protect_response(self, event: RequestReceived, response: Message) -> tuple[RequestReceived, Message]:
        """``response`` to ``event`` protected when the request was (an ``OscoreRequestReceived``),
        and the event the endpoint answers (the protected request, whose outer options its
        block-wise cache matches later blocks by); else both as they are. An accepted Observe
        registration keeps its binding for the notifications to come."""
        if (
            not isinstance(event, OscoreRequestReceived)
            or event.context is None
            or event.binding is None
            or event.protected is None
        ):
            return event, response
        if event.observe == 0 and response.code >> 5 == 2 and response.has_option(OptionNumber.OBSERVE):
            relations = self._relations
            relations[event.relation] = (event.context, event.binding)
            if len(relations) > self._max:
                del relations[next(iter(relations))]
        return event.protected, event.context.protect_response(response, event.binding)

    def protect_notification(self, relation: tuple[Any, bytes], message: Message) -> Message | None:
        """A notification on ``relation`` protected with a Partial IV of its own; None when the
        relation is not protected. An error notification ends the relation (RFC 7641 §3.2)."""
        entry = self._relations.get(relation)
        if entry is None:
            return None
        context, binding = entry
        if message.code >> 5 != 2:
            del self._relations[relation]
        elif not message.has_option(OptionNumber.OBSERVE):
            message = message.with_option(OptionNumber.OBSERVE, b"")  # the endpoint sets the number
        return context.protect_response(message, binding, fresh_piv=True)

    def forget_relation(self, relation: tuple[Any, bytes]) -> None:
        self._relations.pop(relation, None)

    @property
    def relations(self) -> int:
        return len(self._relations)

    # --- the client's side -------------------------------------------------------------------

    def protect_request(self, message: Message, addr: Any) -> tuple[Message, PendingRequest] | None:
        """``message`` protected for ``addr``, or None when no context is bound to that peer."""
        context = self._peers.get(addr)
        if context is None:
            return None
        outer, binding = context.protect_request(message)
        return outer, PendingRequest(context, binding, message)

    def track(self, token: bytes, pending: PendingRequest) -> None:
        self.pending[token] = pending
        if len(self.pending) > self._max:
            del self.pending[next(iter(self.pending))]

    def unprotect_response(self, token: bytes, message: Message, *, final: bool = True) -> Message:
        """The verified response to our request ``token``: OscoreError when it does not verify,
        OscoreReplay for a notification older than the latest one accepted (§7.4.1)."""
        pending = self.pending.get(token)
        if pending is None:
            raise OscoreContextNotFound("a response to no OSCORE request of ours")
        inner, piv = pending.context.unprotect_response(message, pending.binding)
        if piv is not None and message.has_option(OptionNumber.OBSERVE):
            if piv <= pending.latest:
                raise OscoreReplay("a notification older than the latest one")
            pending.latest = piv
        if final:
            self.pending.pop(token, None)
        return inner

    def echo_retry(self, token: bytes, inner: Message) -> Message | None:
        """The request to repeat when ``inner`` (the verified answer to ``token``) is a 4.01
        Echo challenge and our request carried no Echo yet (RFC 9175 §2.4); else None."""
        pending = self.pending.get(token)
        if pending is None or inner.code != Code.UNAUTHORIZED:
            return None
        echo = inner.option(ECHO_OPTION)
        if echo is None or pending.request.has_option(ECHO_OPTION):
            return None
        return pending.request.with_option(ECHO_OPTION, echo)

    def close(self) -> None:
        self._log.flush()
