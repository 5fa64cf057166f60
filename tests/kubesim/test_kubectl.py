"""The real kubectl against kubesim with a kubeconfig from `write_kubeconfig` (HTTPS + bearer token):
create -f, get, get -o json, patch --type=merge (and the strategic-merge refusal), logs (and -f), delete;
and a JobSet run through `get jobsets` / `get jobs` (batch/v1) to its end and its deletion.

kubectl runs as a subprocess through asyncio so the in-process server keeps serving. Set
KUBESIM_KUBECTL_TRANSCRIPT=<path> to save the commands and their output.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.store import BATCH_JOBS, JOBSETS, PODS, TFJOBS
from kubesim.testing import KubeSim
from tests.kubesim.jobsets import tf_jobset
from tests.kubesim.polling import wait_for

INSTALL_HINT = ("kubectl is not on PATH. Install it, e.g. `curl -LO https://dl.k8s.io/release/v1.32.4/bin/linux/"
                "amd64/kubectl && install -m 0755 kubectl /usr/local/bin/kubectl` (or apt-get install kubectl "
                "from the Kubernetes apt repository).")


class Kubectl:
    """Runs kubectl with one kubeconfig and keeps a transcript."""

    def __init__(self, binary: str, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.transcript: list[str] = []

    async def __call__(self, *args: str, expect: int = 0, stdout_only: bool = False) -> str:
        """Run kubectl, assert its exit code, return stdout+stderr (or stdout only)."""
        process = await asyncio.create_subprocess_exec(
            self.binary, "--kubeconfig", str(self.kubeconfig), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KUBECACHEDIR": str(self.kubeconfig.parent / "cache")})
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        text = out.decode() + err.decode()
        self.transcript.append(f"$ kubectl {' '.join(args)}\n{text}".rstrip() + f"\n[exit {process.returncode}]\n")
        assert process.returncode == expect, text
        return out.decode() if stdout_only else text


@pytest.fixture
def kubectl_binary() -> str:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail(INSTALL_HINT)
    return binary


async def test_kubectl_against_kubesim(kubectl_binary: str, tmp_path: Path) -> None:
    manifest = Path(__file__).resolve().parents[2].parent / "shared" / "examples" / "kubeflow-tfjob-simple.yaml"
    if not manifest.is_file():
        pytest.fail(f"{manifest} is missing: CI must provide ../shared beside the repository")
    async with KubeSim(namespaces=("kubeflow", "default"), tfjob_operator=None, volcano=False) as sim:
        kubectl = Kubectl(kubectl_binary, sim.write_kubeconfig(tmp_path / "kubeconfig"))
        try:
            await exercise(kubectl, sim, manifest)
        finally:
            target = os.environ.get("KUBESIM_KUBECTL_TRANSCRIPT")
            text = "".join(kubectl.transcript)
            (tmp_path / "transcript.txt").write_text(text)
            if target:
                Path(target).write_text(text)


async def exercise(kubectl: Kubectl, sim: KubeSim, manifest: Path) -> None:
    assert "tfjob.kubeflow.org/tfjob-simple created" in await kubectl("create", "-f", str(manifest))
    table = await kubectl("get", "tfjobs", "-n", "kubeflow")
    assert table.splitlines()[0].split() == ["NAME", "STATE", "AGE"] and "tfjob-simple" in table
    obj: dict[str, Any] = json.loads(await kubectl("get", "tfjob", "tfjob-simple", "-n", "kubeflow", "-o", "json",
                                                stdout_only=True))
    assert obj["kind"] == "TFJob" and obj["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert "patched" in await kubectl("patch", "tfjob", "tfjob-simple", "-n", "kubeflow", "--type=merge",
                                      "-p", '{"metadata":{"labels":{"team":"vision"}}}')
    assert sim.store.get(TFJOBS, "kubeflow", "tfjob-simple")["metadata"]["labels"] == {"team": "vision"}
    refused = await kubectl("patch", "tfjob", "tfjob-simple", "-n", "kubeflow", "-p",
                            '{"metadata":{"labels":{"team":"x"}}}', expect=1)
    assert "the body of the request was in an unknown format" in refused
    missing = await kubectl("get", "tfjob", "nope", "-n", "kubeflow", expect=1)
    assert 'tfjobs.kubeflow.org "nope" not found' in missing
    sim.store.create(PODS, {"metadata": {"name": "tfjob-simple-worker-0", "namespace": "kubeflow"},
                            "spec": {"containers": [{"name": "tensorflow", "image": "x"}]},
                            "status": {"phase": "Running"}})
    sim.store.append_log("kubeflow", "tfjob-simple-worker-0", "tensorflow", "step 1 loss 0.9\nstep 2 loss 0.4\n")
    logs = await kubectl("logs", "tfjob-simple-worker-0", "-n", "kubeflow", "--tail=1", stdout_only=True)
    assert logs == "step 2 loss 0.4\n"

    async def finish_training() -> None:
        await asyncio.sleep(0.3)
        sim.store.append_log("kubeflow", "tfjob-simple-worker-0", "tensorflow", "step 3 loss 0.1\n")
        sim.store.update_status(PODS, "kubeflow", "tfjob-simple-worker-0", {"phase": "Succeeded"})

    finisher = asyncio.create_task(finish_training())
    followed = await kubectl("logs", "-f", "tfjob-simple-worker-0", "-n", "kubeflow", stdout_only=True)
    await finisher
    assert followed == "step 1 loss 0.9\nstep 2 loss 0.4\nstep 3 loss 0.1\n"
    assert 'tfjob.kubeflow.org "tfjob-simple" deleted' in await kubectl("delete", "tfjob", "tfjob-simple",
                                                                         "-n", "kubeflow")
    assert "No resources found in kubeflow namespace." in await kubectl("get", "tfjobs", "-n", "kubeflow")


async def test_kubectl_against_jobsets(kubectl_binary: str, tmp_path: Path) -> None:
    body = tf_jobset("j1", {"worker": 2}, annotations={"kubesim.clever.dev/scenario": "hold"})
    manifest = tmp_path / "jobset.yaml"
    manifest.write_text(yaml.safe_dump(body, sort_keys=False))
    async with KubeSim(namespaces=("default",), tfjob_operator=None, volcano=False, jobset=True,
                       time_scale=0.01) as sim:
        kubectl = Kubectl(kubectl_binary, sim.write_kubeconfig(tmp_path / "kubeconfig"))
        try:
            await exercise_jobsets(kubectl, sim, manifest)
        finally:
            (tmp_path / "transcript.txt").write_text("".join(kubectl.transcript))


async def exercise_jobsets(kubectl: Kubectl, sim: KubeSim, manifest: Path) -> None:
    assert "jobset.jobset.x-k8s.io/j1 created" in await kubectl("create", "-f", str(manifest))
    table = await kubectl("get", "jobsets", stdout_only=True)
    assert table.splitlines()[0].split() == ["NAME", "TERMINALSTATE", "RESTARTS", "COMPLETED", "SUSPENDED", "AGE"]
    assert table.splitlines()[1].split()[:1] == ["j1"]
    await wait_for(lambda: len([p for p in sim.store.list(PODS, "default")[0]
                                if p["status"].get("phase") == "Running"]) == 2, "2 running pods")
    # `jobs` means batch/v1 here even with Volcano's jobs served: built-in groups come first
    jobs = await kubectl("get", "jobs", stdout_only=True)
    assert jobs.splitlines()[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert jobs.splitlines()[1].split()[:3] == ["j1-worker-0", "Running", "0/2"]
    pods = await kubectl("get", "pods", "-l", "jobset.sigs.k8s.io/jobset-name=j1", "-o", "name", stdout_only=True)
    assert len(pods.split()) == 2 and all(p.startswith("pod/j1-worker-0-") for p in pods.split())
    sim.controllers.set_job_scenario("default", "j1", "succeed:after=1")
    await wait_for(lambda: (sim.store.get(JOBSETS, "default", "j1").get("status") or {}).get("terminalState"),
                   "JobSet finished", attempts=1500)
    table = await kubectl("get", "jobsets", stdout_only=True)
    assert table.splitlines()[1].split()[:4] == ["j1", "Completed", "0", "True"]
    jobs = await kubectl("get", "jobs", stdout_only=True)
    assert jobs.splitlines()[1].split()[:3] == ["j1-worker-0", "Complete", "2/2"]
    obj = json.loads(await kubectl("get", "jobset", "j1", "-o", "json", stdout_only=True))
    assert obj["status"]["terminalState"] == "Completed"
    assert obj["spec"]["replicatedJobs"][0]["template"]["spec"]["completionMode"] == "Indexed"
    assert 'jobset.jobset.x-k8s.io "j1" deleted' in await kubectl("delete", "jobset", "j1")
    await wait_for(lambda: not sim.store.list(BATCH_JOBS, "default")[0], "Jobs collected")
    assert "No resources found in default namespace." in await kubectl("get", "jobs")
