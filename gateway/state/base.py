"""The Redis connection and the error boundary every state module shares.

Contract:
- Every Redis failure leaves this package as `gateway.errors.StoreUnavailable` (503), chained from
  redis-py's exception (also an AttributeError and the like raised inside redis-py itself, as its
  cluster client does in a failover race); a busy connection pool waits (`redis.poolWaitSeconds`)
  instead of failing.
- Every operation passes `_guard` under a name (a literal of the calling module: bounded), which
  `Topology.instrument` wraps (the app times and traces them there).
- Values are bytes (the read model is served as stored); modules decode the few text values they need.
- Every check-then-write is one Lua script (`Lua`) on keys of one hash tag. Redis runs a script
  atomically in every mode (standalone, Sentinel, Cluster: redis-py's WATCH/MULTI is limited in
  cluster mode, a script is not), and fakeredis runs them too (lupa) for the demo. Scripts go by SHA
  (EVALSHA); a server that does not know one (restarted, failed over) gets it loaded and the call is
  repeated once, which is why every script here is safe to run twice.
- Writes whose loss a client would notice (`durable=True`) are followed on the same connection by
  `WAIT <Durability.replicas> <Durability.timeout_ms>` (Sentinel and Cluster modes): the answer is sent
  once a replica holds the write, so a failover does not lose it. Fewer replicas within the timeout
  (one is down or behind) is logged and the write stands: refusing every write while a replica is away
  would turn a replica outage into a gateway outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import structlog
from redis import asyncio as redis_asyncio
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from gateway.errors import StoreUnavailable
from gateway.state.keys import Keys

log = structlog.get_logger(__name__)

RedisClient: TypeAlias = "redis_asyncio.Redis | RedisCluster"
AnyPipeline: TypeAlias = "Pipeline | ClusterPipeline"


def text(value: Any) -> str | None:
    """A Redis reply as text (None stays None)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Lua:
    """A Lua script, run by SHA (see module docstring)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def queue(self, pipe: AnyPipeline, keys: Sequence[str], args: Sequence[Any] = ()) -> None:
        """Add a call to a pipeline. (`execute_command`, not `evalsha`: redis-py refuses the latter in a
        cluster pipeline although the cluster routes it by its keys like any other command.)"""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


@dataclass(frozen=True, slots=True)
class Durability:
    """How acknowledged writes wait for replication: `replicas` (0 = no WAIT) within `timeout_ms`."""

    replicas: int = 0
    timeout_ms: int = 500


class PoolLimiter:
    """At most `size` Redis calls in flight, the others wait up to `wait_seconds` (then 503).

    Needed in cluster mode only: redis-py's cluster client raises MaxConnectionsError when a node's
    connections are all busy, where the standalone and Sentinel pools (BlockingConnectionPool) wait."""

    def __init__(self, size: int, *, wait_seconds: float) -> None:
        self._slots = asyncio.Semaphore(size)
        self._wait = wait_seconds

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the block."""
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError as e:
            raise StoreUnavailable("the gateway's store (Redis) is busy; retry in a moment") from e
        try:
            yield
        finally:
            self._slots.release()


# Wraps every Redis operation by name (`RedisPart._guard`): the app times and traces them with it
# (`gateway.metrics.Metrics.redis_operation`); an exception leaving it is the operation failing.
Instrument: TypeAlias = "Callable[[str], AbstractContextManager[object]]"


@dataclass(frozen=True, slots=True)
class Topology:
    """What the state modules need to know about the Redis they talk to, and how their calls are observed."""

    durability: Durability = Durability()
    limiter: PoolLimiter | None = None
    instrument: Instrument | None = None


# What a failing Redis raises (the store is unavailable), and what redis-py's own state raises when it trips
# over itself (seen during a cluster failover: a connection closed by one task while another writes on it):
# the store failed, not the request, when it comes from inside the client (`_raised_in_redis_client`).
_STORE_FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)
_CLIENT_SLIPS = (AttributeError, TypeError, KeyError, IndexError)
_CAUGHT = (*_STORE_FAILURES, *_CLIENT_SLIPS)
_NO_INSTRUMENT = nullcontext()


def _store_failed(error: BaseException) -> bool:
    """Whether `error` is the store failing (else it is the caller's own bug, raised as is)."""
    return isinstance(error, _STORE_FAILURES) or _raised_in_redis_client(error)


