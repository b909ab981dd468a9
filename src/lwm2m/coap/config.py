"""Endpoint configuration: RFC 7252 §4.8 transmission parameters and state limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from lwm2m.coap.option import MAX_SZX
from lwm2m.errors import ConfigError

__all__ = ["EndpointConfig"]


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Transmission parameters (RFC 7252 §4.8) and the limits that keep state bounded.

    ``exchange_lifetime``, ``non_lifetime`` (RFC 7252 §4.8.2), ``processing_delay``,
    ``response_timeout`` and ``reassembly_lifetime`` are derived unless given; ``dataclasses.replace`` keeps
    the derived values, so pass them as None there to derive them again.
    """

    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    nstart: int = 1  # outstanding CON requests per peer; the rest wait in a queue (§4.7)
    max_latency: float = 100.0
    processing_delay: float | None = None  # default: ack_timeout (§4.8.2)
    exchange_lifetime: float | None = None
    non_lifetime: float | None = None
    # How long the application may take before the endpoint sends an empty ACK and the
    # answer becomes a separate response (§5.2.2). None: never (the answer always rides
    # in the ACK, unless ``max_pending_requests`` forces an early empty ACK).
    empty_ack_delay: float | None = 1.0
    # How long to wait for a response to a NON request, or after an empty ACK; default
    # exchange_lifetime.
    response_timeout: float | None = None
    block_szx: int = MAX_SZX  # preferred block size 2**(szx+4): 6 is 1024 bytes (RFC 7959 §2.2)
    max_body_size: int = 1 << 20  # largest reassembled Block1 or Block2 body
    # All block-wise bodies held at once: Block1 reassembly, Block2 bodies served and fetched.
    # Over it, a new Block1 transfer is refused with 5.03 (RFC 7959 §2.9.3 leaves 4.13 for a
    # body too large in itself), a served body is not cached, a fetch fails.
    max_block_bytes: int = 32 << 20
    # How long a Block1 transfer is kept after its last block; default exchange_lifetime.
    reassembly_lifetime: float | None = None
    token_length: int = 8  # random bytes per generated token (§5.3.1)
    notification_con_interval: float = 86400.0  # RFC 7641 §4.5: a CON notification at least daily
    extra_critical_options: frozenset[int] = field(default_factory=frozenset)  # handled by the app
    # State limits (hostile peers must not grow memory without bound).
    max_dedup_entries: int = 100_000
    max_pending_requests: int = 10_000  # CON requests the application has not answered yet
    max_peers: int = 10_000  # peers with reassembly or observe state
    max_reassembly_buffers: int = 1_000
    max_reassembly_per_peer: int = 4
    max_block_cache: int = 1_000
    max_observations: int = 10_000
    max_observations_per_peer: int = 64
    max_queued_requests_per_peer: int = 10_000

    def __post_init__(self) -> None:
        if not 0 <= self.block_szx <= MAX_SZX:
            raise ConfigError(f"block_szx {self.block_szx} out of range 0..{MAX_SZX}")
        if self.nstart < 1:
            raise ConfigError(f"nstart {self.nstart} must be at least 1")
        if not 0 <= self.token_length <= 8:
            raise ConfigError(f"token_length {self.token_length} must be 0..8")
        processing_delay = self.processing_delay
        if processing_delay is None:
            processing_delay = self.ack_timeout
            object.__setattr__(self, "processing_delay", processing_delay)
        if self.exchange_lifetime is None:
            lifetime = self.max_transmit_span + 2 * self.max_latency + processing_delay
            object.__setattr__(self, "exchange_lifetime", lifetime)
        if self.non_lifetime is None:
            object.__setattr__(self, "non_lifetime", self.max_transmit_span + self.max_latency)
        if self.response_timeout is None:
            object.__setattr__(self, "response_timeout", self.exchange_lifetime)
        if self.reassembly_lifetime is None:
            object.__setattr__(self, "reassembly_lifetime", self.exchange_lifetime)
        if self.max_body_size < 1 or self.max_block_bytes < 1:
            raise ConfigError(
                f"max_body_size {self.max_body_size} and max_block_bytes {self.max_block_bytes}"
                " must be positive"
            )
        for name in ("exchange_lifetime", "non_lifetime", "reassembly_lifetime", "response_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} {getattr(self, name)} must be positive")

    @property
    def max_transmit_span(self) -> float:
        return self.ack_timeout * ((1 << self.max_retransmit) - 1) * self.ack_random_factor

    @property
    def max_transmit_wait(self) -> float:
        return self.ack_timeout * ((1 << (self.max_retransmit + 1)) - 1) * self.ack_random_factor

    @property
    def block_size(self) -> int:
        return 1 << (self.block_szx + 4)
