"""Shared fixtures: a unique Redis key prefix per test, KubeSim over HTTPS, and a gateway wired to both.

- `redis_prefix`: `test:<uuid>:`; every key under it is deleted after the test (never FLUSHDB).
- `redis_client`: a redis.asyncio client on 127.0.0.1:6379 (decode_responses=True).
- `kubesim`: a started `kubesim.testing.KubeSim` (namespaces `default` and `clever`, time_scale 0.01).
- `gateway_settings_factory(**overrides)`: Settings for one cluster `c1` on that KubeSim, auth none,
  the test prefix, a runtime catalog covering the seed's runtimes; overrides are deep-merged.
- `gateway`: a `Gateway` harness (aiohttp test client on a real port + app + sim + prefix) with helpers.
- `redis_mode` (a test decorated with `@IN_EVERY_MODE` runs once per mode): a `RedisMode`, i.e. the
  gateway's `redis` settings for standalone (the shared server), sentinel (`sentinel_set`) or cluster
  (`redis_cluster`), and a client of it for the test. The Sentinel set and the Redis Cluster are
  session-scoped processes of the installed redis-server (`tests.redis_servers`), started on first use.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis import asyncio as redis_asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from gateway.config import Settings, load_settings
from gateway.state.keys import Keys
from tests.redis_servers import SERVICE, ClusterSet, SentinelSet

REDIS_URL = "redis://127.0.0.1:6379/0"
CLUSTER = "c1"
PARTITION = "clever"
RUNTIMES: dict[str, dict[str, Any]] = {
    "Python_2.7+Tensorflow_1.2.1": {"image": "tensorflow/tensorflow:1.2.1",
                                    "gpuImage": "tensorflow/tensorflow:1.2.1-gpu", "command": ["python2"]},
    "Python_3.11+Tensorflow_2.15.0": {"image": "tensorflow/tensorflow:2.15.0",
                                      "gpuImage": "tensorflow/tensorflow:2.15.0-gpu", "command": ["python3"]},
}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in recursively (dicts merged, anything else replaced)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_client(redis_prefix: str) -> AsyncIterator[redis_asyncio.Redis]:
    """A client of the real Redis; deletes every key under the test's prefix afterwards."""
    client = redis_asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=redis_prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def prefix_keys(client: redis_asyncio.Redis, prefix: str) -> set[str]:
    """Every key under `prefix` (in a Redis Cluster redis-py scans every master)."""
    return {k async for k in client.scan_iter(match=prefix + "*", count=1000)}


# ----- Redis modes

MODES = ("standalone", "sentinel", "cluster")
IN_EVERY_MODE = pytest.mark.parametrize("redis_mode", MODES, indirect=True)


@pytest.fixture(scope="session")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """One master, one replica, three sentinels, for the whole session."""
    servers = SentinelSet(Path(tmp_path_factory.mktemp("sentinel")))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    """A three-master Redis Cluster with a replica per master, for the whole session."""
    servers = ClusterSet(Path(tmp_path_factory.mktemp("cluster")))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@dataclass
class RedisMode:
    """One Redis topology as a test sees it: the gateway's settings and a client (text values)."""

    name: str
    settings: dict[str, Any]
    client: Any  # redis_asyncio.Redis or RedisCluster, decode_responses=True
    sentinel: Sentinel | None = None

    async def close(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            await self.sentinel.aclose()

    async def flush(self) -> None:
        """Lose everything (FLUSHALL on every master): only for servers this session started."""
        if isinstance(self.client, RedisCluster):
            await self.client.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            await self.client.flushall()


def mode_of(name: str, settings: dict[str, Any]) -> RedisMode:
    """The topology that `settings` (the gateway's redis section) describes, with a text client of it."""
    if name == "cluster":
        return RedisMode(name, settings, RedisCluster.from_url(settings["url"], decode_responses=True))
    if name == "sentinel":
        sentinels = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in settings["sentinels"]]
        sentinel = Sentinel(sentinels, socket_timeout=5)
        return RedisMode(name, settings, sentinel.master_for(SERVICE, decode_responses=True), sentinel)
    return RedisMode(name, settings, redis_asyncio.Redis.from_url(settings["url"], decode_responses=True))


