"""The real kubectl against kubesim with a kubeconfig from `write_kubeconfig` (HTTPS + bearer token):
create -f, get, get -o json, patch --type=merge (and the strategic-merge refusal), logs (and -f), delete.

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

from kubesim.store import PODS, TFJOBS
from kubesim.testing import KubeSim

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
