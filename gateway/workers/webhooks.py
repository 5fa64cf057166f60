"""Phase webhooks: each change of a job's phase POSTed, signed, to every hook whose filters it passes.

Contract:
- Source: the phases stream (`gateway.state.phases`), appended by the one status write that changed the
  phase (`gateway.state.jobs`), so a change is one entry however many replicas observed it.
- `WebhookDelivery(state, settings.notifications, consumer=<replica id>)`: `ensure()` creates each hook's
  consumer group (at startup, before this replica writes statuses); `run()` runs one independent loop per
  hook until `stop()`. A hook's loop keeps at most `concurrency` deliveries in flight, each with its own
  retries: a dead or slow receiver fills its own slots and nothing else (no other hook, no request, no
  status write waits for it).
- Each loop reads, in this order, its consumer's own unacknowledged entries (left by this replica's
  earlier life: a restart resumes them), entries another replica left idle for `claimIdleSeconds`
  (XAUTOCLAIM: it died), then new entries (XREADGROUP, blocking up to a second).
- A delivery: `POST <url>` with the JSON body `{id, name, owner, cluster, partition, phase, previousPhase,
  reason, message, at}` (`at` RFC 3339 UTC, when the new phase was observed; `previousPhase` null for a
  job's first status), headers `X-Clever-Signature: sha256=<hex HMAC-SHA256 of the exact body>`,
  `X-Clever-Delivery: <stream entry id>` (the same on every retry: receivers de-duplicate on it) and
  `X-Clever-Event: phase`. A 2xx acknowledges the entry (XACK); anything else (another status, a timeout,
  a refused connection; redirects are not followed) is retried after an exponential backoff with jitter
  (`retryInitialSeconds` doubling up to `retryMaxSeconds`, times 0.5-1.0) until the change is older than
  `maxAgeSeconds`, then dropped with a warning and counted (`clever_gateway_webhook_dropped_total`).
  Between attempts the entry is touched so that no other replica takes it over while this one lives.
- Delivery is at least once: a replica killed after a receiver answered but before the XACK sends that
  change again. Deliveries to one hook run concurrently, so two changes of one job may arrive out of order;
  `at` and `previousPhase` tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import orjson
import structlog

from gateway.config import NotificationsSettings, WebhookSettings
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.state import State
from gateway.state.phases import Entry
from gateway.version import VERSION

log = structlog.get_logger(__name__)

_READ_BLOCK_MS = 1000
_STORE_RETRY_SECONDS = 1.0


def event_body(fields: dict[str, str]) -> bytes:
    """The JSON body of one change (keys in a fixed order), from its stream entry's fields."""
    at = _float(fields.get("at"))
    return orjson.dumps({
        "id": fields.get("id", ""),
        "name": _json_text(fields.get("name", "")),
        "owner": fields.get("owner", ""),
        "cluster": fields.get("cluster", ""),
        "partition": fields.get("partition", ""),
        "phase": fields.get("phase", ""),
        "previousPhase": fields.get("previousPhase") or None,
        "reason": fields.get("reason") or None,
        "message": fields.get("message") or None,
        "at": None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
    })


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Clever-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _json_text(raw: str) -> str:
    # The name is cut from the stored JSON view as it is stored there: JSON string content, escapes included.
    try:
        decoded = orjson.loads(b'"' + raw.encode() + b'"')
    except orjson.JSONDecodeError:
        return raw
    return decoded if isinstance(decoded, str) else raw


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _entry_time(entry_id: str) -> float:
    """When an entry was appended (its id's milliseconds), epoch seconds."""
    millis, _, _ = entry_id.partition("-")
    return int(millis) / 1000.0 if millis.isdigit() else 0.0


@dataclass
class _Hook:
    settings: WebhookSettings
    name: str
    group: str
    secret: bytes
    in_flight: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)


