"""Each failure, on each backend, driven through the gateway: the legacy status tells the truth.

For every (backend, case) of `FAILURE_CASES` a one-worker job is created through the legacy API on a
KubeSim cluster of that backend, its pods follow the case's scenario, and GET must show the expected
`status.phase`, the additive job-level `reason`/`message`, and replica entries whose `reason`,
`exitCode`, `node`, `type` and `index` match what the pods really did. The same flows print the user
table of `bench/status_report.py`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from gateway import appkeys
from gateway.state import StatusUpdate
from gateway.workers.sync import ClusterSync
from tests.service.backends_harness import FAILURE_CASES, FailureCase, MultiCluster, run_case, wait_for
from translators.spec import JobStatus

SUPPORTED = [pytest.param(cid, case, id=f"{cid}-{case.key}") for case in FAILURE_CASES for cid in case.expected]


def check_replicas(status: dict[str, Any], *, unscheduled: bool) -> None:
    """Every replica entry is the job's one worker, with a node exactly when it was scheduled."""
    for replica in status["replicas"]:
        assert (replica["type"], replica["index"]) == ("worker", 0), replica
        # The pod's name: <job>-worker-0 (TFJob, Volcano), <jobset>-worker-0-0-<5 random> (JobSet).
        assert replica["id"].endswith("-worker-0") or "-worker-0-0-" in replica["id"], replica
        assert isinstance(replica["restartCount"], int)
        if unscheduled:
            assert replica["node"] is None and replica["status"] == "Pending", replica
        elif replica["status"] == "Pending" and (replica["message"] or "").startswith("last failure: "):
            pass  # the replacement of the pod that failed: scheduled or not yet, either is the truth
        else:
            assert replica["node"], replica


@pytest.mark.parametrize(("cid", "case"), SUPPORTED)
async def test_failure_status_tells_the_truth(cid: str, case: FailureCase) -> None:
    expected = case.expected[cid]
    async with MultiCluster(f"test:{uuid.uuid4().hex}:", cluster_ids=(cid,)) as mc:
        job = await run_case(mc, cid, case)
    status = job["status"]
    assert status["phase"] in expected.phases
    assert status["reason"] == expected.reason
    assert expected.told_in(status["message"]), status["message"]
    check_replicas(status, unscheduled=expected.reason == "Unschedulable")
    if expected.replica_reason is not None:
        (replica,) = status["replicas"]
        assert (replica["reason"], replica["exitCode"]) == (expected.replica_reason, expected.exit_code)
        if expected.replica_reason in ("Evicted", "Unschedulable", "ImagePullBackOff"):
            # Their cause is in words (a container exit has only its code unless the program wrote one).
            assert replica["message"], replica
        # The job's message names the pod that tells the story.
        assert replica["id"] in status["message"]
    if status["phase"] == "failed":
        assert status["completionTime"], status


async def test_a_new_watcher_still_knows_the_last_failure() -> None:
    """The pods that failed are gone; a replica taking the watch over reads the last failure from Redis."""
    case = next(c for c in FAILURE_CASES if c.key == "fail:exit=3")
    async with MultiCluster(f"test:{uuid.uuid4().hex}:", cluster_ids=("vc",)) as mc:
        job = await run_case(mc, "vc", case)
        told = job["status"]["message"]
        assert "last failure: " in told
        old = mc.app[appkeys.SYNCS]["vc"]
        old.stop()
        await wait_for(lambda: _not(old.leading), what="old watcher stopped")
        state = mc.app[appkeys.STATE]
        forget = StatusUpdate("vc", job["metadata"]["partition"], job["metadata"]["id"], JobStatus(phase="pending"),
                              time.time())
        assert await state.jobs.publish([forget]) == [1]  # forget it was told
        fresh = ClusterSync(old.cluster, state, statuses=mc.app[appkeys.STATUSES],
                            settings=mc.app[appkeys.SETTINGS].sync, holder="gw-new")
        task = asyncio.create_task(fresh.run())
        try:
            again = await mc.wait_phase("vc", job["metadata"]["id"], "failed")
            assert again["status"]["message"] == told
            # Deleting the job drops what was remembered about it.
            await mc.call("DELETE", f"{mc.jobs_url('vc')}/{job['metadata']['id']}")

            async def forgotten() -> bool:
                return job["metadata"]["id"] not in await state.watch.last_failures("vc")

            await wait_for(forgotten, what="last failure forgotten")
        finally:
            fresh.stop()
            await task


async def _not(value: bool) -> bool:
    return not value