def _unavailable(what: str, error: BaseException) -> StoreUnavailable:
    log.warning("redis call failed", operation=what, error=type(error).__name__)
    return StoreUnavailable("the gateway's store (Redis) is unavailable")


class RedisPart:
    """One concern's view of the shared Redis client: keys, clock, error boundary, scripts, WAIT."""

    def __init__(self, redis: RedisClient, keys: Keys, *, clock: Callable[[], float] = time.time,
                 topology: Topology | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self._clock = clock
        self._topology = topology or Topology()

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        instrument = self._topology.instrument
        # Outermost: the time a busy pool makes the operation wait is part of its latency.
        observed: AbstractContextManager[object] = instrument(what) if instrument is not None else nullcontext()
        limit: AbstractAsyncContextManager[None] = (
            self._topology.limiter.slot() if self._topology.limiter is not None else nullcontext())
        with observed:
            async with limit:
                try:
                    yield
                except _CAUGHT as e:
                    if not _store_failed(e):
                        raise
                    raise _unavailable(what, e) from e

    async def _call(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One Redis call inside the error boundary (`_guard`, spelled out here without a generator: this is
        every cached read's path)."""
        topology = self._topology
        if topology.limiter is not None:
            async with self._guard(what):
                return await call()
        with topology.instrument(what) if topology.instrument is not None else _NO_INSTRUMENT:
            try:
                return await call()
            except _CAUGHT as e:
                if not _store_failed(e):
                    raise
                raise _unavailable(what, e) from e

    async def _script(self, what: str, script: Lua, keys: Sequence[str], args: Sequence[Any] = (), *,
                      durable: bool = False) -> Any:
        """Run one script (with WAIT afterwards when `durable`); its answer."""
        results = await self._pipelined(what, lambda pipe: script.queue(pipe, keys, args), scripts=(script,),
                                        durable_key=keys[0] if durable else None)
        return results[0]

    async def _pipelined(self, what: str, build: Callable[[AnyPipeline], object], *, scripts: Sequence[Lua] = (),
                         durable_key: str | None = None) -> list[Any]:
        """Run the commands `build` queues as one pipeline (not a transaction: each script is atomic on its
        own) and return their answers. With `durable_key`, WAIT follows on the connection of that key's
        node (its answer is checked here, not returned)."""
        wait = self._topology.durability if durable_key is not None else None
        async with self._guard(what):
            for attempt in (1, 2):
                target = await self._node_of(durable_key) if wait is not None and wait.replicas > 0 else None
                async with self.redis.pipeline(transaction=False) as pipe:
                    build(pipe)
                    if wait is not None and wait.replicas > 0:
                        extra = {"target_nodes": target} if target is not None else {}
                        pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms, **extra)
                    try:
                        results: list[Any] = await pipe.execute()
                    except NoScriptError:
                        if attempt == 2:
                            raise
                        for script in scripts:
                            await self.redis.script_load(script.source)
                        continue
                if wait is not None and wait.replicas > 0:
                    acknowledged = int(results.pop())
                    if acknowledged < wait.replicas:
                        log.warning("write not yet on a replica after WAIT; it stands", operation=what,
                                    replicas=acknowledged, wanted=wait.replicas, timeoutMs=wait.timeout_ms)
                return results
        raise AssertionError("unreachable")  # pragma: no cover

    async def _node_of(self, key: str | None) -> Any:
        """The cluster node serving `key` (None outside cluster mode): WAIT must run where the write ran."""
        if key is None or not isinstance(self.redis, RedisCluster):
            return None
        if self.redis._initialize:  # redis-py has no public "initialize if needed"
            await self.redis.initialize()
        return self.redis.get_node_from_key(key)

    async def _compare_and_delete(self, key: str, expected: str) -> bool:
        return bool(await self._script("compare-and-delete", COMPARE_AND_DELETE, [key], [expected]))

    async def _compare_and_expire(self, key: str, expected: str, ttl_ms: int, *, what: str) -> bool:
        return bool(await self._script(what, COMPARE_AND_EXPIRE, [key], [expected, ttl_ms]))


def _raised_in_redis_client(error: BaseException) -> bool:
    """Whether the innermost frame of `error`'s traceback is redis-py's code."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("redis.")


# KEYS[1]; ARGV: expected value. Deletes the key only while it holds that value.
COMPARE_AND_DELETE = Lua("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

# KEYS[1]; ARGV: expected value, ttl (ms). Extends the key's time to live only while it holds that value.
COMPARE_AND_EXPIRE = Lua("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
""")
