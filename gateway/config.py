"""The gateway's configuration: one YAML file (DESIGN §6) plus environment overrides.

Contract:
- `load_settings(path=None, *, environ=None) -> Settings`: reads the YAML file named by `path` or by
  `CLEVER_GATEWAY_CONFIG` (no file at all: defaults + environment), applies every
  `CLEVER_GATEWAY__<KEY>__<KEY>...` environment variable on top (list items by index, e.g.
  `CLEVER_GATEWAY__CLUSTERS__0__TOKEN_FILE`; values are read as YAML scalars, so `8080`, `true` and
  JSON lists work), then validates. Any problem raises `ConfigError` whose message names the key path
  (`clusters.0.backend: Input should be 'training-operator', ...`).
- `Settings` is the pydantic-settings root; sections are grouped models, keys are camelCase in YAML
  and snake_case in Python; every field has a default and a unit in its name or docstring.
- `ClusterSettings.profile()` builds the pure `translators.spec.ClusterProfile` for translation.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.auth.settings import AuthSettings
from gateway.web.ui.settings import UiSettings
from translators.spec import Backend, ClusterProfile, Phase, RuntimeImage, Volume

CONFIG_ENV = "CLEVER_GATEWAY_CONFIG"
ENV_PREFIX = "CLEVER_GATEWAY__"
EMBEDDED_REDIS = "embedded"
CLUSTER_ID_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
REPLICA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names every bad key path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              use_attribute_docstrings=True)


class ListenSettings(_Section):
    """Where the HTTP server listens."""

    host: str = "0.0.0.0"
    """Bind address."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port (0: pick a free one)."""
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0)
    """At SIGTERM, requests in flight get this long to finish, seconds (the pod's grace period must be
    longer: deploy/kubernetes budgets preStop pause + this + the background tasks' stop)."""


class RedisSettings(_Section):
    """The shared Redis: records, indexes, status cache, outbox, leases."""

    url: str = "redis://127.0.0.1:6379/0"
    """redis:// or rediss:// (TLS) URL. standalone: the server; cluster: any node (the others are found
    from it); sentinel: only the scheme, credentials and db count (the master comes from `sentinels`).
    `embedded` = in-process fakeredis (demo only: not shared, not durable)."""
    mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    """standalone: one server; sentinel: the master that `sentinels` name for `sentinelService`, followed
    across failovers; cluster: a Redis Cluster (keys are hash-tagged, `gateway.state.keys`)."""
    sentinels: list[str] = Field(default_factory=list)
    """mode sentinel: the sentinels as `host:port`."""
    sentinel_service: str = "mymaster"
    """mode sentinel: the name the sentinels monitor the master under."""
    username: str | None = None
    """ACL user (default: the URL's, else none)."""
    password: str | None = None
    """Password inline (tests, demo; prefer passwordFile). Default: the URL's, else none."""
    password_file: str | None = None
    """File holding the password (a mounted Kubernetes Secret); read at start, surrounding whitespace ignored.
    Like every file the configuration names, `serve` and `serve --check` refuse to start when it cannot be read."""
    sentinel_username: str | None = None
    """mode sentinel: ACL user for the sentinels themselves (default: none)."""
    sentinel_password: str | None = None
    """mode sentinel: password of the sentinels themselves, inline (default: none)."""
    sentinel_password_file: str | None = None
    """mode sentinel: file holding the sentinels' password."""
    tls_ca_file: str | None = None
    """rediss://: PEM bundle that signed the servers' certificates (default: the system store)."""
    key_prefix: str = "cg:"
    """Every key the gateway writes starts with this."""
    socket_timeout_seconds: float = Field(default=5.0, gt=0)
    """Per-command socket timeout, seconds."""
    max_connections: int = Field(default=64, ge=1)
    """Connection pool size (per gateway process; in cluster mode per node, and calls in flight)."""
    pool_wait_seconds: float = Field(default=20.0, gt=0)
    """How long a request waits for a free pooled connection when all are busy, seconds (then 503). A pool is
    busy under load, not when Redis is away (that fails at once), so the wait is long: at 1,024 clients on 64
    connections the pool's waiters are not served in order and 5 s let one LIST in 50,000 time out. The
    request's own limits.requestTimeoutSeconds bounds it too."""
    wait_replicas: int = Field(default=1, ge=0)
    """sentinel and cluster modes: a write a client is told about is answered once this many replicas
    hold it (WAIT), so a failover does not lose it; 0 = do not wait (a deployment without replicas).
    Ignored in standalone mode (nothing fails over)."""
    wait_timeout_ms: int = Field(default=500, ge=1)
    """Longest WAIT for those replicas, milliseconds; a write not replicated by then stands (logged)."""

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("must not contain '{' or '}' (they delimit Redis Cluster hash tags)")
        return value

    @field_validator("sentinels")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for item in value:
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RedisSettings:
        if self.url == EMBEDDED_REDIS:
            if self.mode != "standalone":
                raise ValueError("url 'embedded' (the demo's in-process Redis) needs mode standalone")
            return self
        if not self.url.startswith(("redis://", "rediss://")):
            raise ValueError("url must start with redis:// or rediss:// (TLS), or be 'embedded'")
        if self.mode == "sentinel" and not self.sentinels:
            raise ValueError("mode sentinel needs sentinels (host:port of each)")
        if self.mode != "sentinel" and self.sentinels:
            raise ValueError("sentinels are used only with mode sentinel")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or passwordFile, not both")
        if self.sentinel_password is not None and self.sentinel_password_file is not None:
            raise ValueError("give sentinelPassword or sentinelPasswordFile, not both")
        return self

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The sentinels as (host, port)."""
        return [(host.strip("[]"), int(port)) for host, _, port in (s.rpartition(":") for s in self.sentinels)]

    def secret(self, inline: str | None, path: str | None, *, what: str) -> str | None:
        """A password given inline or in a file (read now; ConfigError naming the key when unreadable)."""
        if path is None:
            return inline
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"redis.{what}: cannot read {path!r}: {e.strerror}") from e


class RuntimeSettings(_Section):
    """One runtime of a cluster's catalog."""

    image: str
    """Image for CPU-only replicas."""
    gpu_image: str | None = None
    """Image when a replica asks for GPUs (default: `image`)."""
    command: list[str] = Field(default_factory=lambda: ["python3"])
    """Interpreter that runs the bootfile (`["python2"]` for Python 2 runtimes)."""


