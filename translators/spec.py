"""The canonical Clever job: one typed shape that every legacy spelling is read into.

This module is the contract between the gateway (which parses, stores and renders) and
the backend translators (which turn it into Kubernetes bodies and back). It is pure data (plus
the runtime-catalog lookup both sides share): no I/O, no pydantic, no Kubernetes client.
`Backend`/`BACKENDS` are the one declaration of the backend names; the gateway's config uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

ReplicaType = Literal["chief", "worker", "ps", "evaluator"]
REPLICA_TYPES: tuple[ReplicaType, ...] = ("chief", "worker", "ps", "evaluator")

# The one declaration of the backends a cluster may run (config `clusters[].backend`); each name is
# registered with its implementation in translators.backends.registry.
Backend = Literal["training-operator", "tf-operator", "volcano", "jobset"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

# Directory field (JobSpec attribute, legacy key) -> environment variable every replica gets.
DIRECTORY_ENV: tuple[tuple[str, str, str], ...] = (
    ("checkpoint_dir", "checkpointDir", "CHECKPOINT_DIR"),
    ("event_dir", "eventDir", "EVENT_DIR"),
    ("model_dir", "modelDir", "MODEL_DIR"),
    ("log_dir", "logDir", "LOG_DIR"),
)

Phase = Literal[
    "queued", "pending", "running", "restarting", "succeeded", "failed", "suspended", "terminating"
]
ACTIVE_PHASES: frozenset[str] = frozenset({"running", "restarting", "terminating"})
FINISHED_PHASES: frozenset[str] = frozenset({"succeeded", "failed"})


@dataclass(frozen=True, slots=True)
class Resources:
    """Per-replica resources; quantities kept as the canonical Kubernetes strings."""

    cpu: str
    memory: str
    gpu: int = 0


@dataclass(frozen=True, slots=True)
class Replica:
    """One replica group: `count` pods of `type`, each with `resources`."""

    type: ReplicaType
    count: int
    resources: Resources


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """Optional lifecycle fields (beyond the seed); None means "cluster default"."""

    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    clean_pod_policy: Literal["All", "Running", "None"] | None = None
    backoff_limit: int | None = None
    success_policy: Literal["", "AllWorkers"] | None = None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the user asked for, normalised. Round trip: spec -> cluster object -> spec is the identity."""

    name: str
    runtime: str
    bootfile: str
    replicas: tuple[Replica, ...]
    description: str = ""
    workdir: str = ""
    args: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    checkpoint_dir: str = ""
    event_dir: str = ""
    model_dir: str = ""
    log_dir: str = ""
    run_policy: RunPolicy = field(default_factory=RunPolicy)


@dataclass(frozen=True, slots=True)
class JobIdentity:
    """Who and where: everything about a job that is not its spec. Times are RFC 3339 UTC strings."""

    id: str
    owner: str
    cluster: str
    partition: str
    created: str
    updated: str


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One pod, as the legacy `status.replicas[]` entry plus additive detail."""

    id: str
    type: str
    index: int
    status: str
    restart_count: int = 0
    start_time: str | None = None
    node: str | None = None
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """The legacy phase plus why, when, and the replicas."""

    phase: Phase
    reason: str | None = None
    message: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    replicas: tuple[ReplicaStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class Volume:
    """A volume mounted into every replica (from cluster config)."""

    name: str
    mount_path: str
    host_path: str | None = None
    claim_name: str | None = None
    nfs_server: str | None = None
    nfs_path: str | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class RuntimeImage:
    """A runtime from the catalog: images and the interpreter that runs the bootfile."""

    image: str
    gpu_image: str | None = None
    command: tuple[str, ...] = ("python3",)


@dataclass(frozen=True, slots=True)
class ClusterProfile:
    """What translation needs to know about one cluster; built from config by the gateway."""

    id: str
    backend: Backend = "training-operator"
    runtimes: dict[str, RuntimeImage] = field(default_factory=dict)
    volumes: tuple[Volume, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    namespace_map: dict[str, str] = field(default_factory=dict)
    scheduler_name: str | None = None        # e.g. "volcano" for gang-scheduled TFJobs
    queue: str | None = None                 # Volcano queue / schedulingPolicy.queue
    priority_class: str | None = None
    path_root: str | None = None             # bootfile and dirs must lie under it when set
    max_replicas_per_job: int = 64
    max_gpus_per_job: int = 64
    # A job that gives no cleanPodPolicy gets this one where the backend has the field (TFJob): "Running"
    # removes the pods still running when the job finishes (parameter servers never exit by themselves).
    default_clean_pod_policy: Literal["All", "Running", "None"] | None = "Running"


def _normalise_runtime(name: str) -> str:
    return re.sub(r"[\s_]+", "", name).casefold()


def resolve_runtime(name: str, profile: ClusterProfile) -> str | None:
    """The catalog key that `name` designates (spaces, underscores and case ignored), or None."""
    if name in profile.runtimes:
        return name
    wanted = _normalise_runtime(name)
    for key in profile.runtimes:
        if _normalise_runtime(key) == wanted:
            return key
    return None
