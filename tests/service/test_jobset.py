"""Legacy jobs of every shape on a JobSet cluster, through the unchanged legacy API.

KubeSim runs JobSet v0.12.0's controller over batch/v1 Jobs; each pod's environment is resolved as the
kubelet resolves it (downward API, then `$(VAR)` references), so the TF_CONFIG a pod really sees is
read back and parsed: its cluster spec lists the JobSet's own pod DNS names and its task is the pod's own
type and completion index. Success follows the chief (worker 0 without one), never the ps.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from kubesim.podenv import container_env
from kubesim.store import JOBSETS, PODS
from tests.service.backends_harness import PARTITION, MultiCluster, small_body

SHAPES: dict[str, list[dict[str, Any]]] = {
    "one-worker": [{"type": "worker", "count": 1}],
    "worker-ps": [{"type": "worker", "count": 1}, {"type": "ps", "count": 1}],
    "chief-2ps-3workers": [{"type": "chief", "count": 1}, {"type": "ps", "count": 2},
                           {"type": "worker", "count": 3}],
    "with-evaluator": [{"type": "chief", "count": 1}, {"type": "worker", "count": 2},
                       {"type": "evaluator", "count": 1}],
}


def body_of(name: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    body = small_body(name)
    for key in ("type", "count"):
        body.pop(key)
    body["replicas"] = [{**g, "resource": {"cpu": "1", "memory": "1Gi", "gpu": "0"}} for g in groups]
    return body


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_every_shape_runs_and_each_pod_sees_its_own_tf_config(shape: str) -> None:
    groups = SHAPES[shape]
    async with MultiCluster(f"test:{uuid.uuid4().hex}:", cluster_ids=("js",)) as mc:
        sim = mc.sims["js"]
        job = await mc.create_with_scenario("js", body_of(shape, groups), "hold")
        jobset = mc.k8s_name(job)
        total = sum(g["count"] for g in groups)
        running = await mc.wait_phase("js", job["metadata"]["id"], "running",
                                      until=lambda j: len(j["status"]["replicas"]) == total)
        pods = [p for p in sim.store.list(PODS, PARTITION)[0]
                if p["metadata"]["labels"].get("jobset.sigs.k8s.io/jobset-name") == jobset]
        assert len(pods) == total
        seen: set[tuple[str, int]] = set()
        for pod in pods:
            env = container_env(pod, pod["spec"]["containers"][0])
            kind = pod["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"]
            index = int(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
            seen.add((kind, index))
            if total == 1:
                assert "TF_CONFIG" not in env  # a one-replica job is not distributed
                continue
            config = json.loads(env["TF_CONFIG"])
            assert config["task"] == {"type": kind, "index": index}
            assert config["environment"] == "cloud"
            assert config["cluster"] == {
                g["type"]: [f"{jobset}-{g['type']}-0-{i}.{jobset}:2222" for i in range(g["count"])]
                for g in groups}
            assert pod["spec"]["hostname"] == f"{jobset}-{kind}-0-{index}" and pod["spec"]["subdomain"] == jobset
        assert seen == {(g["type"], i) for g in groups for i in range(g["count"])}
        # The legacy replicas are these pods, typed and indexed.
        assert sorted((r["type"], r["index"]) for r in running["status"]["replicas"]) == sorted(seen)
        # Success follows the chief (worker 0 without a chief): ps pods never exit (kubesim's kubelet keeps a
        # pod whose TF_CONFIG says ps running, as TensorFlow's parameter servers do), and do not matter.
        sim.controllers.set_job_scenario(PARTITION, jobset, "succeed:after=1")
        done = await mc.wait_phase("js", job["metadata"]["id"], "succeeded", timeout=20)
        assert done["status"]["completionTime"]
        assert sim.store.get(JOBSETS, PARTITION, jobset)["status"]["terminalState"] == "Completed"
