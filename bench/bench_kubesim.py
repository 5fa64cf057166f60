"""How kubesim's create rate holds up as it fills: creates/s per band of jobs, as ratios.

Starts kubesim as `python -m kubesim` on a loopback port (HTTPS, its own CA, scenario `hold` so every
job keeps its pods running, time scale 1), then fills it to N TFJobs (default 10,000) with `--concurrency`
creates in flight (default 16, one aiohttp session trusting kubesim's CA). Each job has `--replicas`
workers (default 1), so the simulated operator adds a pod, a service and events per replica and the
kubelet moves every pod to Running while the fill goes on. `--kind jobset` creates JobSets instead, shaped
as the gateway's jobset backend writes them (one Indexed replicated job of `--replicas` pods, backoffLimit
0, TF_CONFIG with `$(TF_TASK_INDEX)` from the completion index when distributed): the JobSet controller
adds a headless Service and a batch/v1 Job per JobSet, the Job controller its pods, the kubelet runs them.
Optionally `--watchers` watch streams (alternately jobs and pods of the namespace, each with a label
selector, as a gateway holds them) are read throughout.

Prints creates/s for each band of `--band` jobs (default 1,000) and the ratio of the last band to the
first (1.0 = no slow-down as it fills); then waits (bounded) until every job's pods run, and prints how
long that took and kubesim's resident memory. Writes all of it as JSON to `--out` (default
bench/results/kubesim.json). Never asserts times; exits non-zero only if kubesim fails to start, a create
fails, or the pods never all run.

`--quick` makes it small (a few hundred jobs, simulated time 10x faster) to prove the script works.

Run: `.venv/bin/python bench/bench_kubesim.py [--jobs 10000] [--band 1000] [--concurrency 16] [--kind jobset]
[--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
TOKEN = "bench-token"
TFJOBS = f"/apis/kubeflow.org/v1/namespaces/{NAMESPACE}/tfjobs"
JOBSETS = f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NAMESPACE}/jobsets"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
JOB_LABEL = "bench.kubesim/run"
START_TIMEOUT = 30.0  # seconds for kubesim to print its URL


@dataclass
class Band:
    """Creates completed between two fill levels."""

    first: int  # jobs in the store when the band started
    last: int  # jobs in the store when it ended
    seconds: float
    creates_per_s: float
    # kubesim's own CPU time per create (user + system): unlike creates/s, it hardly depends on what else
    # the machine runs at the time
    cpu_ms_per_create: float | None
    client_cpu_ms_per_create: float  # this script's, for comparison: the clients need CPU too


@dataclass
class Result:
    """Everything one run measured; written as JSON."""

    jobs: int
    kind: str  # tfjob | jobset
    band: int
    concurrency: int
    replicas: int
    watchers: int
    time_scale: float
    operator: str
    bands: list[Band] = field(default_factory=list)
    last_to_first: float = 0.0
    fill_seconds: float = 0.0
    settle_seconds: float | None = None
    pods_running: int = 0
    watch_events: int = 0
    rss_mb: float | None = None


def tfjob(index: int, replicas: int, run_id: str) -> dict[str, Any]:
    """A gateway-like TFJob: `replicas` workers, one CPU each, labelled for this run."""
    name = f"bench-{index:06d}"
    container = {"name": "tensorflow", "image": "tensorflow/tensorflow:2.15.0",
                 "command": ["python", "/clever/train.py"],
                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}
    return {
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob",
        "metadata": {"name": name, "labels": {JOB_LABEL: run_id, "bench.kubesim/index": str(index)}},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": {"Worker": {
            "replicas": replicas, "restartPolicy": "Never",
            "template": {"metadata": {"labels": {JOB_LABEL: run_id}}, "spec": {"containers": [container]}}}}},
    }


def jobset(index: int, replicas: int, run_id: str) -> dict[str, Any]:
    """A JobSet as the gateway's jobset backend writes one: `replicas` workers in one Indexed Job, one CPU
    each, worker 0 finishing ends it, labelled for this run."""
    name = f"bench-{index:06d}"
    container: dict[str, Any] = {
        "name": "tensorflow", "image": "tensorflow/tensorflow:2.15.0", "command": ["python", "/clever/train.py"],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}
    if replicas > 1:
        hosts = json.dumps([f"{name}-worker-0-{i}.{name}:2222" for i in range(replicas)], separators=(",", ":"))
        container["env"] = [
            {"name": "TF_TASK_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
            {"name": "TF_CONFIG", "value": f'{{"cluster":{{"worker":{hosts}}},'
                                           f'"task":{{"type":"worker","index":$(TF_TASK_INDEX)}},"environment":"cloud"}}'}]
    job = {"parallelism": replicas, "completions": replicas, "completionMode": "Indexed", "backoffLimit": 0,
           "successPolicy": {"rules": [{"succeededIndexes": "0"}]},
           "template": {"metadata": {"labels": {JOB_LABEL: run_id}},
                        "spec": {"restartPolicy": "Never", "containers": [container]}}}
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": name, "labels": {JOB_LABEL: run_id, "bench.kubesim/index": str(index)}},
        "spec": {"network": {"enableDNSHostnames": True},
                 "successPolicy": {"operator": "All", "targetReplicatedJobs": ["worker"]},
                 "replicatedJobs": [{"name": "worker", "replicas": 1, "template": {"spec": job}}]},
    }


@contextlib.asynccontextmanager
async def kubesim(time_scale: float, operator: str) -> AsyncIterator[tuple[str, str, int]]:
    """A `python -m kubesim` subprocess on an ephemeral loopback port: (url, CA file, pid)."""
    with tempfile.TemporaryDirectory(prefix="bench-kubesim-") as tmp:
        log_path = Path(tmp) / "kubesim.log"
        with log_path.open("w") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kubesim", "--port", "0", "--token", TOKEN, "--namespaces", NAMESPACE,
                "--scenario", "hold", "--time-scale", str(time_scale), "--tfjob-operator", operator, cwd=str(ROOT),
                stdout=subprocess.PIPE, stderr=log_file)
            try:
                url, ca_file = await asyncio.wait_for(_read_address(process), START_TIMEOUT)
                yield url, ca_file, process.pid
            except (TimeoutError, RuntimeError) as e:
                raise RuntimeError(f"kubesim did not start: {e}; log: {log_path.read_text()[-2000:]}") from e
            finally:
                if process.returncode is None:
                    process.terminate()
                    try:
                        await asyncio.wait_for(process.wait(), 10)
                    except TimeoutError:
                        process.kill()
                        await process.wait()


async def _read_address(process: asyncio.subprocess.Process) -> tuple[str, str]:
    assert process.stdout is not None
    url = ca_file = ""
    while not (url and ca_file):
        line = (await process.stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"kubesim exited with {await process.wait()}")
        if m := re.match(r"kubesim listening on (\S+)", line):
            url = m[1]
        elif m := re.match(r"CA certificate: (\S+)", line):
            ca_file = m[1]
    return url, ca_file


async def fill(session: aiohttp.ClientSession, url: str, pid: int, result: Result, run_id: str) -> None:
    """Create result.jobs TFJobs (or JobSets), `concurrency` in flight, timing every band of result.band creates."""
    path, body = (JOBSETS, jobset) if result.kind == "jobset" else (TFJOBS, tfjob)
    next_index = 0
    done = 0
    band_start = time.perf_counter()
    band_cpu = cpu_seconds(pid)
    band_client_cpu = time.process_time()
    fill_start = band_start

    async def worker() -> None:
        nonlocal next_index, done, band_start, band_cpu, band_client_cpu
        while next_index < result.jobs:
            index = next_index
            next_index += 1
            async with session.post(url + path, json=body(index, result.replicas, run_id)) as response:
                if response.status != 201:
                    raise RuntimeError(f"create {index}: HTTP {response.status}: {(await response.text())[:500]}")
                await response.read()
            done += 1
            if done % result.band == 0 or done == result.jobs:
                now, cpu, client_cpu = time.perf_counter(), cpu_seconds(pid), time.process_time()
                first = result.bands[-1].last if result.bands else 0
                seconds = now - band_start
                cpu_ms = round((cpu - band_cpu) * 1000 / (done - first), 3) if cpu and band_cpu else None
                client_ms = round((client_cpu - band_client_cpu) * 1000 / (done - first), 3)
                band = Band(first, done, round(seconds, 3), round((done - first) / seconds, 1), cpu_ms, client_ms)
                result.bands.append(band)
                print(f"  jobs {first:>6}..{done:<6} {band.creates_per_s:>9.1f} creates/s"
                      + (f"  {cpu_ms:6.2f} kubesim CPU ms/create" if cpu_ms is not None else "")
                      + f"  {client_ms:6.2f} client CPU ms/create", flush=True)
                band_start, band_cpu, band_client_cpu = now, cpu, client_cpu

    await asyncio.gather(*(worker() for _ in range(result.concurrency)))
    result.fill_seconds = round(time.perf_counter() - fill_start, 3)
    first_rate, last_rate = result.bands[0].creates_per_s, result.bands[-1].creates_per_s
    result.last_to_first = round(last_rate / first_rate, 3) if first_rate else 0.0


async def watch(session: aiohttp.ClientSession, url: str, path: str, run_id: str, counter: list[int]) -> None:
    """Read one watch stream until cancelled, counting its events (re-watching from now if it ends)."""
    while True:
        query = {"watch": "1", "labelSelector": f"{JOB_LABEL}={run_id}", "allowWatchBookmarks": "true"}
        listing = await (await session.get(url + path, params={"labelSelector": query["labelSelector"],
                                                               "limit": "1"})).json()
        query["resourceVersion"] = listing["metadata"]["resourceVersion"]
        async with session.get(url + path, params=query, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for _ in response.content:
                counter[0] += 1


async def count(session: aiohttp.ClientSession, url: str, path: str, **params: str) -> int:
    """How many objects a LIST matches, read with limit=1 (items + remainingItemCount)."""
    async with session.get(url + path, params={"limit": "1", **params}) as response:
        body = await response.json()
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)


async def settle(session: aiohttp.ClientSession, url: str, result: Result, run_id: str, timeout: float) -> None:
    """Wait (bounded) until every pod of every job runs."""
    wanted = 0 if result.kind == "tfjob" and result.operator == "none" else result.jobs * result.replicas
    start = time.perf_counter()
    while True:
        result.pods_running = await count(session, url, PODS, labelSelector=f"{JOB_LABEL}={run_id}",
                                          fieldSelector="status.phase=Running")
        if result.pods_running >= wanted:
            result.settle_seconds = round(time.perf_counter() - start, 3)
            return
        if time.perf_counter() - start > timeout:
            return
        await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux), or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        # fields after the parenthesised command name; utime and stime are the 12th and 13th of them
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB (Linux), or None."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


async def run(args: argparse.Namespace) -> Result:
    """Start kubesim, fill it, let it settle, measure."""
    result = Result(jobs=args.jobs, kind=args.kind, band=args.band, concurrency=args.concurrency, replicas=args.replicas,
                    watchers=args.watchers, time_scale=args.time_scale, operator=args.tfjob_operator)
    run_id = f"r{os.getpid()}"
    async with kubesim(args.time_scale, args.tfjob_operator) as (url, ca_file, pid):
        context = ssl.create_default_context(cafile=ca_file)
        connector = aiohttp.TCPConnector(ssl=context, limit=args.concurrency + args.watchers + 1)
        async with aiohttp.ClientSession(connector=connector,
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as session:
            counter = [0]
            jobs_path, kind = (JOBSETS, "JobSets") if args.kind == "jobset" else (TFJOBS, "TFJobs")
            watchers = [asyncio.create_task(watch(session, url, jobs_path if i % 2 == 0 else PODS, run_id, counter))
                        for i in range(args.watchers)]
            print(f"kubesim at {url}: {args.jobs} {kind} x {args.replicas} worker(s), {args.concurrency} in flight,"
                  f" {args.watchers} watcher(s)", flush=True)
            try:
                await fill(session, url, pid, result, run_id)
                await settle(session, url, result, run_id, args.settle_timeout)
            finally:
                for task in watchers:
                    task.cancel()
                for task in watchers:
                    with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                        await task
            result.watch_events = counter[0]
        result.rss_mb = rss_mb(pid)
    return result


def report(result: Result) -> None:
    """The human-readable summary."""
    print(f"last band / first band: {result.last_to_first:.2f}  "
          f"({result.bands[-1].creates_per_s:.1f} vs {result.bands[0].creates_per_s:.1f} creates/s)")
    print(f"fill: {result.fill_seconds:.1f} s; pods running: {result.pods_running}/{result.jobs * result.replicas}"
          + (f" after {result.settle_seconds:.1f} s more" if result.settle_seconds is not None else " (timed out)"))
    if result.watchers:
        print(f"watch events read: {result.watch_events}")
    if result.rss_mb is not None:
        print(f"kubesim resident memory: {result.rss_mb:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="TFJobs (or JobSets) to create")
    parser.add_argument("--kind", default="tfjob", choices=["tfjob", "jobset"],
                        help="what to create: TFJobs, or JobSets as the gateway's jobset backend writes them")
    parser.add_argument("--band", type=int, default=1_000, help="jobs per measured band")
    parser.add_argument("--concurrency", type=int, default=16, help="creates in flight")
    parser.add_argument("--replicas", type=int, default=1, help="workers (pods) per TFJob or JobSet")
    parser.add_argument("--watchers", type=int, default=0, help="watch streams read during the fill")
    parser.add_argument("--time-scale", type=float, default=1.0, help="kubesim real seconds per simulated second")
    parser.add_argument("--tfjob-operator", default="training-operator",
                        choices=["training-operator", "tf-operator", "none"],
                        help="kubesim's simulated operator (none: the API server alone, no pods)")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="seconds to wait for all pods to run")
    parser.add_argument("--quick", action="store_true", help="a few hundred jobs: proves the script works")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kubesim.json",
                        help="JSON result file")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.band, args.time_scale, args.settle_timeout = 300, 100, 0.1, 30.0
    if args.jobs < 1 or args.band < 1 or args.concurrency < 1 or args.replicas < 1:
        parser.error("--jobs, --band, --concurrency and --replicas must be positive")
    result = asyncio.run(run(args))
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(f"written: {args.out}")
    return 0 if result.settle_seconds is not None else 1


if __name__ == "__main__":
    sys.exit(main())
