"""One gateway serving three KubeSim clusters, one per backend, and the failure flows run through it.

Shared by `tests/service/test_backends.py`, `tests/service/test_status_truth.py` and
`bench/status_report.py` so the table a user reads comes from exactly the flows the tests check.

- `BACKENDS`: cluster id -> (gateway backend, KubeSim keyword arguments). `to` runs the
  training-operator, `tfo` the older tf-operator, `vc` Volcano, `js` JobSet; each sim runs only its own
  operator.
- `MultiCluster(prefix)`: `async with` starts the three sims, the real gateway on a loopback port
  (aiohttp `TestServer`, real Redis under `prefix`), and on exit stops them and deletes every key
  under the prefix. Helpers speak the legacy HTTP API only.
- `FAILURE_CASES` and `run_case(mc, cid, case)`: drive one job into one failure scenario and return
  the legacy object at the state a user would see (the terminal phase, or the steady waiting state).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, cast

from aiohttp import web
from aiohttp.test_utils import TestClient
from redis import asyncio as redis_asyncio

from gateway.app import create_app
from gateway.config import Settings, load_settings
from kubesim.testing import KubeSim
from tests.conftest import REDIS_URL, RUNTIMES, GatewayTestServer
from translators.backends.registry import backend_named

PARTITION = "clever"
USER = {"X-User": "alice"}
TERMINAL_PHASES = ("succeeded", "failed")

BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "to": ("training-operator", {"tfjob_operator": "training-operator", "volcano": False}),
    "tfo": ("tf-operator", {"tfjob_operator": "tf-operator", "volcano": False}),
    "vc": ("volcano", {"tfjob_operator": None, "volcano": True}),
    "js": ("jobset", {"tfjob_operator": None, "volcano": False, "jobset": True}),
}


def seed_body(name: str, **extra: Any) -> dict[str, Any]:
    """Seed 003's create example (the response-shaped body) under a new name, gpu 0 so any node fits."""
    from tests.service.seed_bodies import SEED_RESPONSE_SHAPED

    body = copy.deepcopy(SEED_RESPONSE_SHAPED)
    body["metadata"]["name"] = name
    for group in body["spec"]["replicas"]["replicas"]:
        group["resource"]["gpu"] = "0"
    body["spec"].update(extra)
    return body


def small_body(name: str, **extra: Any) -> dict[str, Any]:
    """One worker, one CPU, no GPU: the smallest job every backend runs."""
    body: dict[str, Any] = {"name": name, "runtime": "Python_3.11+Tensorflow_2.15.0", "bootfile": "/clever/a/train.py",
                            "cpu": "1", "memory": "1Gi", "gpu": "0", "type": "worker", "count": "1"}
    body.update(extra)
    return body


def settings_for(sims: dict[str, KubeSim], prefix: str) -> Settings:
    """Gateway settings with one cluster per sim, each with its backend, auth off, the test prefix."""
    clusters = [{"id": cid, "server": sim.url, "token": sim.token, "caFile": sim.ca_file,
                 "backend": BACKENDS[cid][0], "runtimes": RUNTIMES, "requestTimeoutSeconds": 5}
                for cid, sim in sims.items()]
    data: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "redis": {"url": REDIS_URL, "keyPrefix": prefix},
        "auth": {"mode": "none"},
        "logging": {"level": "warning"},
        "clusters": clusters,
        "retry": {"attempts": 2, "initialDelaySeconds": 0.01, "maxDelaySeconds": 0.05},
        "limits": {"statusStalenessSeconds": 0},
        "sync": {"relistBackoffSeconds": 0.05, "relistBackoffMaxSeconds": 0.2, "leaseSeconds": 1.5,
                 "outboxRetrySeconds": 0.05, "fallbackAfterSeconds": 5},
    }
    return load_settings(environ={}, base=data)


async def wait_for(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.02,
                   what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; AssertionError (with the last value) after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last value: {last!r})")