@pytest.fixture
async def redis_mode(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[RedisMode]:
    """The Redis of the mode the test is parametrized with (see module docstring); keys under the test's
    prefix are deleted afterwards."""
    name = getattr(request, "param", "standalone")
    if name == "sentinel":
        settings = request.getfixturevalue("sentinel_set").settings()
    elif name == "cluster":
        settings = request.getfixturevalue("redis_cluster").settings()
    else:
        settings = {"url": REDIS_URL, "mode": "standalone"}
    mode = mode_of(name, settings)
    try:
        yield mode
    finally:
        try:
            for key in [k async for k in mode.client.scan_iter(match=redis_prefix + "*", count=1000)]:
                await mode.client.delete(key)
        finally:
            await mode.close()


@pytest.fixture
async def kubesim() -> AsyncIterator[Any]:
    """A running KubeSim over HTTPS."""
    from kubesim.testing import KubeSim

    async with KubeSim(namespaces=("default", PARTITION), time_scale=0.01) as sim:
        yield sim


@pytest.fixture
def gateway_settings_factory(kubesim: Any, redis_prefix: str) -> Callable[..., Settings]:
    """Build gateway Settings on the test's KubeSim and prefix; keyword overrides are deep-merged."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "replicaId": f"test-{uuid.uuid4().hex[:8]}",  # several gateways of one test are several replicas
            "listen": {"host": "127.0.0.1", "port": 0},
            "redis": {"url": REDIS_URL, "keyPrefix": redis_prefix},
            "auth": {"mode": "none"},
            "clusters": [{"id": CLUSTER, "server": kubesim.url, "token": kubesim.token, "caFile": kubesim.ca_file,
                          "backend": "training-operator", "runtimes": RUNTIMES, "requestTimeoutSeconds": 5}],
            "retry": {"attempts": 2, "initialDelaySeconds": 0.01, "maxDelaySeconds": 0.05},
            "limits": {"statusStalenessSeconds": 0},
            "sync": {"relistBackoffSeconds": 0.05, "relistBackoffMaxSeconds": 0.2, "leaseSeconds": 1.5,
                     "outboxRetrySeconds": 0.05, "fallbackAfterSeconds": 5},
        }
        clusters_override = overrides.pop("cluster", None)
        data = deep_merge(base, overrides)
        if clusters_override:
            data["clusters"][0] = deep_merge(data["clusters"][0], clusters_override)
        return load_settings(environ={}, base=data)

    return build


@dataclass
class Gateway:
    """A running gateway under test and what it talks to."""

    client: TestClient
    app: web.Application
    sim: Any
    prefix: str
    redis: redis_asyncio.Redis

    def jobs_url(self, partition: str = PARTITION, *, version: str = "v1alpha1", kind: str = "tfjobs",
                 cluster: str = CLUSTER) -> str:
        """The collection path."""
        return f"/api/{version}/clusters/{cluster}/partitions/{partition}/{kind}"

    @property
    def key_names(self) -> Keys:
        """The gateway's key names under this test's prefix."""
        return Keys(self.prefix)

    def job_key(self, job_id: str, *, partition: str = PARTITION, cluster: str = CLUSTER) -> str:
        """The Redis hash of one job."""
        return self.key_names.job(cluster, partition, job_id)

    async def outbox_depth(self) -> int:
        """Entries in the outbox stream."""
        key = self.key_names.outbox
        return int(await self.redis.xlen(key)) if await self.redis.exists(key) else 0

    async def keys(self) -> set[str]:
        """Every Redis key about jobs (records, indexes, each name claim) plus outbox entries.

        Background bookkeeping (watch lease, heartbeat, resourceVersions, locks, tombstones) is left out:
        it changes by itself.
        """
        found: set[str] = set()
        for key in await prefix_keys(self.redis, self.prefix):
            rest = key[len(self.prefix):]
            tag, _, kind = rest.partition("}:")
            if not tag.startswith("{") or "/" not in tag:
                continue  # not a partition's key
            if kind.startswith(("job:", "idx", "own:")):
                found.add(key)
            elif kind == "names":
                found |= {f"{key}#{name}" for name in await self.redis.hkeys(key)}
        outbox = self.key_names.outbox
        if await self.redis.exists(outbox):
            found |= {f"outbox-entry:{entry_id}" for entry_id, _ in await self.redis.xrange(outbox)}
        return found


async def redis_is_complete(gw: Gateway, cluster: str = CLUSTER) -> bool:
    """The cluster's watch finished its first relist: Redis is known to hold all of the cluster's jobs, so a
    LIST of a partition never used before is answered from Redis even while the cluster is away."""
    from gateway import appkeys

    return await gw.app[appkeys.STATE].watch.generation(cluster) is not None


async def wait_until(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not reached within {timeout}s (last value: {last!r})")


class GatewayTestServer(TestServer):
    """aiohttp's TestServer with the production runner (protocol errors in the legacy shape)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        from gateway.web.server import GatewayRunner

        return GatewayRunner(self.app, **kwargs)


@pytest.fixture
def make_gateway(kubesim: Any, redis_prefix: str, redis_client: redis_asyncio.Redis,
                 gateway_settings_factory: Callable[..., Settings], aiohttp_client: Any) -> Callable[..., Awaitable[Gateway]]:
    """Start a gateway (real port) with settings overrides; stopped at teardown by aiohttp_client.

    `aiohttp_client` comes last so that the gateway stops before KubeSim and the Redis cleanup.
    """
    from gateway.app import create_app, server_options

    async def start(**overrides: Any) -> Gateway:
        settings = gateway_settings_factory(**overrides)
        app = create_app(settings)
        server = GatewayTestServer(app)
        await server.start_server(**server_options(settings))  # the HTTP limits production runs with
        client = await aiohttp_client(server)
        return Gateway(client=client, app=app, sim=kubesim, prefix=redis_prefix, redis=redis_client)

    return start


@pytest.fixture
async def gateway(make_gateway: Callable[..., Awaitable[Gateway]]) -> Gateway:
    """A gateway with default test settings (watch on)."""
    return await make_gateway()
