"""Webhooks: server events POSTed as JSON to the URLs registered for them, at least once.

A hook (``POST /api/webhooks`` {url, events, secret?}) names the event types it wants, by
their SSE names (``REGISTRATION``, ``NOTIFICATION``, …). Each event of a wanted type is posted
to it as ``{"event", "id", "receivedAt", "data"}``, ``data`` being what the SSE stream sends
for it, with these headers:

- ``X-Lwm2m-Signature: sha256=<hex>``: HMAC-SHA256 (RFC 2104) of the body with the hook's
  secret; the receiver computes it and compares in constant time;
- ``X-Lwm2m-Event``: the event type; ``X-Lwm2m-Delivery``: the event's id (the same in every
  attempt and for every hook: a receiver dedupes by it); ``X-Lwm2m-Timestamp``: Unix seconds
  of this attempt.

Delivery is at least once, through the store's outbox (:mod:`lwm2m.storage.webhooks`):
an event is kept in memory for at most ``flush_delay`` seconds, then written to the outbox with
the others of its batch in one commit (as the history store batches notifications), posted,
and removed once the receiver answered 2xx. A server that stops, or is killed, posts after its
restart every event it had written and not delivered (one killed while posting posts those
again when their lease ends: ``lease``). A failed post (no answer in ``timeout``, or a status
other than 2xx) is tried again after an exponential back-off with jitter, capped at
``backoff_cap``; an event older than ``max_age`` is dropped. The outbox is bounded per hook and
in all (``OutboxLimits``): beyond, the oldest events go, counted and logged. Events of one hook
may arrive out of order (posts run concurrently, retries come later).

A hook may ask for batches (``batch=(max_events, max_delay)``): one post then carries a JSON
array of up to ``max_events`` of those bodies (each with its ``id``), signed over the whole
array, with the header ``X-Lwm2m-Batch: <count>`` instead of ``X-Lwm2m-Event`` and
``X-Lwm2m-Delivery``; fewer events wait up to ``max_delay`` seconds after the oldest was taken
for more to come. A batch is retried as a unit (its events come due again together) and removed
from the outbox once the receiver answered 2xx.

Posts go through the package's one HTTP client (:class:`~lwm2m.transport.http.HttpClient`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import math
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import msgspec

from lwm2m.errors import (
    ConfigError,
    HttpError,
    InvalidWebhook,
    StoreError,
    TooManyWebhooks,
    WebhookNotFound,
)
from lwm2m.server.events import EventStream, ServerEvent
from lwm2m.server.role import Server
from lwm2m.storage.webhooks import OutboxEntry, Retry, Webhook, WebhookStore
from lwm2m.transport.http import HttpClient

__all__ = ["SIGNATURE_HEADER", "WebhookConfig", "WebhookCounters", "Webhooks", "sign", "verify"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Lwm2m-Signature"
EVENT_HEADER = "X-Lwm2m-Event"
DELIVERY_HEADER = "X-Lwm2m-Delivery"
TIMESTAMP_HEADER = "X-Lwm2m-Timestamp"
BATCH_HEADER = "X-Lwm2m-Batch"
MAX_BATCH_EVENTS = 1000  # events in one post at most
MAX_BATCH_DELAY = 60.0  # seconds an incomplete batch may wait at most
MAX_URL = 2048
MAX_SECRET = 256
ANSWER_LIMIT = 64 << 10  # bytes of a receiver's answer read at most: only its status counts

# What a hook's URL may be (the API documents it): http or https, a host name or IPv4 address,
# a port of 0-65535, then a path and query without spaces or fragment.
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URL_PATTERN = f"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:{_PORT})?([/?][^\\s#]*)?$"

EventView = Callable[[ServerEvent], tuple[str, dict[str, Any]]]


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of ``body`` (RFC 2104)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` with ``secret`` (compared in constant time)."""
    return hmac.compare_digest(sign(secret, body), header)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """``flush_delay``: seconds an event waits in memory before the batch is written;
    ``buffer``: events waiting so at most (the oldest dropped beyond); ``claim``: entries taken
    from the outbox per round; ``concurrency``: posts in flight; ``timeout``: seconds a post
    may take; ``lease``: seconds a taken entry is hidden from other posters (longer than
    ``timeout``); ``backoff`` and ``backoff_cap``: the first retry delay and the largest;
    ``max_age``: seconds after which an undelivered event is dropped; ``poll``: seconds between
    looks at the outbox when nothing wakes the poster (retries coming due, other nodes' events);
    ``refresh``: seconds between reads of the hooks (other nodes add and remove them too)."""

    flush_delay: float = 0.1
    buffer: int = 10_000
    claim: int = 256
    concurrency: int = 16
    timeout: float = 10.0
    lease: float = 60.0
    backoff: float = 1.0
    backoff_cap: float = 600.0
    max_age: float = 86_400.0
    poll: float = 1.0
    refresh: float = 5.0

    def __post_init__(self) -> None:
        seconds = {
            "flush_delay": self.flush_delay,
            "timeout": self.timeout,
            "lease": self.lease,
            "backoff": self.backoff,
            "backoff_cap": self.backoff_cap,
            "max_age": self.max_age,
            "poll": self.poll,
            "refresh": self.refresh,
        }
        for name, value in seconds.items():
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name}: {value!r} must be a positive number of seconds")
        if self.buffer < 1 or self.claim < 1 or self.concurrency < 1:
            raise ConfigError("buffer, claim and concurrency must be at least 1")
        if self.lease <= self.timeout:
            raise ConfigError(f"lease ({self.lease} s) must be longer than timeout ({self.timeout} s)")


