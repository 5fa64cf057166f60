"""Authorization decisions: which jobs a principal may touch, which partitions it may use, and how the
gateway speaks to a cluster as that user.

Contract (the gateway calls exactly these):
- `can_access_job(principal, owner=, cluster=, partition=, write=, settings=) -> bool`: the owner and admins
  may read and write; `auth.partitionRead` rules let members of listed groups (or everyone, `shared`)
  read — never write — other users' jobs in matching partitions. The gateway turns False into 404 so
  a job's existence is not revealed.
- `list_owner_filter(principal, cluster=, partition=, requested_user=, settings=) -> str | None`: the owner
  whose jobs a list returns, None for every owner. `requested_user` is `?user=`; `*` asks for all.
- `PartitionAccess(settings, reviewers=, redis=, key_prefix=).check(principal, cluster=, partition=, verb=)`:
  raises `Forbidden` unless the principal may use the partition (per cluster: `open`, `static` group map,
  or `sar`: a SubjectAccessReview on the cluster, answers cached in Redis for `cacheSeconds`).
  Admins may use every partition.
- `SubjectAccessReviewer`: implemented by the gateway's ClusterClient (one per cluster).
- `impersonation_headers(principal) -> CIMultiDict[str]`: Impersonate-User plus one Impersonate-Group
  per group (a plain dict cannot repeat a header; Kubernetes reads repeated Impersonate-Group headers);
  `system:` groups are dropped and `system:` users refused. `impersonates(settings, cluster=)` says
  whether a cluster is configured for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import structlog
from multidict import CIMultiDict
from redis.exceptions import RedisClusterException, RedisError

from gateway.auth import Principal
from gateway.auth.identity import user_name
from gateway.auth.settings import WILDCARD, AuthSettings, PartitionAccessSettings
from gateway.errors import Forbidden

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

log = structlog.get_logger(__name__)

ALL_OWNERS = "*"

# The SubjectAccessReview the default check asks: "may U in G <verb> tfjobs.kubeflow.org in namespace P".
DEFAULT_SAR_GROUP = "kubeflow.org"
DEFAULT_SAR_RESOURCE = "tfjobs"


def may_read_partition(principal: Principal, *, cluster: str, partition: str, settings: AuthSettings) -> bool:
    """Whether a `partitionRead` rule lets this principal read every job in (cluster, partition)."""
    for rule in settings.partitionRead:
        if rule.matches(cluster=cluster, partition=partition) and (
                rule.shared or not principal.groups.isdisjoint(rule.groups)):
            return True
    return False


def can_access_job(principal: Principal, *, owner: str, cluster: str, partition: str, write: bool,
                   settings: AuthSettings) -> bool:
    """Whether `principal` may read (write=False) or change/delete (write=True) a job owned by `owner`."""
    if principal.is_admin or principal.user == owner:
        return True
    if write:
        return False
    return may_read_partition(principal, cluster=cluster, partition=partition, settings=settings)


def list_owner_filter(principal: Principal, *, cluster: str, partition: str, requested_user: str | None,
                      settings: AuthSettings) -> str | None:
    """The owner a job list is restricted to (None: all owners); `Forbidden` when `?user=` is not allowed.

    Plain users list their own jobs; partition readers may also ask for another user or `*`; admins get
    all jobs by default (their own when acting on behalf of a user via X-User), or `?user=`.
    """
    requested = requested_user.strip(" ") if requested_user else None
    if requested and requested != ALL_OWNERS:
        requested = user_name(requested, source="?user=")
    if principal.is_admin:
        if requested:
            return None if requested == ALL_OWNERS else requested
        return principal.user if principal.actor is not None else None
    if not requested or requested == principal.user:
        return principal.user
    if may_read_partition(principal, cluster=cluster, partition=partition, settings=settings):
        return None if requested == ALL_OWNERS else requested
    raise Forbidden("you may list only your own jobs in this partition")


class SubjectAccessReviewer(Protocol):
    """Asks a cluster a SubjectAccessReview (`POST /apis/authorization.k8s.io/v1/subjectaccessreviews`)."""

    async def review(self, *, user: str, groups: Sequence[str], namespace: str, verb: str, group: str,
                     resource: str) -> bool:
        """True when `status.allowed` is true. Raise a `gateway.kube.errors.KubeError` when the cluster cannot
        answer (the middleware maps it to the legacy answer)."""
        ...


class _LocalTTLCache:
    """Fallback SAR cache when no Redis is given (tests, single-process demo). Bounded."""

    def __init__(self, *, capacity: int = 10_000, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        self._capacity = capacity
        self._monotonic = monotonic

    def get(self, key: str) -> bool | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, allowed: bool, ttl: float) -> None:
        self._entries[key] = (self._monotonic() + ttl, allowed)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


class PartitionAccess:
    """Decides whether a principal may use a partition of a cluster (see module docstring)."""

    def __init__(self, settings: AuthSettings, *, reviewers: Mapping[str, SubjectAccessReviewer] | None = None,
                 redis: Redis | RedisCluster | None = None, key_prefix: str = "",
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._reviewers: Mapping[str, SubjectAccessReviewer] = reviewers if reviewers is not None else {}
        self._redis = redis
        self._key_prefix = key_prefix
        self._local = _LocalTTLCache(monotonic=monotonic)

    async def check(self, principal: Principal, *, cluster: str, partition: str, verb: str,
                    namespace: str | None = None, group: str = DEFAULT_SAR_GROUP,
                    resource: str = DEFAULT_SAR_RESOURCE) -> None:
        """Raise `Forbidden` unless `principal` may `verb` jobs in `partition` of `cluster`.

        `namespace` is the partition's namespace on the cluster (default: the partition name); `group` and
        `resource` name the job resource for the SubjectAccessReview (Volcano: `batch.volcano.sh`, `jobs`).
        """
        if principal.is_admin:
            return
        access = self._settings.access_for(cluster)
        if access.mode == "open":
            return
        if access.mode == "static":
            allowed = _static_allows(access, principal=principal, partition=partition)
        else:
            allowed = await self._review(access, principal=principal, cluster=cluster,
                                         namespace=namespace or partition, verb=verb, group=group,
                                         resource=resource)
        if not allowed:
            log.info("partition access denied", user=principal.user, cluster=cluster, partition=partition,
                     verb=verb, mode=access.mode)
            raise Forbidden(f"you may not use partition {partition!r} of cluster {cluster!r}")

    async def _review(self, access: PartitionAccessSettings, *, principal: Principal, cluster: str,
                      namespace: str, verb: str, group: str, resource: str) -> bool:
        reviewer = self._reviewers.get(cluster)
        if reviewer is None:
            # Fail closed: a cluster configured for SAR without a way to ask it must not become open.
            log.error("no SubjectAccessReview client for cluster", cluster=cluster)
            return False
        groups = sorted(principal.groups)
        key = self._cache_key(cluster=cluster, user=principal.user, groups=groups, namespace=namespace,
                              verb=verb, group=group, resource=resource)
        ttl = access.cacheSeconds
        if ttl > 0:
            cached = await self._cache_get(key)
            if cached is not None:
                return cached
        allowed = await reviewer.review(user=principal.user, groups=groups, namespace=namespace, verb=verb,
                                        group=group, resource=resource)
        if ttl > 0:
            await self._cache_put(key, allowed, ttl)
        return allowed

    def _cache_key(self, *, cluster: str, user: str, groups: list[str], namespace: str, verb: str, group: str,
                   resource: str) -> str:
        # Hashed: user and group names stay out of Redis key listings, and the key length stays bounded.
        material = json.dumps([cluster, user, groups, namespace, verb, group, resource], separators=(",", ":"))
        return f"{self._key_prefix}auth:sar:{hashlib.sha256(material.encode()).hexdigest()}"

    async def _cache_get(self, key: str) -> bool | None:
        if self._redis is None:
            return self._local.get(key)
        try:
            value = await self._redis.get(key)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as e:  # a Redis failure: a cache miss
            log.warning("sar cache unavailable", error=type(e).__name__)
            return None
        if value is None:
            return None
        return value in (b"1", "1")

    async def _cache_put(self, key: str, allowed: bool, ttl: float) -> None:
        if self._redis is None:
            self._local.put(key, allowed, ttl)
            return
        try:
            await self._redis.set(key, "1" if allowed else "0", px=max(1, math.ceil(ttl * 1000)))
        except (RedisError, RedisClusterException, OSError, TimeoutError) as e:  # a Redis failure: a cache miss
            log.warning("sar cache unavailable", error=type(e).__name__)


def _static_allows(access: PartitionAccessSettings, *, principal: Principal, partition: str) -> bool:
    for group in principal.groups:
        partitions = access.groups.get(group)
        if partitions and (WILDCARD in partitions or partition in partitions):
            return True
    return False


def impersonates(settings: AuthSettings, *, cluster: str) -> bool:
    """Whether the gateway calls `cluster` as the user (Impersonate-* headers)."""
    return settings.access_for(cluster).impersonate


# Kubernetes reserves the `system:` prefix for its own users and groups (`system:masters` is cluster-admin);
# an identity provider that lets users name their groups must not turn that into cluster-admin.
_RESERVED_PREFIX = "system:"


def impersonation_headers(principal: Principal) -> CIMultiDict[str]:
    """Headers that make the Kubernetes API act as `principal`; extend (not update) a request's headers.

    `system:` groups are never forwarded; a `system:` user name is refused with `Forbidden`.
    """
    if principal.user.startswith(_RESERVED_PREFIX):
        log.warning("impersonation refused for reserved user name", user=principal.user)
        raise Forbidden("this user name cannot be used on the cluster")
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add("Impersonate-User", principal.user)
    for group in sorted(principal.groups):
        if not group.startswith(_RESERVED_PREFIX):
            headers.add("Impersonate-Group", group)
    return headers