class VolumeSettings(_Section):
    """A volume mounted into every replica of every job on the cluster (exactly one source)."""

    name: str
    """Volume name in the pod (a DNS-1123 label)."""
    mount_path: str
    """Where the containers see it."""
    host_path: str | None = None
    """A directory of the node."""
    claim_name: str | None = None
    """A PersistentVolumeClaim of the job's namespace."""
    nfs_server: str | None = None
    """An NFS server (with nfsPath)."""
    nfs_path: str | None = None
    """The exported path on nfsServer."""
    read_only: bool = False
    """Mount read-only."""

    @model_validator(mode="after")
    def _one_source(self) -> VolumeSettings:
        sources = [self.host_path is not None, self.claim_name is not None, self.nfs_server is not None]
        if sum(sources) != 1:
            raise ValueError("give exactly one of hostPath, claimName, nfsServer (+ nfsPath)")
        if self.nfs_server is not None and not self.nfs_path:
            raise ValueError("nfsServer needs nfsPath")
        return self


class ClusterSettings(_Section):
    """One Kubernetes cluster the gateway serves as `/clusters/{id}`."""

    id: str
    """Cluster id in URLs and Redis keys: lowercase letters, digits, `-`, `_`, `.`."""
    server: str | None = None
    """API server URL (with tokenFile/token and caFile)."""
    kubeconfig: str | None = None
    """Path of a kubeconfig file (instead of server)."""
    context: str | None = None
    """kubeconfig context (default: the file's current context)."""
    in_cluster: bool = False
    """Use the pod's service account (instead of server/kubeconfig)."""
    token_file: str | None = None
    """File holding the bearer token; re-read when it changes (projected tokens rotate)."""
    token: str | None = None
    """Bearer token inline (demo and tests; prefer tokenFile)."""
    ca_file: str | None = None
    """PEM bundle that signed the API server's certificate."""
    proxy_url: str | None = None
    """http:// or https:// proxy for this cluster's API traffic (a kubeconfig's `proxy-url` wins). The
    environment's HTTPS_PROXY/NO_PROXY are not applied to cluster traffic."""
    credentials_dir: str | None = None
    """A private directory (0700, e.g. an emptyDir with medium Memory) where client certificate data from a
    kubeconfig is written for an instant, only where the kernel has no memfd_create; normally unused."""
    service_account_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount"
    """inCluster: the folder holding the service account's `token` (re-read when it rotates) and `ca.crt`."""
    insecure_skip_tls_verify: bool = Field(
        default=False, alias="insecureSkipTLSVerify",
        validation_alias=AliasChoices("insecureSkipTLSVerify", "insecure_skip_tls_verify"))
    """Do not verify the API server's certificate (logged as a warning at start; never in production)."""
    backend: Backend = "training-operator"
    """What runs jobs: TFJob via training-operator (runPolicy) or tf-operator (flat), Volcano Job, JobSet."""
    runtimes: dict[str, RuntimeSettings] = Field(default_factory=dict)
    """Runtime catalog: legacy runtime name → images and interpreter."""
    volumes: list[VolumeSettings] = Field(default_factory=list)
    """Mounted into every replica."""
    image_pull_secrets: list[str] = Field(default_factory=list)
    """Secret names added to every pod."""
    namespace_map: dict[str, str] = Field(default_factory=dict)
    """Partition → namespace (default: the partition's own name)."""
    scheduler_name: str | None = None
    """Pod schedulerName (e.g. `volcano` for gang-scheduled TFJobs)."""
    queue: str | None = None
    """Volcano queue / schedulingPolicy.queue."""
    priority_class: str | None = None
    """priorityClassName for every job."""
    path_root: str | None = None
    """bootfile and directories must lie under this absolute path."""
    max_replicas_per_job: int = Field(default=64, ge=1)
    """Cap on the sum of replica counts of one job."""
    max_gpus_per_job: int = Field(default=64, ge=0)
    """Cap on the GPUs of one job (all replicas)."""
    default_clean_pod_policy: Literal["All", "Running", "None"] | None = "Running"
    """cleanPodPolicy of jobs that give none (TFJob backends): `Running` deletes the pods still running when
    the job ends (parameter servers never exit by themselves); `None` keeps them, as the operator does."""
    impersonate: bool = False
    """Call this cluster as the user (Impersonate-User/-Group); also enabled by auth per-cluster settings."""
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    """Total timeout of one API request (not watches), seconds."""

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not CLUSTER_ID_RE.match(value):
            raise ValueError("must be 1-63 lowercase letters, digits, '-', '_' or '.', "
                             "starting and ending with a letter or digit")
        return value

    @field_validator("path_root")
    @classmethod
    def _absolute_root(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    @model_validator(mode="after")
    def _one_connection(self) -> ClusterSettings:
        chosen = [name for name, on in (("server", self.server is not None),
                                        ("kubeconfig", self.kubeconfig is not None),
                                        ("inCluster", self.in_cluster)) if on]
        if len(chosen) != 1:
            raise ValueError(f"give exactly one of server, kubeconfig, inCluster (got {chosen or 'none'})")
        if self.server is not None:
            if not self.server.startswith(("https://", "http://")):
                raise ValueError("server must be an https:// URL")
            if self.token is not None and self.token_file is not None:
                raise ValueError("give token or tokenFile, not both")
        if self.context is not None and self.kubeconfig is None:
            raise ValueError("context needs kubeconfig")
        return self

    def profile(self) -> ClusterProfile:
        """The pure translation profile of this cluster."""
        return ClusterProfile(
            id=self.id,
            backend=self.backend,
            runtimes={name: RuntimeImage(image=r.image, gpu_image=r.gpu_image, command=tuple(r.command))
                      for name, r in self.runtimes.items()},
            volumes=tuple(Volume(name=v.name, mount_path=v.mount_path, host_path=v.host_path,
                                 claim_name=v.claim_name, nfs_server=v.nfs_server, nfs_path=v.nfs_path,
                                 read_only=v.read_only) for v in self.volumes),
            image_pull_secrets=tuple(self.image_pull_secrets),
            namespace_map=dict(self.namespace_map),
            scheduler_name=self.scheduler_name,
            queue=self.queue,
            priority_class=self.priority_class,
            path_root=self.path_root,
            max_replicas_per_job=self.max_replicas_per_job,
            max_gpus_per_job=self.max_gpus_per_job,
            default_clean_pod_policy=self.default_clean_pod_policy,
        )


class RetrySettings(_Section):
    """Retries of safe cluster calls (GET/LIST; creates with deterministic names)."""

    attempts: int = Field(default=3, ge=1, le=10)
    """Tries in all, including the first."""
    initial_delay_seconds: float = Field(default=0.2, ge=0)
    """Delay before the second try; doubles each time."""
    max_delay_seconds: float = Field(default=2.0, ge=0)
    """Upper bound of one delay (a cluster's Retry-After is honoured up to this)."""


class LimitsSettings(_Section):
    """Request limits and freshness bounds."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest accepted request body, bytes (larger: 413)."""
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    """A request taking longer is answered 504."""
    body_read_timeout_seconds: float = Field(default=10.0, gt=0)
    """A request body not received in full within this is answered 408 (a body shorter than its
    Content-Length, a stalled upload), seconds."""
    job_lock_wait_seconds: float = Field(default=10.0, ge=0)
    """How long a change to a job waits for another change to the same job to finish before it is
    answered 409, seconds."""
    status_staleness_seconds: float = Field(default=5.0, ge=0)
    """A job's cached status older than this (and no live watch) is refreshed from the cluster on read."""
    list_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Each replica keeps recent LIST answers up to this many bytes and serves them again while the
    partition's list version in Redis is unchanged (one small read instead of reading every job);
    0 = no cache."""
    list_page_size: int = Field(default=500, ge=1)
    """`limit` of each LIST page sent to a cluster."""
    writes_per_user_per_minute: int = Field(default=600, ge=0)
    """Creates, updates and deletes one user may make per minute, counted across replicas in Redis
    (more: 429 with Retry-After); 0 = no limit."""
    log_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest job log answer that is not followed, bytes (the cluster cuts it there: `limitBytes`)."""
    log_follow_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """A followed job log (`follow=true`) ends after this many bytes; the client may follow again."""
    log_follow_max_seconds: float = Field(default=600.0, gt=0)
    """A followed job log ends after this long (it also ends when the pod's container ends or the client
    leaves), seconds; the client may follow again. Not bound by requestTimeoutSeconds."""

    @model_validator(mode="after")
    def _body_before_request(self) -> LimitsSettings:
        if self.body_read_timeout_seconds >= self.request_timeout_seconds:
            raise ValueError("bodyReadTimeoutSeconds must be shorter than requestTimeoutSeconds (a slow body is "
                             "the client's fault: 408, not 504)")
        return self


class SyncSettings(_Section):
    """Background watch of each cluster and the outbox worker."""

    watch: bool = True
    """Watch managed jobs and pods; off: reads refresh from the cluster when stale."""
    relist_backoff_seconds: float = Field(default=1.0, gt=0)
    """First delay after a failed list/watch; doubles up to relistBackoffMaxSeconds."""
    relist_backoff_max_seconds: float = Field(default=30.0, gt=0)
    """Largest delay between list/watch attempts."""
    watch_timeout_seconds: int = Field(default=300, ge=1)
    """Server-side timeoutSeconds of one watch request (then it is resumed from the last RV)."""
    fallback_after_seconds: float = Field(default=30.0, ge=0)
    """If a cluster's watch has been down longer than this, reads of that cluster go to its API server."""
    lease_seconds: float = Field(default=15.0, gt=0)
    """Watch lease time to live; renewed at a third of it. Another replica takes over after it lapses."""
    outbox_retry_seconds: float = Field(default=2.0, gt=0)
    """Delay between attempts to land a queued create/delete."""
    outbox_claim_idle_seconds: float = Field(default=30.0, gt=0)
    """An outbox entry a dead replica left pending this long is taken over."""
    outbox_max_age_seconds: float = Field(default=86400.0, gt=0)
    """A queued create or delete the cluster has not taken within this many seconds is given up: a create
    turns the job `failed` (reason `QueueExpired`), a delete leaves the job as it was, for the user to retry."""
    outbox_auth_attempts: int = Field(default=5, ge=1)
    """Tries of a queued operation that the cluster answers 401/403 (or for which the gateway cannot obtain
    credentials) before it is given up (job `failed`, the reason says the cluster refused the gateway)."""


_LEGACY_PHASES = frozenset(get_args(Phase))
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class WebhookSettings(_Section):
    """One receiver of phase changes: every change that passes its filters is POSTed to it."""

    url: str
    """https:// URL (http:// only on loopback: 127.0.0.1, ::1, localhost) that receives each phase change as
    JSON `{id, name, owner, cluster, partition, phase, previousPhase, reason, message, at}`."""
    name: str | None = None
    """Stable name of the hook (its Redis consumer group, its metrics label). Default: derived from the URL;
    give one when two hooks share a URL. Renaming a hook starts it afresh (changes queued for the old name
    are not sent)."""
    secret: str | None = None
    """HMAC-SHA256 key of `X-Clever-Signature: sha256=<hex>` (over the exact body). Prefer `secretFile`."""
    secret_file: str | None = None
    """File holding the HMAC key (surrounding whitespace ignored)."""
    phases: list[str] | None = None
    """Only changes into these legacy phases (queued, pending, running, restarting, succeeded, failed,
    suspended, terminating); default: all."""
    clusters: list[str] | None = None
    """Only jobs of these cluster ids; default: all."""
    partitions: list[str] | None = None
    """Only jobs of these partitions; default: all."""
    timeout_seconds: float = Field(default=5.0, gt=0)
    """One delivery attempt's whole time (connect, send, answer), seconds."""
    concurrency: int = Field(default=4, ge=1, le=256)
    """Deliveries in flight to this hook at once per replica (its backlog waits for these, no other hook does)."""

    @field_validator("url")
    @classmethod
    def _safe_url(cls, value: str) -> str:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        if parts.scheme == "https" and host:
            return value
        if parts.scheme == "http" and (host in _LOOPBACK_HOSTS or host.startswith("127.")):
            return value
        raise ValueError(f"{value!r} must be an https:// URL (http:// only on loopback: 127.0.0.1, ::1, localhost)")

    @field_validator("phases")
    @classmethod
    def _legacy_phases(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = sorted({p for p in value if p not in _LEGACY_PHASES})
        if unknown:
            raise ValueError(f"unknown phases {unknown} (legacy phases: {', '.join(sorted(_LEGACY_PHASES))})")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookSettings:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give secret or secretFile (exactly one): deliveries are always signed")
        return self

    def hook_name(self) -> str:
        """`name`, else a digest of the URL."""
        return self.name or "url-" + hashlib.sha256(self.url.encode()).hexdigest()[:12]

    def read_secret(self) -> bytes:
        """The HMAC key (read now; ConfigError naming the key when unreadable or empty)."""
        if self.secret_file is None:
            return (self.secret or "").encode()
        try:
            key = Path(self.secret_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"notifications.webhooks[{self.hook_name()}].secretFile: cannot read "
                              f"{self.secret_file!r}: {e.strerror}") from e
        if not key:
            raise ConfigError(f"notifications.webhooks[{self.hook_name()}].secretFile: {self.secret_file!r} is empty")
        return key.encode()


class NotificationsSettings(_Section):
    """Phase webhooks: each change of a job's phase is queued in a Redis stream and POSTed, signed, to every
    hook whose filters it passes, at least once (retried until `maxAgeSeconds`)."""

    webhooks: list[WebhookSettings] = Field(default_factory=list)
    """The receivers; none: no change is queued at all."""
    max_age_seconds: float = Field(default=3600.0, gt=0)
    """A change not delivered this long after it happened is dropped (logged, counted in
    clever_gateway_webhook_dropped_total)."""
    retry_initial_seconds: float = Field(default=1.0, gt=0)
    """First delay after a failed delivery; doubles (with jitter) up to retryMaxSeconds."""
    retry_max_seconds: float = Field(default=60.0, gt=0)
    """Longest delay between two attempts of one delivery."""
    claim_idle_seconds: float = Field(default=300.0, gt=0)
    """A change another replica took but neither delivered nor touched this long (it died) is taken over.
    Must exceed twice (retryMaxSeconds + the longest hook timeoutSeconds): a live replica touches its
    deliveries at every attempt."""
    stream_max_length: int = Field(default=100_000, ge=1000)
    """Changes kept in the stream (approximately: MAXLEN ~); older ones are trimmed even if undelivered."""

    @model_validator(mode="after")
    def _consistent(self) -> NotificationsSettings:
        names = [hook.hook_name() for hook in self.webhooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"webhooks named alike {duplicates}: give each a distinct name")
        longest = max((hook.timeout_seconds for hook in self.webhooks), default=0.0)
        if self.webhooks and self.claim_idle_seconds <= 2 * (self.retry_max_seconds + longest):
            raise ValueError("claimIdleSeconds must exceed 2 x (retryMaxSeconds + the longest timeoutSeconds), "
                             "else a live replica's deliveries would be taken over")
        return self


class RetentionSettings(_Section):
    """How long finished jobs stay listed once their cluster object is gone (TTL, cleanup, deleted by hand)."""

    finished_jobs_days: float = Field(default=30.0, gt=0)
    """A succeeded or failed job whose cluster object is gone stays listed (`"archived": true`) this many
    days, counted from when the gateway saw the object go; then the sweep removes it. A DELETE through
    the API still removes a job at once."""
    sweep_interval_seconds: float = Field(default=3600.0, gt=0)
    """How often the sweep runs (on one replica at a time, under the lease `history-sweep`)."""


class LoggingSettings(_Section):
    """Structured logs on stdout."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""
    format: Literal["json", "console"] = "json"
    """One JSON object per line, or console lines for humans."""


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`."""

    model_config = SettingsConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                                      use_attribute_docstrings=True)

    replica_id: str | None = None
    """This replica's identity in the watch leases and the outbox: unique among running replicas, the
    same across restarts of one replica, so a restarted replica takes its own lease back at once instead
    of waiting for it to lapse. Default: $POD_NAME, else $HOSTNAME, else the host name."""
    listen: ListenSettings = Field(default_factory=ListenSettings)
    """Where the HTTP server listens."""
    redis: RedisSettings = Field(default_factory=RedisSettings)
    """The Redis every replica shares."""
    auth: AuthSettings = Field(default_factory=lambda: {"mode": "oidc"}, validate_default=True)
    """Who may call, and what they may touch."""
    clusters: list[ClusterSettings] = Field(default_factory=list, validate_default=True)
    """The Kubernetes clusters served (at least one)."""
    retry: RetrySettings = Field(default_factory=RetrySettings)
    """Retries of safe cluster calls."""
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    """Request limits and freshness bounds."""
    sync: SyncSettings = Field(default_factory=SyncSettings)
    """Watches and the outbox."""
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    """Logs."""
    ui: UiSettings = Field(default_factory=UiSettings)
    """The web dashboard at /ui."""
    notifications: NotificationsSettings = Field(default_factory=NotificationsSettings)
    """Phase webhooks."""
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    """Finished jobs kept after their cluster object is gone."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file and the environment are merged by load_settings (list items by index, which the
        # stock env source cannot address); the model only validates what it is given.
        return (init_settings,)

    @field_validator("clusters")
    @classmethod
    def _clusters_valid(cls, value: list[ClusterSettings]) -> list[ClusterSettings]:
        if not value:
            raise ValueError("at least one cluster is required")
        seen: set[str] = set()
        for cluster in value:
            if cluster.id in seen:
                raise ValueError(f"duplicate cluster id {cluster.id!r}")
            seen.add(cluster.id)
        return value

    @model_validator(mode="after")
    def _ui_signin(self) -> Settings:
        # The dashboard signs in at the API's own issuer and checks the ID token with the API's verifier.
        if not self.ui.enabled or self.auth.mode != "oidc" or self.auth.oidc is None:
            return self
        if not self.ui.client_id:
            raise ValueError("ui.clientId is required when the dashboard is enabled with auth.mode oidc")
        if self.ui.client_id not in self.auth.oidc.audiences:
            raise ValueError(f"ui.clientId {self.ui.client_id!r} must be listed in auth.oidc.audience (the ID "
                             "tokens of the dashboard's sign-in carry it as their audience)")
        if not self.ui.session_key_file:
            raise ValueError("ui.sessionKeyFile is required when the dashboard is enabled with auth.mode oidc "
                             "(every replica must read the same session cookies)")
        return self

    @field_validator("replica_id")
    @classmethod
    def _replica_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not REPLICA_ID_RE.match(value):
            raise ValueError("must be 1-253 letters, digits, '.', '_' or '-' (a pod name fits)")
        return value

    def replica_identity(self, environ: Mapping[str, str] | None = None) -> str:
        """`replicaId`, else $POD_NAME, else $HOSTNAME, else the host name."""
        env = os.environ if environ is None else environ
        for candidate in (self.replica_id, env.get("POD_NAME"), env.get("HOSTNAME")):
            if candidate and REPLICA_ID_RE.match(candidate):
                return candidate
        return socket.gethostname() or "gateway"

    def cluster(self, cluster_id: str) -> ClusterSettings | None:
        """The settings of one cluster, or None."""
        return next((c for c in self.clusters if c.id == cluster_id), None)


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{path}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _normalise(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, __import__("types").UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _field_key(model: type[BaseModel], segment: str) -> tuple[str, Any] | None:
    """(YAML key, annotation) of the field of `model` that `segment` names, ignoring case and `_`."""
    wanted = _normalise(segment)
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if wanted in (_normalise(name), _normalise(alias)):
            return alias, info.annotation
    return None


def _set_path(node: Any, annotation: Any, segments: list[str], value: Any, *, env_name: str) -> Any:
    """Return `node` with `value` written at `segments`, guided by the model `annotation`."""
    if not segments:
        return value
    annotation = _strip_optional(annotation)
    head, rest = segments[0], segments[1:]
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found = _field_key(annotation, head)
        if found is None:
            raise ConfigError(f"{env_name}: no configuration key {head.lower()!r} here")
        key, sub = found
        node = dict(node) if isinstance(node, Mapping) else {}
        node[key] = _set_path(node.get(key), sub, rest, value, env_name=env_name)
        return node
    if origin is list:
        (item_type,) = get_args(annotation) or (Any,)
        items = list(node) if isinstance(node, list) else []
        if not head.isdigit() or int(head) > len(items):
            raise ConfigError(f"{env_name}: {head!r} is not an index of an existing item (0..{len(items)})")
        index = int(head)
        if index == len(items):
            items.append({})
        items[index] = _set_path(items[index], item_type, rest, value, env_name=env_name)
        return items
    if origin is dict:
        args = get_args(annotation)
        value_type = args[1] if len(args) == 2 else Any
        mapping = dict(node) if isinstance(node, Mapping) else {}
        # Environment names are upper case; match an existing key case-insensitively.
        key = next((k for k in mapping if _normalise(str(k)) == _normalise(head)), head.lower())
        mapping[key] = _set_path(mapping.get(key), value_type, rest, value, env_name=env_name)
        return mapping
    raise ConfigError(f"{env_name}: cannot set a sub-key of a scalar value")


def _env_value(raw: str) -> Any:
    """A number/bool as such, `[...]`/`{...}` as YAML/JSON, anything else (`cg:`, URLs) verbatim."""
    stripped = raw.strip()
    try:
        parsed = yaml.safe_load(stripped)
    except yaml.YAMLError:
        return raw
    if stripped.startswith(("[", "{")) and isinstance(parsed, (list, dict)):
        return parsed
    if isinstance(parsed, (bool, int, float)):
        return parsed
    return raw


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for env_name in sorted(environ):
        if not env_name.startswith(ENV_PREFIX):
            continue
        segments = [s for s in env_name[len(ENV_PREFIX):].split("__") if s]
        if not segments:
            continue
        value = _env_value(environ[env_name])
        data = _set_path(data, Settings, segments, value, env_name=env_name)
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in `path`; ConfigError when unreadable or not a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"configuration file {str(path)!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {str(path)!r} must hold a mapping at the top level")
    return data


def load_settings(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                  base: dict[str, Any] | None = None) -> Settings:
    """Build Settings from the YAML file (or `base`), then `CLEVER_GATEWAY__...` overrides."""
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_ENV) or None
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data.update(read_config_file(path))
    data = _apply_environment(data, env)
    try:
        return Settings(**data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e)) from e


def referenced_files(settings: BaseModel, path: str = "") -> list[tuple[str, str]]:
    """Every file the configuration names, as (key path, file path): fields named `...File`/`..._file` and
    `kubeconfig`, in every section and list item (so a new such key is checked without being listed)."""
    found: list[tuple[str, str]] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        key = f"{path}{field.alias or to_camel(name)}"
        if isinstance(value, BaseModel):
            found += referenced_files(value, key + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found += referenced_files(item, f"{key}.{i}.")
        elif isinstance(value, str) and (name.endswith(("_file", "File")) or name == "kubeconfig"):
            found.append((key, value))
    return found


def unreadable_files(settings: Settings) -> list[str]:
    """One line per referenced file that cannot be read: `key.path: /the/path: why`."""
    problems = []
    for key, file in referenced_files(settings):
        try:
            with open(file, "rb") as handle:
                handle.read(1)
        except OSError as e:
            problems.append(f"{key}: {file}: {e.strerror or e}")
    return problems