class MultiCluster:
    """Three KubeSims (one per backend) behind one real gateway on loopback, real Redis under `prefix`."""

    def __init__(self, prefix: str, *, cluster_ids: tuple[str, ...] = tuple(BACKENDS),
                 time_scale: float = 0.01, settings_hook: Callable[[Settings], Settings] | None = None) -> None:
        self.prefix = prefix
        self.sims = {cid: KubeSim(namespaces=("default", PARTITION), time_scale=time_scale, **BACKENDS[cid][1])
                     for cid in cluster_ids}
        self._settings_hook = settings_hook
        self.client: TestClient[web.Request, web.Application] | None = None
        self.redis = redis_asyncio.Redis.from_url(REDIS_URL, decode_responses=True)

    async def __aenter__(self) -> Self:
        try:
            for sim in self.sims.values():
                await sim.start()
            settings = settings_for(self.sims, self.prefix)
            if self._settings_hook is not None:
                settings = self._settings_hook(settings)
            self.app = create_app(settings)
            self.client = TestClient(GatewayTestServer(self.app, host="127.0.0.1"))
            await self.client.start_server()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stop()

    async def _stop(self) -> None:
        # The gateway stops first so its watches do not see the clusters vanish.
        if self.client is not None:
            await self.client.close()
        for sim in self.sims.values():
            await sim.stop()
        keys = [k async for k in self.redis.scan_iter(match=self.prefix + "*", count=1000)]
        if keys:
            await self.redis.delete(*keys)
        await self.redis.aclose()

    @property
    def http(self) -> TestClient[web.Request, web.Application]:
        """The HTTP client of the running gateway."""
        assert self.client is not None, "MultiCluster is not started"
        return self.client

    def jobs_url(self, cid: str) -> str:
        """The canonical collection path of partition `clever` on cluster `cid`."""
        return f"/api/v1alpha1/clusters/{cid}/partitions/{PARTITION}/tfjobs"

    async def call(self, method: str, path: str, *, json: Any = None, expect: int | None = 200) -> tuple[int, Any]:
        """One legacy API call as alice: (status, JSON body); AssertionError when `expect` is not met."""
        response = await self.http.request(method, path, json=json, headers=USER)
        body = await response.json()
        if expect is not None:
            assert response.status == expect, f"{method} {path}: {response.status} {body}"
        return response.status, body

    async def create(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a job; its legacy object."""
        return cast(dict[str, Any], (await self.call("POST", self.jobs_url(cid), json=body))[1])

    async def get(self, cid: str, job_id: str) -> dict[str, Any]:
        """GET a job; its legacy object."""
        return cast(dict[str, Any], (await self.call("GET", f"{self.jobs_url(cid)}/{job_id}"))[1])

    async def wait_phase(self, cid: str, job_id: str, *phases: str, timeout: float = 10.0,
                         until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """Poll GET until the phase is one of `phases` (and `until(job)` holds); the job then."""
        seen: list[dict[str, Any]] = []

        async def check() -> dict[str, Any] | None:
            job = await self.get(cid, job_id)
            seen[:] = [job]
            if job["status"]["phase"] in phases and (until is None or until(job)):
                return job
            return None

        try:
            found = await wait_for(check, timeout=timeout, what=f"{cid}/{job_id} phase in {phases}")
            return cast(dict[str, Any], found)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status seen: {seen[0]['status'] if seen else None}") from None

    def k8s_name(self, job: dict[str, Any]) -> str:
        """The cluster object's name of a legacy job (each backend names its objects)."""
        backend = backend_named(BACKENDS[job["metadata"]["cluster"]][0])
        return backend.object_name(job["metadata"]["name"], job["metadata"]["id"])

    async def create_with_scenario(self, cid: str, body: dict[str, Any], scenario: str) -> dict[str, Any]:
        """Create a job whose pods follow `scenario` from their very first reconcile.

        The id (hence the object name) is only known after the create, so the scenario is made the
        cluster default for the create and then pinned to the job by name. Callers run one such create
        at a time per cluster.
        """
        controllers = self.sims[cid].controllers
        controllers.set_default_scenario(scenario)
        try:
            job = await self.create(cid, body)
            controllers.set_job_scenario(PARTITION, self.k8s_name(job), scenario)
        finally:
            controllers.set_default_scenario("hold")
        return job


ACTIVE = ("pending", "running", "restarting")
ANY_PHASE = ACTIVE + ("failed",)


@dataclass(frozen=True)
class Expected:
    """What a user must see for one (backend, case).

    The phase is one of `phases`, the job-level reason is `reason` and its message contains `message_has`
    (every fragment, when a tuple); when `replica_reason` is set, a replica shows that reason with exit
    code `exit_code`.
    """

    phases: tuple[str, ...]
    reason: str
    message_has: str | tuple[str, ...]
    replica_reason: str | None = None
    exit_code: int | None = None

    def told_in(self, message: str | None) -> bool:
        """Whether `message` says everything this expectation needs."""
        fragments = (self.message_has,) if isinstance(self.message_has, str) else self.message_has
        return all(fragment in (message or "") for fragment in fragments)


@dataclass(frozen=True)
class FailureCase:
    """One failure a user may meet: how to cause it, and what each backend shows (by cluster id)."""

    key: str
    scenario: str
    body_extra: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, Expected] = field(default_factory=dict)


_TF = ("to", "tfo")
# JobSet pods run with restartPolicy Never and their Jobs with backoffLimit 0: a failed pod fails its Job, and
# with no maxRestarts (no backoffLimit given) the JobSet; with backoffLimit N the JobSet restarts N times.
# Volcano answers every pod failure with RestartJob (new pods, the failed ones deleted) until maxRetry (3 by
# default): the verdict is the job's own, and the pod's story survives only as the gateway's "last failure".


