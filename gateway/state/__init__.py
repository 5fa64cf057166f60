"""The gateway's state in Redis, by concern: jobs and their read model, the watches' bookkeeping, leases,
the outbox stream, write counters. Everything can be rebuilt from the clusters (DESIGN §3).

Contract: `State.from_settings(settings.redis)` connects (nothing is sent until the first command);
`state.jobs` (`gateway.state.jobs.JobStore`), `state.watch`, `state.leases`, `state.outbox`,
`state.counters`, `state.partitions` (`gateway.state.partitions.PartitionRegistry`: the partitions of
each cluster that ever had a job), `state.phases` (`gateway.state.phases.PhaseStream`: phase changes for
the webhooks) share one client and its connections; `state.close()`.

`redis.mode` (`connect`):
- `standalone`: redis-py's client on a `BlockingConnectionPool`.
- `sentinel`: the master the sentinels name for `redis.sentinelService`, on a blocking Sentinel pool:
  each new connection asks the sentinels where the master is, so after a failover the gateway follows
  without a restart (the calls that were in flight on the old master fail with 503 and may be retried).
- `cluster`: redis-py's cluster client (slots learned from any node, MOVED followed, topology re-read
  after a node fails). Every multi-key step stays in one slot (`gateway.state.keys`); nothing scans.
In every mode a request that finds every connection busy waits up to `redis.poolWaitSeconds` (the
cluster client would refuse: `gateway.state.base.PoolLimiter` makes it wait), so load makes requests
slower, not failed; only a Redis that does not answer gives 503 (`StoreUnavailable`). Credentials come
from the URL, `username`/`password` or `passwordFile`; `rediss://` is TLS (`tlsCaFile`). In sentinel and
cluster modes acknowledged writes WAIT for `redis.waitReplicas` replicas (`gateway.state.base`).
`redis.url: embedded` is an in-process fakeredis (the demo). Key names and hash tags: `gateway.state.keys`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis import asyncio as redis_asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from gateway.config import EMBEDDED_REDIS, RedisSettings
from gateway.state.base import Durability, Instrument, PoolLimiter, RedisClient, RedisPart, Topology
from gateway.state.counters import WriteCounters
from gateway.state.jobs import JobBusy, JobChanged, JobFence, JobStore, StatusUpdate
from gateway.state.keys import Keys
from gateway.state.leases import Leases
from gateway.state.outbox import OutboxStream
from gateway.state.partitions import PartitionRegistry
from gateway.state.phases import PhaseStream
from gateway.state.views import JobRecord, StoredJob
from gateway.state.watch import WatchState


class State(RedisPart):
    """All of the gateway's Redis state (see module docstring)."""

    def __init__(self, redis: RedisClient, keys: Keys, *, clock: Callable[[], float] = time.time,
                 topology: Topology | None = None) -> None:
        super().__init__(redis, keys, clock=clock, topology=topology)
        self.jobs = JobStore(redis, keys, clock=clock, topology=topology)
        self.watch = WatchState(redis, keys, clock=clock, topology=topology)
        self.leases = Leases(redis, keys, clock=clock, topology=topology)
        self.outbox = OutboxStream(redis, keys, clock=clock, topology=topology)
        self.counters = WriteCounters(redis, keys, clock=clock, topology=topology)
        self.partitions = PartitionRegistry(redis, keys, clock=clock, topology=topology)
        self.phases = PhaseStream(redis, keys, clock=clock, topology=topology)

    @classmethod
    def from_settings(cls, settings: RedisSettings, *, clock: Callable[[], float] = time.time,
                      instrument: Instrument | None = None) -> State:
        """Connect per settings (`embedded` → in-process fakeredis for the demo); `instrument` wraps every
        operation (`gateway.state.base.Topology`)."""
        topology = dataclasses.replace(topology_for(settings), instrument=instrument)
        return cls(connect(settings), Keys(settings.key_prefix), clock=clock, topology=topology)

    async def close(self) -> None:
        """Close the client and its connection pool."""
        try:
            await self.redis.aclose()
        except (RedisError, RedisClusterException, OSError):
            pass


