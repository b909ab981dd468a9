"""The DTLS anti-replay window (RFC 6347 §4.1.2.6, the sliding window of RFC 4303 §3.4.3).

One :class:`ReplayWindow` serves one read epoch: sequence numbers restart at 0 in every epoch
(RFC 6347 §4.1), so a new epoch gets a new window. The receiver asks :meth:`ReplayWindow.check`
before it removes a record's protection, and calls :meth:`ReplayWindow.accept` only once the
record has authenticated: a forged record must never move the window (RFC 6347 §4.1.2.6).
"""

from __future__ import annotations

from typing import Final

from lwm2m.errors import RecordError

MAX_SEQUENCE: Final = 2**48 - 1
DEFAULT_SIZE: Final = 64  # the minimum window RFC 6347 §4.1.2.6 asks for


class ReplayWindow:
    """Which sequence numbers of one epoch were received: the highest one and a bitmap of the
    ``size`` numbers up to it that were not (bit 0 is the highest, bit ``i`` the number ``i``
    below it). Kept as the numbers missing rather than those received, so that records in order
    leave it 0: the next record then costs a receiver one test and one store (``newest``)."""

    __slots__ = ("epoch", "mask", "missing", "newest", "size")

    def __init__(self, epoch: int = 0, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise RecordError("a replay window holds at least one record")
        self.epoch = epoch
        self.size = size
        self.mask = (1 << size) - 1
        # The highest sequence number accepted, -1 before the first. A receiver that finds a
        # record above it knows, without a call, that ``check`` says True (the record of an
        # established session is almost always the next one); one that finds the record to be
        # ``newest + 1`` with nothing ``missing`` may accept it by setting ``newest`` alone.
        self.newest = -1
        # The numbers in the window not received; none below the first (no such number exists).
        self.missing = 0

    @property
    def highest(self) -> int | None:
        """The highest sequence number accepted so far (None before the first one): a record
        newer than it may move a CID session to a new address (RFC 9146 §6)."""
        return None if self.newest < 0 else self.newest

    def check(self, sequence: int) -> bool:
        """True if a record with this sequence number may be new: not left of the window and
        not seen inside it. Changes nothing."""
        if not 0 <= sequence <= MAX_SEQUENCE:
            return False
        offset = self.newest - sequence
        if offset < 0:
            return True  # above every number accepted (or nothing accepted yet)
        if offset >= self.size:
            return False  # too old to tell: refused, as RFC 6347 §4.1.2.6 says
        return bool((self.missing >> offset) & 1)

    def accept(self, sequence: int) -> bool:
        """Mark an authenticated record as received, sliding the window when it is the newest.
        True when it was: above every number accepted before (RFC 9146 §6 asks that of a
        record that moves a CID connection to a new address)."""
        shift = sequence - self.newest
        if shift > 0:  # the newest yet
            if sequence > MAX_SEQUENCE:
                raise RecordError(f"sequence number {sequence} does not fit in 48 bits")
            # The numbers skipped (bits 1 .. shift - 1) are missing, the new one (bit 0) is not;
            # a jump of the window size or more leaves none of the old bits inside it.
            if shift < self.size:
                self.missing = ((self.missing << shift) | ((1 << shift) - 2)) & self.mask
            else:
                self.missing = self.mask ^ 1
            self.newest = sequence
            return True
        if sequence < 0:
            raise RecordError(f"sequence number {sequence} does not fit in 48 bits")
        if -shift < self.size:
            self.missing &= ~(1 << -shift)
        return False