def _volcano_gave_up(*story: str, reason: str = "BackoffLimitExceeded", retries: int = 3) -> Expected:
    return Expected(("failed",), reason, (f"maxRetry {retries}", "last failure: ", *story))


def _each(ids: tuple[str, ...], expected: Expected) -> dict[str, Expected]:
    return {cid: expected for cid in ids}


FAILURE_CASES: tuple[FailureCase, ...] = (
    FailureCase("unschedulable", "unschedulable", expected=_each(
        ("to", "tfo", "vc", "js"), Expected(("pending",), "Unschedulable", "cannot be scheduled", "Unschedulable"))),
    FailureCase("image-pull-backoff", "image-pull-backoff", expected=_each(
        ("to", "tfo", "vc", "js"), Expected(("pending",), "ImagePullBackOff", "Back-off pulling image",
                                            "ImagePullBackOff"))),
    # Exit 137 is retryable under the workers' ExitCode policy: the operator keeps replacing the pod.
    FailureCase("oomkilled", "oomkilled:after=1", expected={
        **_each(_TF, Expected(("running", "restarting"), "OOMKilled", "exceeding its memory limit", "OOMKilled", 137)),
        "vc": _volcano_gave_up("exceeding its memory limit (OOMKilled, exit code 137)"),
        "js": Expected(("failed",), "OOMKilled", "exceeding its memory limit", "OOMKilled", 137)}),
    # Exit 3 is permanent under ExitCode: the TFJob fails at once.
    FailureCase("fail:exit=3", "fail:exit=3,after=1", expected={
        **_each(_TF, Expected(("failed",), "Error", "exited with code 3", "Error", 3)),
        "vc": _volcano_gave_up("exited with code 3 (Error)"),
        "js": Expected(("failed",), "Error", "exited with code 3", "Error", 3)}),
    # A crash loop needs in-place restarts; workers use ExitCode (exit 1 = permanent) and Volcano pods Never,
    # so what each backend really shows is the first crash failing the job.
    FailureCase("crashloop", "crashloop:restarts=3,exit=1,after=1", expected={
        **_each(_TF, Expected(("failed",), "Error", "exited with code 1", "Error", 1)),
        "vc": _volcano_gave_up("exited with code 1 (Error)"),
        "js": Expected(("failed",), "Error", "exited with code 1", "Error", 1)}),
    # The kubelet fails the pod itself; the TFJob operator replaces it (exit 137 is retryable).
    FailureCase("evicted", "evicted:after=1", expected={
        **_each(_TF, Expected(("running", "restarting"), "Evicted", "low on resource: memory", "Evicted", 137)),
        "vc": _volcano_gave_up("Evicted: The node was low on resource: memory"),
        "js": Expected(("failed",), "Evicted", "low on resource: memory", "Evicted", 137)}),
    FailureCase("backoff-limit", "oomkilled:after=1", {"backoffLimit": 1}, expected={
        **_each(_TF, Expected(("failed",), "BackoffLimitExceeded", ("backoff limit", "OOMKilled, exit code 137"))),
        "vc": _volcano_gave_up("OOMKilled, exit code 137", retries=1),
        "js": Expected(("failed",), "BackoffLimitExceeded", ("maxRestarts 1", "OOMKilled, exit code 137"))}),
    # Volcano has no job deadline: the pods carry it, and each kill at the deadline uses up a retry.
    FailureCase("deadline", "hold", {"activeDeadlineSeconds": 2}, expected={
        **_each(_TF, Expected(("failed",), "DeadlineExceeded", "longer than specified deadline")),
        "vc": _volcano_gave_up("DeadlineExceeded: Pod was active on the node longer than the specified deadline",
                               reason="DeadlineExceeded"),
        "js": Expected(("failed",), "DeadlineExceeded", "longer than specified deadline")}),
)


def job_name(case: FailureCase, cid: str) -> str:
    """The legacy job name of `case` on `cid`."""
    return f"{case.key.replace(':', '-').replace('=', '')}-{cid}"


async def run_case(mc: MultiCluster, cid: str, case: FailureCase, *, timeout: float = 10.0) -> dict[str, Any]:
    """Create a one-worker job under `case` on `cid`; its legacy object once it shows what `case` expects.

    AssertionError (with the last object seen) when it does not within `timeout`.
    """
    expected = case.expected[cid]
    job = await mc.create_with_scenario(cid, small_body(job_name(case, cid), **case.body_extra), case.scenario)

    def shows(found: dict[str, Any]) -> bool:
        status = found["status"]
        if status.get("reason") != expected.reason or not expected.told_in(status.get("message")):
            return False
        if expected.replica_reason is None:
            return True
        return any(r.get("reason") == expected.replica_reason and r.get("exitCode") == expected.exit_code
                   for r in status["replicas"])

    return await mc.wait_phase(cid, job["metadata"]["id"], *expected.phases, timeout=timeout, until=shows)