class WaitingPool(BlockingConnectionPool):
    """redis-py's pool that waits for a free connection, without the deprecation check redis-py 8 wraps
    around `get_connection`: it binds the call's arguments on every Redis command (a few per cent of a
    cached read), and nothing here passes any."""

    get_connection = BlockingConnectionPool.get_connection.__wrapped__  # type: ignore[attr-defined]


class BlockingSentinelConnectionPool(SentinelConnectionPool, WaitingPool):
    """Sentinel's master pool that waits for a free connection (redis-py's own refuses when all are busy)."""


def connect(settings: RedisSettings) -> RedisClient:
    """A client for the configured Redis (values as bytes); see the module docstring for the modes."""
    if settings.url == EMBEDDED_REDIS:
        import fakeredis  # only the demo needs it

        return fakeredis.FakeAsyncRedis(decode_responses=False)
    url, options = _url_and_options(settings)
    tls = urlsplit(url).scheme == "rediss"
    if settings.mode == "cluster":
        return RedisCluster.from_url(url, max_connections=settings.max_connections, ssl=tls, **options)
    if settings.mode == "sentinel":
        sentinel_options: dict[str, Any] = {k: v for k, v in options.items() if k.startswith(("socket_", "ssl_"))}
        # No retries per sentinel: redis-py would retry an unreachable one for seconds (with backoff)
        # before asking the next, and every new connection asks.
        sentinel_options |= {"ssl": tls, "retry": Retry(NoBackoff(), 0)}
        sentinel_password = settings.secret(settings.sentinel_password, settings.sentinel_password_file,
                                            what="sentinelPasswordFile")
        if sentinel_password is not None:
            sentinel_options["password"] = sentinel_password
        if settings.sentinel_username is not None:
            sentinel_options["username"] = settings.sentinel_username
        sentinel = Sentinel(settings.sentinel_addresses(), sentinel_kwargs=sentinel_options, db=_url_db(url),
                            ssl=tls, **options)
        client: RedisClient = sentinel.master_for(
            settings.sentinel_service, connection_pool_class=BlockingSentinelConnectionPool,
            max_connections=settings.max_connections, timeout=settings.pool_wait_seconds)
        return client
    pool = WaitingPool.from_url(url, max_connections=settings.max_connections,
                                timeout=settings.pool_wait_seconds, **options)
    return redis_asyncio.Redis(connection_pool=pool)


def topology_for(settings: RedisSettings) -> Topology:
    """WAIT and pool-limit settings for the configured mode."""
    replicas = settings.wait_replicas if settings.mode in ("sentinel", "cluster") else 0
    limiter = (PoolLimiter(settings.max_connections, wait_seconds=settings.pool_wait_seconds)
               if settings.mode == "cluster" else None)
    return Topology(durability=Durability(replicas=replicas, timeout_ms=settings.wait_timeout_ms), limiter=limiter)


def _url_and_options(settings: RedisSettings) -> tuple[str, dict[str, Any]]:
    """The URL without credentials, and the keyword arguments of every connection: timeouts, credentials
    (the settings' over the URL's: redis-py would let the URL's win), the TLS trust."""
    parts = urlsplit(settings.url)
    options: dict[str, Any] = {"socket_timeout": settings.socket_timeout_seconds,
                               "socket_connect_timeout": settings.socket_timeout_seconds}
    username = settings.username if settings.username is not None else (
        unquote(parts.username) if parts.username else None)
    password = settings.secret(settings.password, settings.password_file, what="passwordFile")
    if password is None and parts.password is not None:
        password = unquote(parts.password)
    if username:
        options["username"] = username
    if password is not None:
        options["password"] = password
    if parts.scheme == "rediss" and settings.tls_ca_file is not None:
        options["ssl_ca_certs"] = settings.tls_ca_file
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), options


def _url_db(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


__all__ = ["JobBusy", "JobChanged", "JobFence", "JobRecord", "JobStore", "Keys", "State", "StatusUpdate",
           "StoredJob", "Topology", "connect", "topology_for"]