class WebhookDelivery:
    """The delivery workers of every configured hook (see module docstring)."""

    def __init__(self, state: State, settings: NotificationsSettings, *, consumer: str,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._settings = settings
        self._consumer = consumer
        self._metrics = metrics
        self._clock = clock
        self._stopping = asyncio.Event()
        # Secrets are read here, at startup: an unreadable secretFile fails the start (ConfigError).
        self._hooks = [_Hook(settings=hook, name=hook.hook_name(), group=f"hook:{hook.hook_name()}",
                             secret=hook.read_secret()) for hook in settings.webhooks]

    async def ensure(self) -> None:
        """Create every hook's consumer group (new ones start at the stream's end)."""
        for hook in self._hooks:
            await self._state.phases.ensure(hook.group)

    def stop(self) -> None:
        """Ask `run` to return; deliveries in flight stay unacknowledged (sent again after a restart)."""
        self._stopping.set()

    async def run(self) -> None:
        """One loop per hook until `stop()`."""
        if not self._hooks:
            return
        await asyncio.gather(*(self._run_hook(hook) for hook in self._hooks))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _run_hook(self, hook: _Hook) -> None:
        limit = hook.settings.concurrency
        connector = aiohttp.TCPConnector(limit=limit)
        timeout = aiohttp.ClientTimeout(total=hook.settings.timeout_seconds)
        own_after: str | None = "0"  # our earlier life's unacknowledged entries, then None
        claim_cursor, next_claim = "0-0", 0.0
        idle_ms = int(self._settings.claim_idle_seconds * 1000)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         headers={"User-Agent": f"clever-gateway/{VERSION}"}) as session:
            try:
                while not self._stopping.is_set():
                    free = limit - len(hook.in_flight)
                    if free <= 0:
                        hook.slot_freed.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(hook.slot_freed.wait(), timeout=_READ_BLOCK_MS / 1000)
                        continue
                    try:
                        entries: list[Entry] = []
                        if own_after is not None:
                            entries = await self._state.phases.read(hook.group, self._consumer, count=free,
                                                                    after=own_after)
                            own_after = entries[-1][0] if entries else None
                        elif time.monotonic() >= next_claim:
                            claim_cursor, entries = await self._state.phases.claim_stale(
                                hook.group, self._consumer, min_idle_ms=idle_ms, count=free, cursor=claim_cursor)
                            if claim_cursor == "0-0":
                                next_claim = time.monotonic() + self._settings.claim_idle_seconds / 4
                        if not entries:
                            entries = await self._state.phases.read(hook.group, self._consumer, count=free,
                                                                    block_ms=_READ_BLOCK_MS)
                    except StoreUnavailable as e:
                        if "NOGROUP" in repr(e.__cause__):
                            # Redis lost the group (and the stream with it): begin again from what is there.
                            with contextlib.suppress(StoreUnavailable):
                                await self._state.phases.ensure(hook.group, start="0")
                        await self._pause(_STORE_RETRY_SECONDS)
                        continue
                    for entry_id, fields in entries:
                        if entry_id not in hook.in_flight:
                            task = asyncio.create_task(self._deliver(session, hook, entry_id, fields),
                                                       name=f"webhook-{hook.name}-{entry_id}")
                            hook.in_flight[entry_id] = task
                            task.add_done_callback(self._on_done(hook, entry_id))
            finally:
                tasks = list(hook.in_flight.values())
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _on_done(hook: _Hook, entry_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            hook.in_flight.pop(entry_id, None)
            hook.slot_freed.set()

        return done

    def _wanted(self, hook: _Hook, fields: dict[str, str]) -> bool:
        wanted = hook.settings
        return bool(fields.get("id")) and (
            (wanted.phases is None or fields.get("phase") in wanted.phases)
            and (wanted.clusters is None or fields.get("cluster") in wanted.clusters)
            and (wanted.partitions is None or fields.get("partition") in wanted.partitions))

    async def _deliver(self, session: aiohttp.ClientSession, hook: _Hook, entry_id: str,
                       fields: dict[str, str]) -> None:
        try:
            if self._wanted(hook, fields):
                await self._attempts(session, hook, entry_id, fields)
            await self._state.phases.ack(hook.group, entry_id)
        except StoreUnavailable:
            # Not acknowledged: it stays pending for this consumer, and is read again after a restart or
            # taken over by another replica once idle.
            log.warning("webhook entry left pending: redis unavailable", hook=hook.name, entry=entry_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # one odd entry must not stop the hook
            log.exception("webhook delivery crashed", hook=hook.name, entry=entry_id)

    async def _attempts(self, session: aiohttp.ClientSession, hook: _Hook, entry_id: str,
                        fields: dict[str, str]) -> None:
        """Deliver until a 2xx or the change is too old (then dropped: logged and counted)."""
        body = event_body(fields)
        headers = {"Content-Type": "application/json", "X-Clever-Signature": signature(hook.secret, body),
                   "X-Clever-Delivery": entry_id, "X-Clever-Event": "phase"}
        appended = _entry_time(entry_id)
        max_age = self._settings.max_age_seconds
        attempt = 0
        while True:
            if attempt:
                await self._state.phases.touch(hook.group, self._consumer, [entry_id])
            outcome = await self._post(session, hook, body, headers)
            if outcome is None:
                self._count(hook, "delivered")
                return
            self._count(hook, "failed")
            delay = min(self._settings.retry_max_seconds, self._settings.retry_initial_seconds * 2 ** attempt)
            delay *= 0.5 + random.random() / 2  # jitter: receivers coming back are not hit by every replica at once
            if self._clock() + delay - appended > max_age:
                log.warning("webhook delivery given up: too old", hook=hook.name, entry=entry_id,
                            job=fields.get("id"), phase=fields.get("phase"), attempts=attempt + 1, lastError=outcome,
                            maxAgeSeconds=max_age)
                if self._metrics is not None:
                    self._metrics.webhook_dropped.labels(hook.name).inc()
                return
            log.info("webhook delivery failed, retrying", hook=hook.name, entry=entry_id, error=outcome,
                     delaySeconds=round(delay, 2))
            await asyncio.sleep(delay)
            attempt += 1

    @staticmethod
    async def _post(session: aiohttp.ClientSession, hook: _Hook, body: bytes,
                    headers: dict[str, str]) -> str | None:
        """One attempt; None when the receiver took it (2xx), else what went wrong."""
        try:
            async with session.post(hook.settings.url, data=body, headers=headers, allow_redirects=False) as answer:
                await answer.read()
                return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return type(e).__name__

    def _count(self, hook: _Hook, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(hook.name, outcome).inc()