@dataclass(slots=True)
class WebhookCounters:
    """Since the start: events posted and taken (``delivered``), posts that failed (``failed``),
    posts that were a retry (``retried``), events given up (``dropped``: too old, or beyond the
    outbox's or the buffer's bounds); ``outbox``: entries waiting at the last look."""

    delivered: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    outbox: int = 0


HooksChanged = Callable[[list[Webhook]], None]


class Webhooks:
    """The webhooks of one server: registered in ``store``, fed by the server's events.

    ``names`` maps each event class to its type name and ``view`` gives an event's name and
    JSON data (the web layer's SSE forms). :meth:`start` subscribes and starts posting;
    :meth:`close` writes what waits in memory and stops.

    With ``deliver=False`` (the export worker delivers, :mod:`lwm2m.export.handoff`) they only
    keep the registrations: :meth:`start` neither subscribes nor posts, and each change of the
    hooks goes to the callbacks given to :meth:`watch`. Without a ``server`` (in the worker),
    events come through :meth:`take` only.
    """

    def __init__(
        self,
        server: Server | None,
        store: WebhookStore,
        names: Mapping[type, str],
        view: EventView,
        config: WebhookConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        deliver: bool = True,
    ) -> None:
        self.server = server
        self.deliver = deliver
        self._watchers: list[HooksChanged] = []
        self.store = store
        self.names = dict(names)
        self.event_types = frozenset(self.names.values())
        self.view = view
        self.config = config or WebhookConfig()
        self.counters = WebhookCounters()
        self._clock = clock
        self._hooks: dict[str, Webhook] = {}
        self._wanted: dict[str, list[Webhook]] = {}  # event type -> hooks that want it
        self._targets: dict[str, SplitResult] = {}
        self._largest_batch = 1
        self._held_until = math.inf  # when the earliest incomplete batch put back is due
        self._hold: dict[str, float] = {}  # hook id -> when the events of it put back are due
        self._buffer: list[OutboxEntry] = []
        self._flush: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[bool]] = set()
        self._wake = asyncio.Event()
        self._running = False
        self._stream: EventStream | None = None  # subscribed only while some hook wants events
        self._pump: asyncio.Task[None] | None = None
        self._poster: asyncio.Task[None] | None = None
        self._refreshed_at = -math.inf
        self._client = HttpClient(timeout=self.config.timeout, max_size=ANSWER_LIMIT)
        self._sized_at = -math.inf
        # Event ids: 64 random bits of this run, then a counter (a uuid4 per event costs 10x more).
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count()

    # --- registration ---------------------------------------------------------------------------

    async def add(
        self,
        url: str,
        events: Iterable[str],
        secret: str | None = None,
        batch: tuple[int, float] | None = None,
    ) -> Webhook:
        """Register a hook (InvalidWebhook for a bad URL, event type, secret or batch); without a
        ``secret``, one is made (answered here only: listings never show it); ``batch``: events
        per post at most and seconds an incomplete batch waits (None: one event per post)."""
        url, wanted = check_hook(url, events, self.event_types)
        batch_events, batch_delay = check_batch(batch)
        if secret is None:
            secret = secrets.token_urlsafe(32)
        elif not isinstance(secret, str) or not 1 <= len(secret) <= MAX_SECRET:
            raise InvalidWebhook(f"secret: a string of 1 to {MAX_SECRET} characters")
        hooks = await self.store.hooks()
        if len(hooks) >= self.store.limits.hooks:
            raise TooManyWebhooks(f"{len(hooks)} webhooks are registered already: delete one")
        hook = Webhook(uuid.uuid4().hex, url, wanted, secret, self._clock(), batch_events, batch_delay)
        await self.store.put_hook(hook)
        await self.refresh()
        return hook

    async def get(self, hook_id: str) -> Webhook:
        hook = await self.store.get_hook(hook_id)
        if hook is None:
            raise WebhookNotFound(f"no webhook {hook_id!r}")
        return hook

    async def all(self) -> list[Webhook]:
        return await self.store.hooks()

    async def remove(self, hook_id: str) -> None:
        """Forget the hook and the events waiting for it (WebhookNotFound if unknown)."""
        if not await self.store.delete_hook(hook_id):
            raise WebhookNotFound(f"no webhook {hook_id!r}")
        await self.refresh()

    async def refresh(self) -> None:
        """Read the hooks from the store again (another node may have changed them)."""
        hooks = await self.store.hooks()
        self._hooks = {h.hook_id: h for h in hooks}
        self._targets = {h.url: urlsplit(h.url) for h in hooks}  # parsed once, not per post
        wanted: dict[str, list[Webhook]] = {}
        for h in hooks:
            for name in h.events:
                wanted.setdefault(name, []).append(h)
        self._wanted = wanted
        self._largest_batch = max((h.batch_events for h in hooks), default=1)
        self._refreshed_at = self._clock()
        self._follow(bool(wanted) and self._running)
        for watcher in self._watchers:
            watcher(hooks)

    def watch(self, changed: HooksChanged) -> None:
        """Call ``changed`` with the hooks after each read of them (:meth:`refresh`)."""
        self._watchers.append(changed)

    def _follow(self, on: bool) -> None:
        """Take the server's events while some hook wants them: with no hook, the server has
        no subscriber more to feed per event."""
        if on and self._stream is None and self.server is not None and self.deliver:
            self._stream = self.server.events()
            self._pump = asyncio.ensure_future(self._take_all(self._stream))
        elif not on and self._stream is not None:
            self._stream.close()
            self._stream = None
            if self._pump is not None:
                self._pump.cancel()
                self._pump = None

    # --- running --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        await self.refresh()
        self._poster = asyncio.ensure_future(self._post_loop() if self.deliver else self._refresh_loop())

    async def close(self) -> None:
        """Stop taking events, write those waiting in memory to the outbox, stop posting."""
        if not self._running:
            return
        self._running = False
        pump, poster = self._pump, self._poster
        self._follow(False)
        self._poster = None
        for task in (pump, poster):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for pending in list(self._flushing):
            with contextlib.suppress(Exception):
                await pending
        await self._write()
        await self._client.close()

    async def _take_all(self, stream: EventStream) -> None:
        async for event in stream:
            self.take(event)

    def take(self, event: ServerEvent, at: float | None = None, event_id: str | None = None) -> None:
        """Put ``event`` (taken at Unix time ``at``, default now; ``event_id``, default a new
        one) in the batch for the hooks that want it (nothing for the others)."""
        hooks = self._wanted.get(self.names.get(type(event), ""))
        if not hooks:
            return
        name, data = self.view(event)
        now = self._clock() if at is None else at
        if event_id is None:
            event_id = f"{self._id_prefix}{next(self._ids):016x}"
        body = msgspec.json.encode({"event": name, "id": event_id, "receivedAt": now, "data": data})
        for hook in hooks:
            self._buffer.append(OutboxEntry(hook.hook_id, event_id, now, body, next_at=now))
        if len(self._buffer) > self.config.buffer:
            over = len(self._buffer) - self.config.buffer
            del self._buffer[:over]
            self.counters.dropped += over
            log.warning(
                "webhooks: %d events dropped: %d wait to be written already", over, self.config.buffer
            )
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.config.flush_delay, self._start_write)

    def _start_write(self) -> None:
        self._flush = None
        task = asyncio.ensure_future(self._write())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def write(self) -> bool:
        """Write the events taken so far to the outbox now; False if the store failed (the
        export worker acknowledges a batch of events once they are there)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        return await self._write()

    async def _write(self) -> bool:
        batch, self._buffer = self._buffer, []
        if not batch:
            return True
        try:
            dropped = await self.store.enqueue(batch)
        except Exception:
            self.counters.dropped += len(batch)
            log.exception("webhooks: %d events could not be written to the outbox", len(batch))
            return False
        if dropped:
            self.counters.dropped += dropped
            log.warning("webhooks: the outbox is full: its %d oldest events were dropped", dropped)
        self._wake.set()
        return True

    async def _refresh_loop(self) -> None:
        """Without delivery: read the hooks now and then (other nodes change them too)."""
        while True:
            await asyncio.sleep(self.config.refresh)
            try:
                await self.refresh()
            except StoreError as exc:  # the store away (a Redis restart): read at the next turn
                log.warning("webhooks: the hooks could not be read: %s", exc)
            except Exception:
                log.exception("webhooks: the hooks could not be read")

    async def _post_loop(self) -> None:
        while True:
            try:
                if self._clock() - self._refreshed_at >= self.config.refresh:
                    await self.refresh()  # hooks added or removed on other nodes
                taken = await self.round()
            except StoreError as exc:  # the store away: the outbox keeps the events for later
                log.warning("webhooks: a round of posts failed: %s", exc)
                taken = 0
            except Exception:
                log.exception("webhooks: a round of posts failed")
                taken = 0
            if taken < self.config.claim:  # the outbox had no more due: wait for news
                wait = min(self.config.poll, max(0.0, self._held_until - self._clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                self._wake.clear()

    async def round(self) -> int:
        """Post the events due now (at most ``claim``, or a batch of the largest size); answer
        how many were taken."""
        config = self.config
        now = self._clock()
        if now - self._sized_at >= 1.0:
            self.counters.outbox = await self.store.size()
            self._sized_at = now
        if self._held_until <= now:  # those put back are due: this round takes them
            self._held_until = math.inf
        entries = await self.store.claim(now, max(config.claim, self._largest_batch), config.lease)
        if not entries:
            return 0
        if any(e.hook_id not in self._hooks for e in entries):
            await self.refresh()  # a hook added on another node
        done: list[int] = []
        retries: list[Retry] = []
        posts: list[tuple[list[OutboxEntry], Webhook]] = []
        batched: dict[str, list[OutboxEntry]] = {}  # hook id -> its entries, for hooks with batches
        for entry in entries:
            hook = self._hooks.get(entry.hook_id)
            if hook is None:  # deleted meanwhile
                done.append(entry.seq)
            elif now - entry.created_at > config.max_age:
                done.append(entry.seq)
                self.counters.dropped += 1
                log.warning(
                    "webhooks: event %s for %s dropped after %d attempts",
                    entry.event_id,
                    hook.url,
                    entry.attempts,
                )
            elif hook.batch_events > 1:
                batched.setdefault(hook.hook_id, []).append(entry)
            else:
                posts.append(([entry], hook))
        for hook_id, group in batched.items():
            hook = self._hooks[hook_id]
            size = hook.batch_events
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                if len(chunk) < size and not any(e.attempts for e in chunk):
                    # Due with those of the hook put back before (older): they come back together.
                    earlier = self._hold.get(hook_id, -math.inf)
                    due = earlier if earlier > now else min(e.created_at for e in chunk) + hook.batch_delay
                    self._hold[hook_id] = due
                    if due > now:  # not full and not old enough: back to the outbox until then
                        retries.extend(Retry(e.seq, e.attempts, due) for e in chunk)
                        self._held_until = min(self._held_until, due)
                        continue
                posts.append((chunk, hook))
        gate = asyncio.Semaphore(config.concurrency)

        async def post(chunk: list[OutboxEntry], hook: Webhook) -> None:
            async with gate:
                ok = await self._post(chunk, hook)
            if ok:
                done.extend(e.seq for e in chunk)
            else:  # the batch again as a whole: its events come due together
                attempts = max(e.attempts for e in chunk) + 1
                at = self._clock() + self.delay(attempts)
                retries.extend(Retry(e.seq, attempts, at) for e in chunk)

        await asyncio.gather(*(post(c, h) for c, h in posts))
        await self.store.delivered(done)
        await self.store.retry(retries)
        self.counters.outbox = max(0, self.counters.outbox - len(done))
        return len(entries)

    async def _post(self, chunk: list[OutboxEntry], hook: Webhook) -> bool:
        if any(e.attempts for e in chunk):
            self.counters.retried += 1
        first = chunk[0]
        headers = {"Content-Type": "application/json"}
        if hook.batch_events > 1:
            body = b"[" + b",".join(e.body for e in chunk) + b"]"
            headers[BATCH_HEADER] = str(len(chunk))
        else:
            body = first.body
            headers[EVENT_HEADER] = str(msgspec.json.decode(body).get("event", ""))
            headers[DELIVERY_HEADER] = first.event_id
        headers[SIGNATURE_HEADER] = sign(hook.secret, body)
        headers[TIMESTAMP_HEADER] = str(int(self._clock()))
        attempt = first.attempts + 1
        try:
            answer = await self._client.request(
                "POST", self._targets.get(hook.url) or hook.url, body=body, headers=headers
            )
        except HttpError as exc:
            self.counters.failed += 1
            log.info("webhooks: %s: %s (attempt %d)", hook.url, exc, attempt)
            return False
        if not answer.ok:
            self.counters.failed += 1
            log.info("webhooks: %s answered %d (attempt %d)", hook.url, answer.status, attempt)
            return False
        self.counters.delivered += len(chunk)
        return True

    def delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: ``backoff`` doubled per failed attempt, at most
        ``backoff_cap``, of which a random half (jitter: receivers that come back are not hit by
        every retry at once)."""
        full = min(self.config.backoff_cap, self.config.backoff * 2.0 ** min(attempts - 1, 60))
        return full / 2 + random.uniform(0, full / 2)


