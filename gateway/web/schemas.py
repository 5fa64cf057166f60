"""The API's wire shapes as pydantic models: the source of `/api/openapi.json` (gateway.web.openapi).

The answers themselves are rendered by `translators.clever` and stored as bytes (gateway.state.views);
these models describe them, field by field, and tests hold the two together (every answer the suite
sees validates against its model, and schemathesis checks the live gateway against the document).
Requests are read tolerantly (DESIGN §1), so `JobRequest` lists every accepted spelling as optional and
allows other keys (they are ignored).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Phase = Literal["queued", "pending", "running", "restarting", "succeeded", "failed", "suspended", "terminating"]
ReplicaType = Literal["chief", "worker", "ps", "evaluator"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resource(_Answer):
    """Per-replica resources: Kubernetes quantities (cpu, memory) and a whole number of GPUs."""

    cpu: str = Field(examples=["1", "500m"])
    memory: str = Field(examples=["2048Mi"])
    gpu: str = Field(examples=["0"], pattern=r"^[0-9]+$")


class ReplicaSpec(_Answer):
    """One replica group of a job."""

    type: ReplicaType
    count: str = Field(pattern=r"^[0-9]+$", examples=["1"])
    resource: Resource


class JobSpec(_Answer):
    """What the user asked for, in the seed's field names (plus `workerdir` and `environmentList`)."""

    name: str
    description: str
    partition: str
    runtime: str = Field(examples=["Python_2.7+Tensorflow_1.2.1"])
    workdir: str
    workerdir: str = Field(description="Same as workdir (the seed's examples use both names).")
    bootfile: str
    args: list[str]
    environment: str = Field(description='"K=V,K2=V2" (lossy when a value holds a comma).')
    environmentList: list[str] = Field(description='The exact environment, ["K=V", ...].')
    checkpointDir: str
    eventDir: str
    modelDir: str
    logDir: str
    replicas: list[ReplicaSpec]
    activeDeadlineSeconds: int | None = Field(default=None, ge=1)
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0)
    cleanPodPolicy: Literal["All", "Running", "None"] | None = None
    backoffLimit: int | None = Field(default=None, ge=0)
    successPolicy: Literal["", "AllWorkers"] | None = None


class JobMetadata(_Answer):
    """Who and where: `uid` is the owner's user name."""

    uid: str
    id: str
    name: str
    creationTime: str
    lastUpdateTime: str
    cluster: str
    partition: str


class ReplicaStatus(_Answer):
    """One pod of the job."""

    id: str = Field(description="The pod's name.")
    restartCount: int
    status: str = Field(description="The pod's phase: Pending, Running, Succeeded, Failed, Unknown.")
    startTime: str | None
    type: str
    index: int
    node: str | None
    reason: str | None
    message: str | None
    exitCode: int | None


class JobStatus(_Answer):
    """The legacy phase, why, when, and the replicas."""

    phase: Phase
    reason: str | None
    message: str | None
    startTime: str | None
    completionTime: str | None
    duration: float | None = Field(description="Seconds from start to completion.")
    replicas: list[ReplicaStatus]


class Job(_Answer):
    """A job as every job route answers it (seed 003's response object, as valid JSON)."""

    metadata: JobMetadata
    spec: JobSpec
    archived: bool | None = Field(default=None, description=(
        "Present (true) only on a finished job whose cluster object is gone (a TTL, a cleanup, deleted on the "
        "cluster): it stays listed for retention.finishedJobsDays. Absent otherwise."))
    status: JobStatus


class ListMetadata(_Answer):
    total: int = Field(ge=0)


class JobList(_Answer):
    """A partition's jobs the caller may see, oldest first."""

    metadata: ListMetadata
    items: list[Job]


class EventObject(_Answer):
    """What an event is about: the job object or one of its pods (`fieldPath` names a container)."""

    kind: str | None = Field(examples=["Pod", "TFJob"])
    name: str | None
    fieldPath: str | None = Field(examples=["spec.containers{tensorflow}"])


