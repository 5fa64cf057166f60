"""Reads served from the Redis cache vs the same data read straight from the cluster, as ratios.

One process: KubeSim (training-operator, HTTPS on loopback), the real gateway on a loopback port, the
real Redis on 127.0.0.1:6379 under a throw-away prefix (deleted afterwards). N jobs (default 200) are
created through the legacy API and left running (scenario `hold`). Then, sequentially:

- GET one job: (a) through the gateway over HTTP (record + status from Redis, watch live);
  (b) direct: the gateway's own `ClusterClient` GETs the TFJob and LISTs its pods, then
  `from_cluster_object` + `job_status` + `render_job` -- what a gateway without the cache would do.
- LIST the partition (N jobs): (a) through the gateway over HTTP; (b) direct: LIST TFJobs + LIST pods
  of the namespace, then translate and render each job.

Prints requests/s for each and the ratio cache/direct (> 1 means the cache is faster). The direct path
skips the gateway's HTTP layer, so the ratio understates the cache's advantage. Never asserts.

Run: `.venv/bin/python bench/bench_reads.py [--jobs 200] [--gets 500] [--lists 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from gateway.appkeys import CLUSTERS
from gateway.kube import PODS, ClusterClient
from tests.service.backends_harness import PARTITION, MultiCluster, small_body, wait_for
from translators.backends import MANAGED_SELECTOR, from_cluster_object, job_status, pod_selector
from translators.clever import render_job, render_list
from translators.labels import LABEL_JOB_ID

CID = "to"


async def rate(fn: Callable[[], Awaitable[Any]], count: int) -> float:
    """Requests per second of `count` sequential calls of fn (after a short warm-up)."""
    for _ in range(min(20, count)):
        await fn()
    start = time.perf_counter()
    for _ in range(count):
        await fn()
    return count / (time.perf_counter() - start)


async def direct_get(cluster: ClusterClient, obj_name: str, job_id: str) -> dict[str, Any]:
    """One legacy job read straight from the cluster."""
    obj = await cluster.get(cluster.ref(cluster.jobs, PARTITION, obj_name))
    pods = await cluster.list(cluster.ref(PODS, PARTITION), label_selector=pod_selector(job_id))
    spec, identity = from_cluster_object(obj)
    return render_job(spec, identity, job_status(obj, pods.items, profile=cluster.profile))


async def direct_list(cluster: ClusterClient) -> dict[str, Any]:
    """The partition's legacy list read straight from the cluster (two LISTs, then translation)."""
    jobs = await cluster.list(cluster.ref(cluster.jobs, PARTITION), label_selector=MANAGED_SELECTOR)
    pods = await cluster.list(cluster.ref(PODS, PARTITION), label_selector=MANAGED_SELECTOR)
    by_job: dict[str, list[dict[str, Any]]] = {}
    for pod in pods.items:
        by_job.setdefault(pod["metadata"].get("labels", {}).get(LABEL_JOB_ID, ""), []).append(pod)
    items = []
    for obj in jobs.items:
        spec, identity = from_cluster_object(obj)
        items.append(render_job(spec, identity, job_status(obj, by_job.get(identity.id, []), profile=cluster.profile)))
    return render_list(items)


async def run(jobs: int, gets: int, lists: int) -> None:
    """Create the jobs, check both paths agree, then measure and print."""
    async with MultiCluster(f"bench:{uuid.uuid4().hex}:", cluster_ids=(CID,)) as mc:
        mc.sims[CID].controllers.set_default_scenario("hold")
        created = [await mc.create(CID, small_body(f"bench-{i}")) for i in range(jobs)]

        async def all_running() -> bool:
            listing = (await mc.call("GET", mc.jobs_url(CID)))[1]
            return listing["metadata"]["total"] == jobs and all(
                item["status"]["phase"] == "running" and item["status"]["replicas"] for item in listing["items"])

        await wait_for(all_running, timeout=120, interval=0.5, what=f"{jobs} jobs running")
        cluster = mc.app[CLUSTERS].get(CID)
        one = created[jobs // 2]
        job_id, obj_name = one["metadata"]["id"], mc.k8s_name(one)
        job_url = f"{mc.jobs_url(CID)}/{job_id}"

        # Both paths must describe the same job before their speed means anything.
        cached = await mc.get(CID, job_id)
        direct = await direct_get(cluster, obj_name, job_id)
        same = (cached["status"]["phase"], cached["spec"]) == (direct["status"]["phase"], direct["spec"])
        cached_list = (await mc.call("GET", mc.jobs_url(CID)))[1]
        direct_listing = await direct_list(cluster)
        same_list = cached_list["metadata"]["total"] == direct_listing["metadata"]["total"] == jobs

        async def gateway_get() -> None:
            await mc.call("GET", job_url)

        async def gateway_list() -> None:
            await mc.call("GET", mc.jobs_url(CID))

        get_cache = await rate(gateway_get, gets)
        get_direct = await rate(lambda: direct_get(cluster, obj_name, job_id), gets)
        list_cache = await rate(gateway_list, lists)
        list_direct = await rate(lambda: direct_list(cluster), lists)

    print(f"reads of {jobs} running jobs, one process, loopback (KubeSim HTTPS, gateway HTTP, Redis)")
    print(f"same data on both paths: get={same} list={same_list}")
    print(f"{'read':<24}{'cache req/s':>14}{'direct req/s':>14}{'cache/direct':>14}")
    print(f"{'GET one job':<24}{get_cache:>14.1f}{get_direct:>14.1f}{get_cache / get_direct:>14.2f}")
    print(f"{f'LIST {jobs} jobs':<24}{list_cache:>14.1f}{list_direct:>14.1f}{list_cache / list_direct:>14.2f}")
    print(f"(GET x{gets}, LIST x{lists}, sequential; direct = gateway's ClusterClient + translators, no HTTP layer)")


def main() -> None:
    """Parse the bounds and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the partition")
    parser.add_argument("--gets", type=int, default=500, help="GET requests per path")
    parser.add_argument("--lists", type=int, default=50, help="LIST requests per path")
    args = parser.parse_args()
    # Request logs would dominate the measurement and bury the result.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    logging.disable(logging.CRITICAL)
    asyncio.run(run(args.jobs, args.gets, args.lists))


if __name__ == "__main__":
    main()
