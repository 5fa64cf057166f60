"""Fixtures for kubesim API tests: a running KubeSim (HTTPS, no controllers) and an HTTP client trusting its CA.

`api` wraps an aiohttp ClientSession with helpers returning (status, parsed body, headers); tests talk real
HTTP(S) to the in-process server exactly as the gateway and kubectl do. Body builders and the Status assertion
hang off `api` (api.tfjob(), api.status(reply, 404, "NotFound")) so test modules need not import this file.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kubesim.testing import KubeSim

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
TFJOBS_PATH = "/apis/kubeflow.org/v1/namespaces/{ns}/tfjobs"
VCJOBS_PATH = "/apis/batch.volcano.sh/v1alpha1/namespaces/{ns}/jobs"


def shared_dir(sub: str) -> Path:
    """A directory of the shared reference material beside the repository; fails loudly if absent."""
    path = SHARED / sub
    if not path.is_dir():
        pytest.fail(f"shared reference directory {path} is missing: CI must check out ../shared beside the repo")
    return path


def seed_request_json(filename: str) -> dict[str, Any]:
    """The first JSON request example (```-fenced) of a seed document."""
    text = (shared_dir("seeds") / filename).read_text(encoding="utf-8")
    match = re.search(r"```\s*\n(\{.*?\n\})\s*```", text, re.DOTALL)
    assert match, f"no JSON request body in {filename}"
    loaded: dict[str, Any] = json.loads(match.group(1))
    return loaded


def example(filename: str) -> dict[str, Any]:
    """One of the shared upstream example manifests."""
    loaded: dict[str, Any] = yaml.safe_load((shared_dir("examples") / filename).read_text(encoding="utf-8"))
    return loaded


def tfjob(name: str = "mnist", *, replicas: int = 1, **spec_extra: Any) -> dict[str, Any]:
    """A minimal valid TFJob body."""
    return {
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": replicas, "restartPolicy": "Never", "template": {
            "spec": {"containers": [{"name": "tensorflow", "image": "tensorflow/tensorflow:2.15.0"}]}}}},
            **spec_extra},
    }


def vcjob(name: str = "vc") -> dict[str, Any]:
    """A minimal valid Volcano Job body with the tensorflow plugin."""
    return {
        "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": name},
        "spec": {"plugins": {"tensorflow": ["--port=2222"]}, "tasks": [
            {"name": "ps", "replicas": 1, "template": {"spec": {"containers": [{"name": "tf", "image": "tf"}]}}},
            {"name": "worker", "replicas": 2, "template": {"spec": {"containers": [{"name": "tf", "image": "tf"}]}}},
        ]},
    }


@dataclass
class Reply:
    """One HTTP answer."""

    status: int
    body: Any
    headers: Any


class Api:
    """A tiny Kubernetes REST client over aiohttp for tests."""

    def __init__(self, sim: KubeSim, session: aiohttp.ClientSession, ssl_context: ssl.SSLContext | None) -> None:
        self.sim = sim
        self.session = session
        self.ssl = ssl_context if ssl_context is not None else False

    async def request(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
                      headers: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
        """Send one request; JSON bodies are parsed when the answer is JSON."""
        all_headers = {"Content-Type": content_type, **(headers or {})}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.session.request(method, self.sim.url + path, data=data, headers=all_headers,
                                        ssl=self.ssl) as response:
            text = await response.text()
            parsed: Any = text
            if response.content_type == "application/json" and text:
                parsed = json.loads(text)
            return Reply(response.status, parsed, response.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.request("POST", path, body=body, **kw)

    async def put(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.request("PUT", path, body=body, **kw)

    async def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json",
                    **kw: Any) -> Reply:
        return await self.request("PATCH", path, body=body, content_type=content_type, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("DELETE", path, body=body, **kw)

    tfjob = staticmethod(tfjob)
    vcjob = staticmethod(vcjob)
    example = staticmethod(example)
    seed = staticmethod(seed_request_json)
    shared_dir = staticmethod(shared_dir)

    @staticmethod
    def status(reply: Reply, code: int, reason: str) -> dict[str, Any]:
        """Assert a Failure Status of the given code/reason and return it."""
        return assert_status(reply, code, reason)

    async def create_tfjob(self, body: dict[str, Any] | None = None, ns: str = "default") -> dict[str, Any]:
        """Create a TFJob and return the stored object (asserting 201)."""
        reply = await self.post(TFJOBS_PATH.format(ns=ns), copy.deepcopy(body or tfjob()))
        assert reply.status == 201, reply.body
        created: dict[str, Any] = reply.body
        return created


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    """A KubeSim over HTTPS without controllers, namespaces default and team-a."""
    async with KubeSim(namespaces=("default", "team-a"), tfjob_operator=None, volcano=False,
                       bookmark_interval=0.05) as running:
        yield running


@pytest.fixture
async def api(sim: KubeSim) -> AsyncIterator[Api]:
    """An authenticated client trusting the kubesim CA."""
    context = ssl.create_default_context(cafile=sim.ca_file)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sim.token}"}) as session:
        yield Api(sim, session, context)


def assert_status(reply: Reply, code: int, reason: str) -> dict[str, Any]:
    """Assert a Failure Status of the given code/reason and return it."""
    assert reply.status == code, reply.body
    body: dict[str, Any] = reply.body
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == code and body["reason"] == reason, body
    assert body["metadata"] == {} or "continue" in body["metadata"]
    return body