def check_hook(url: str, events: Iterable[str], known: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """The URL (http or https with a host) and the event types (known ones, at least one)."""
    if not isinstance(url, str) or len(url) > MAX_URL or not re.fullmatch(URL_PATTERN, url):
        raise InvalidWebhook(
            f"url {str(url)[:100]!r}: an http:// or https:// URL with a host name or IPv4 address, "
            f"of at most {MAX_URL} characters"
        )
    if isinstance(events, str) or not isinstance(events, Sequence | set | frozenset | tuple):
        raise InvalidWebhook("events: a list of event types")
    wanted = tuple(dict.fromkeys(events))
    unknown = [e for e in wanted if e not in known]
    if not wanted or unknown:
        raise InvalidWebhook(
            f"events: at least one of {', '.join(sorted(known))}"
            + (f"; unknown: {unknown!r}" if unknown else "")
        )
    return url, wanted


def check_batch(batch: object) -> tuple[int, float]:
    """A hook's batch settings: events per post (2 to ``MAX_BATCH_EVENTS``) and the seconds an
    incomplete batch waits (0 to ``MAX_BATCH_DELAY``); None: one event per post."""
    if batch is None:
        return 1, 0.0
    if isinstance(batch, tuple) and len(batch) == 2:
        events, delay = batch
        if (
            isinstance(events, int)
            and not isinstance(events, bool)
            and 2 <= events <= MAX_BATCH_EVENTS
            and isinstance(delay, int | float)
            and not isinstance(delay, bool)
            and math.isfinite(delay)
            and 0 <= delay <= MAX_BATCH_DELAY
        ):
            return events, float(delay)
    raise InvalidWebhook(
        f"batch: maxEvents an integer of 2 to {MAX_BATCH_EVENTS}, maxDelay seconds of 0 to "
        f"{MAX_BATCH_DELAY:g}, got {str(batch)[:100]}"
    )
