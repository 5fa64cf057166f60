"""HTTP clients of the suite: the legacy API (through the gateway) and kubesim's API (straight).

They speak only HTTP to the processes the suite started, so the suite measures any gateway that serves
the legacy API. From the cluster side they rely on what the gateway promises there: managed objects
carry the labels `app.kubernetes.io/managed-by=clever-gateway`, `clever.dev/job-id` and `clever.dev/owner`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

CLUSTER = "c1"
PARTITION = "clever"
NAMESPACE = "clever"
MANAGED = "app.kubernetes.io/managed-by=clever-gateway"
JOB_ID_LABEL = "clever.dev/job-id"
OWNER_LABEL = "clever.dev/owner"
TFJOBS = f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs"
JOBS_PATH = f"/api/v1alpha1/clusters/{CLUSTER}/partitions/{PARTITION}/tfjobs"
RUNTIME = "Python_3.11+Tensorflow_2.15.0"

# A realistic legacy create body (one worker, every optional path set): its GET answer is ~1.4 KB.
JOB_BODY: dict[str, Any] = {
    "description": "ResNet-50 baseline on the clever partition, nightly retrain",
    "runtime": RUNTIME,
    "workdir": "/clever/alice/jobs/resnet",
    "bootfile": "/clever/alice/jobs/resnet/train.py",
    "args": ["--epochs=90", "--batch-size=256", "--lr=0.1"],
    "enviroment": "TF_CPP_MIN_LOG_LEVEL=2,OMP_NUM_THREADS=4",
    "checkpointDir": "/clever/alice/ckpt/resnet",
    "eventDir": "/clever/alice/events/resnet",
    "modelDir": "/clever/alice/models/resnet",
    "logDir": "/clever/alice/logs/resnet",
    "cpu": "2", "gpu": "0", "memory": "4Gi", "type": "worker", "count": "1",
}


def job_body(name: str) -> dict[str, Any]:
    """The legacy create body with this name."""
    return {"name": name, **JOB_BODY}


class HttpError(Exception):
    """A non-2xx answer."""

    def __init__(self, status: int, method: str, url: str, text: str) -> None:
        super().__init__(f"{method} {url}: {status} {text[:300]}")
        self.status = status


async def _check(response: aiohttp.ClientResponse) -> bytes:
    body = await response.read()
    if not 200 <= response.status < 300:
        raise HttpError(response.status, response.method, str(response.url), body.decode(errors="replace"))
    return body


class Legacy:
    """The legacy API of one gateway (`X-User`, or a bearer token when `token` is set)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, token: str | None = None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.token = token

    def headers(self, user: str) -> dict[str, str]:
        """Request headers acting as `user`."""
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token}"}
        return {"X-User": user}

    async def create(self, user: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a job; the created legacy object."""
        async with self.session.post(self.base_url + JOBS_PATH, json=body, headers=self.headers(user)) as r:
            return dict(json.loads(await _check(r)))

    async def get_raw(self, user: str, job_id: str) -> bytes:
        """GET one job: the exact bytes answered."""
        async with self.session.get(f"{self.base_url}{JOBS_PATH}/{job_id}", headers=self.headers(user)) as r:
            return await _check(r)

    async def get(self, user: str, job_id: str) -> dict[str, Any]:
        """GET one job."""
        return dict(json.loads(await self.get_raw(user, job_id)))

    async def list_raw(self, user: str) -> bytes:
        """LIST the user's jobs in the partition: the exact bytes answered."""
        async with self.session.get(self.base_url + JOBS_PATH, headers=self.headers(user)) as r:
            return await _check(r)

    async def list(self, user: str) -> list[dict[str, Any]]:
        """The user's jobs in the partition."""
        return list(json.loads(await self.list_raw(user))["items"])

    async def delete(self, user: str, job_id: str) -> None:
        """DELETE one job."""
        url = f"{self.base_url}{JOBS_PATH}/{job_id}"
        async with self.session.delete(url, headers=self.headers(user)) as r:
            await _check(r)

    async def ping(self, user: str | None = None) -> dict[str, Any]:
        """GET /api/ping (any status), as `user` (an admin is told the detail)."""
        async with self.session.get(self.base_url + "/api/ping",
                                    headers=self.headers(user) if user is not None else None) as r:
            return dict(json.loads(await r.read()))


class KubeSim:
    """kubesim's Kubernetes API and admin API over HTTPS with the bearer token."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, token: str, ca_file: str) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.token = token
        self.ssl = ssl.create_default_context(cafile=ca_file)

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}

    async def request(self, method: str, path: str, *, body: Any = None,
                      content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> dict[str, Any]:
        """One call; the JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.auth, **({"Content-Type": content_type} if data is not None else {})}
        async with self.session.request(method, self.url + path, data=data, headers=headers, params=params,
                                        ssl=self.ssl) as r:
            return dict(json.loads(await _check(r)))

    async def list_tfjobs(self, selector: str = MANAGED, *, limit: int | None = None) -> dict[str, Any]:
        """LIST managed TFJobs of the namespace (optionally one page of `limit`)."""
        params = {"labelSelector": selector, **({"limit": str(limit)} if limit else {})}
        return await self.request("GET", TFJOBS, params=params)

    async def count_tfjobs(self, selector: str = MANAGED) -> int:
        """How many TFJobs match (one page of one, plus remainingItemCount)."""
        page = await self.list_tfjobs(selector, limit=1)
        return len(page["items"]) + int(page["metadata"].get("remainingItemCount") or 0)

    async def tfjob_of(self, job_id: str) -> dict[str, Any]:
        """The TFJob of one gateway job id."""
        items = (await self.list_tfjobs(f"{JOB_ID_LABEL}={job_id}"))["items"]
        if len(items) != 1:
            raise RuntimeError(f"expected one TFJob for job {job_id}, found {len(items)}")
        return dict(items[0])

    async def watch_tfjobs(self, selector: str,
                           resource_version: str) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """Watch events of matching TFJobs from `resource_version`, each with its arrival time
        (`time.perf_counter()`)."""
        params = {"watch": "true", "labelSelector": selector, "resourceVersion": resource_version,
                  "timeoutSeconds": "3600"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.url + TFJOBS, params=params, headers=self.auth, ssl=self.ssl,
                                    timeout=timeout) as r:
            if r.status != 200:
                raise HttpError(r.status, "GET", str(r.url), (await r.read()).decode(errors="replace"))
            async for line in r.content:
                if line.strip():
                    yield time.perf_counter(), dict(json.loads(line))

    async def mark_succeeded(self, name: str) -> None:
        """Make a TFJob Succeeded as training-operator does (Running False, Succeeded True, completionTime)
        with a merge patch of its /status."""
        obj = await self.request("GET", f"{TFJOBS}/{name}")
        status = dict(obj.get("status") or {})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [dict(c, status="False") if c.get("type") == "Running" else c
                      for c in status.get("conditions") or [] if c.get("type") != "Succeeded"]
        conditions.append({"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded",
                           "message": f"TFJob {NAMESPACE}/{name} successfully completed.",
                           "lastUpdateTime": now, "lastTransitionTime": now})
        await self.request("PATCH", f"{TFJOBS}/{name}/status", content_type="application/merge-patch+json",
                           body={"status": {"conditions": conditions, "completionTime": now}})

    async def set_scenario(self, name: str, scenario: str) -> None:
        """Switch one job's kubesim scenario (admin API)."""
        await self.request("POST", "/kubesim/admin/scenario",
                           body={"namespace": NAMESPACE, "name": name, "scenario": scenario})


async def retry(what: str, call: Any, *, attempts: int = 5, delay: float = 0.5) -> Any:
    """`await call()` with a few retries on HTTP and connection errors (setup steps only)."""
    for attempt in range(attempts):
        try:
            return await call()
        except (TimeoutError, HttpError, aiohttp.ClientError) as e:
            if attempt == attempts - 1:
                raise RuntimeError(f"{what} failed: {e}") from e
            await asyncio.sleep(delay * (attempt + 1))
    raise AssertionError("unreachable")