class Event(_Answer):
    """One Kubernetes event about the job or its pods."""

    type: str = Field(examples=["Normal", "Warning"])
    reason: str | None = Field(examples=["FailedScheduling", "BackOff", "SuccessfulCreatePod"])
    message: str | None
    object: EventObject
    firstTime: str | None = Field(description="When it first happened (RFC 3339).")
    lastTime: str | None = Field(description="When it last happened (RFC 3339).")
    count: int = Field(ge=1, description="How many times it happened between firstTime and lastTime.")
    source: str | None = Field(examples=["kubelet", "default-scheduler", "tfjob-controller"])


class EventList(_Answer):
    """The job's and its pods' events, oldest first."""

    metadata: ListMetadata
    items: list[Event]


class UiSession(_Answer):
    """The dashboard's signed-in user, and the token its script sends back on writes (X-CSRF-Token)."""

    user: str
    isAdmin: bool
    authMode: Literal["oidc", "none"]
    csrfToken: str
    clusters: list[str]


class UiPartition(_Answer):
    """A partition of a cluster that ever had a job."""

    cluster: str
    partition: str


class UiProblem(_Answer):
    """A partition whose jobs could not be listed, and why."""

    cluster: str
    partition: str
    message: str


class UiJobList(_Answer):
    """The caller's jobs across clusters and partitions, newest first (each as the API answers it)."""

    metadata: ListMetadata
    items: list[Job]
    user: str = Field(description="Whose jobs these are (`*`: everyone's).")
    partitions: list[UiPartition]
    problems: list[UiProblem]


class ErrorBody(_Answer):
    """Every error answer: the HTTP status, a stable reason word, a message, and details (field paths of
    invalid input in `details.fields`, the request id in `details.requestId`)."""

    code: int
    reason: str = Field(examples=["Invalid", "NotFound", "Conflict"])
    message: str
    details: dict[str, Any]


class RequestResource(BaseModel):
    """Resources as a request may give them (strings or numbers)."""

    model_config = ConfigDict(extra="allow")

    cpu: str | float | None = None
    memory: str | float | None = None
    gpu: str | int | None = None


class RequestReplica(BaseModel):
    """A replica group as a request may give it."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    count: str | int | None = None
    conut: str | int | None = Field(default=None, description="The seed's misspelling of count.")
    resource: RequestResource | None = None
    resources: RequestResource | None = None


class JobRequest(BaseModel):
    """A create or update body. Create needs name, runtime, bootfile, and cpu+memory (top level or per
    replica); an update gives only what changes. Spellings of DESIGN §1 are accepted; unknown keys are
    ignored; a body shaped like a `Job` answer is read from its `spec`."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    description: str | None = None
    runtime: str | None = None
    bootfile: str | None = None
    workdir: str | None = None
    workerdir: str | None = None
    args: list[str] | str | None = None
    environment: str | dict[str, str] | list[str] | None = None
    enviroment: str | dict[str, str] | list[str] | None = Field(default=None, description="The seed's spelling.")
    env: str | dict[str, str] | list[str] | None = None
    environmentList: list[str] | None = None
    checkpointDir: str | None = None
    eventDir: str | None = None
    modelDir: str | None = None
    logDir: str | None = None
    type: str | None = None
    count: str | int | None = None
    cpu: str | float | None = None
    memory: str | float | None = None
    gpu: str | int | None = None
    replicas: list[RequestReplica] | dict[str, Any] | None = None
    activeDeadlineSeconds: int | str | None = None
    ttlSecondsAfterFinished: int | str | None = None
    cleanPodPolicy: str | None = None
    backoffLimit: int | str | None = None
    successPolicy: str | None = None


class Version(_Answer):
    """The gateway's build identity (nothing about the runtime)."""

    version: str
    gitCommit: str
    buildDate: str
    apiVersions: list[str]


class Health(_Answer):
    status: Literal["ok"]


class Ping(BaseModel):
    """Readiness: `status` is "ok" when the gateway can serve (Redis and at least one cluster), else
    "unavailable" with 503; more detail for the operators (see the README)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "unavailable"]
