"""Log lines for DTLS sessions (logger ``lwm2m.transport.dtls``), bounded under a flood.

A handshake failure or a session ended by an alert or an error is worth a line, but anyone
can send ClientHellos: a flood of bad handshakes must not become a flood of log lines. So
the first ``burst`` failures of a ``window`` are logged one by one (INFO), the rest only
counted, and the count is told in one line when the next window opens (or at close): a
:class:`~lwm2m.coap.logbudget.LogBudget`.
"""

from __future__ import annotations

import logging
from typing import Any

from lwm2m.coap.logbudget import LogBudget
from lwm2m.transport.address import format_addr
from lwm2m.transport.dtls.config import PeerIdentity
from lwm2m.transport.dtls.events import HandshakeFailed, SessionEnded, SessionEstablished, SessionEvent

__all__ = ["SessionLog"]

log = logging.getLogger("lwm2m.transport.dtls")
_FAILURES = "DTLS handshake or session failures"


def _addr(addr: Any) -> str:
    try:
        return format_addr(addr)
    except (TypeError, IndexError, KeyError):
        return repr(addr)


class SessionLog:
    """Turns the DTLS layer's session events into log lines, at most ``burst`` failure lines
    per ``window`` seconds and one line that counts those left out (written with the first
    event after the window, or at :meth:`flush`)."""

    def __init__(self, window: float = 10.0, burst: int = 5) -> None:
        self.window = window
        self.burst = burst
        self._budget = LogBudget(log, window, burst)

    def event(self, event: SessionEvent, now: float) -> None:
        self._budget.tick(now)  # a flood that ended: tell its count with the next event of any kind
        if isinstance(event, HandshakeFailed):
            self._failure(now, "DTLS handshake with %s failed: %s", _addr(event.addr), event.reason)
        elif isinstance(event, SessionEnded):
            reason = event.reason
            if reason == "error":
                self._failure(
                    now,
                    "DTLS session with %s (%s) ended by an error",
                    _addr(event.addr),
                    _who(event.identity),
                )
            elif reason == "closed":
                # The peer sent close_notify or a fatal alert (RFC 5246 §7.2); only an authenticated
                # session gets here, so these lines need no bound of their own.
                log.info(
                    "DTLS session with %s (%s) closed by the peer (close_notify or an alert)",
                    _addr(event.addr),
                    _who(event.identity),
                )
            elif log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "DTLS session with %s (%s) ended: %s", _addr(event.addr), _who(event.identity), reason
                )
        elif isinstance(event, SessionEstablished) and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "DTLS session with %s established: %s, %s%s",
                _addr(event.addr),
                _who(event.identity),
                event.cipher_suite,
                " (resumed)" if event.resumed else "",
            )

    def _failure(self, now: float, fmt: str, *args: Any) -> None:
        self._budget.log(_FAILURES, now, logging.INFO, fmt, *args)

    def tick(self, now: float) -> None:
        """Tell the count of a flood of failures whose window has ended (for a timer)."""
        self._budget.tick(now)

    def next_due(self) -> float | None:
        """When :meth:`tick` has a count to tell, or None."""
        return self._budget.next_due()

    def flush(self) -> None:
        """Tell the failures left out so far, if any."""
        self._budget.flush()


def _who(identity: PeerIdentity | None) -> str:
    return "no identity" if identity is None else f"identity {identity}"
