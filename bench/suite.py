"""clever-gateway's benchmark suite: each figure a ratio against a reference measured in the same run.

What runs where, and how two sides are compared: `bench/harness.py`. What is measured:

Phase 1, with one user's 100 jobs and another's 1,000 in the partition: GET one job (64 connections)
and the two LISTs (16) against the baseline serving the very same bytes from the same Redis; PATCH
of a description through the gateway against the same change sent straight to kubesim as a merge
patch (sequential: p50; 16 in flight: req/s); a mix of 80% GET, 10% LIST, 10% PATCH at 64, 256 and
1,024 connections against the baseline's GET; GET with a cached OIDC token against auth off (two
extra gateway replicas, a local OIDC issuer); creates through the gateway against the TFJob the
gateway makes sent straight to kubesim (new names). Phase 2, after filling the partition to `--jobs`
N with users of 100 jobs: Redis bytes per job and the gateway's RSS; GET one job and the 100-job
user's LIST again; event to visible (TFJobs turn Succeeded on the cluster while wrk GETs at full
load: from the suite's own watch seeing it to a polled legacy GET answering `succeeded`).

Nothing here judges the figures. Run: `./run bench [--quick] [--jobs N] [--out FILE] [--profile]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import report
from bench.baseline import KEY_PREFIX as BASELINE_PREFIX
from bench.clients import JOB_ID_LABEL, JOBS_PATH, OWNER_LABEL, TFJOBS, HttpError, Legacy, job_body, retry
from bench.harness import BENCH_ADMIN, KEY_PREFIX, MEASURE_NICENESS, ROOT, TOKEN, Harness, Plan, Side
from bench.procs import rss_bytes, wait_until
from bench.wrk import UNIQ, Req

DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
GET_USER = "bench-get"
SMALL_USER = "bench-list-small"
LARGE_USER = "bench-list-large"
EVENT_USER = "bench-event"
CREATE_USER = "bench-create"
DIRECT_USER = "bench-direct"
TEMPLATE_NAME = "benchtpl"
FILL_PER_USER = 100
POLL_SECONDS = 0.002

PHASE1 = ("get_one_job", "list_small", "list_large", "patch_sequential", "patch_in_flight",
          "mixed_64", "mixed_256", "mixed_1024", "oidc_get", "create_sequential", "create_in_flight")
PHASE2 = ("memory", "get_one_job_at_n", "list_small_of_n", "event_to_visible")
SCENARIOS = PHASE1 + PHASE2
WRITE_KINDS = (("sequential", 1, "p50"), ("in_flight", 16, "rps"))  # key suffix, connections, ratio of
JSON = {"Content-Type": "application/json"}


class Suite(Harness):
    """The scenarios, in order (see module docstring)."""

    async def guard(self, keys: Sequence[str], step: Callable[[], Awaitable[Any]]) -> None:
        """Run one step; a failure is recorded against its scenarios (kind `error`) and the run goes on."""
        try:
            await step()
        except Exception as e:  # noqa: BLE001 - one scenario's failure must not cost the others
            traceback.print_exc()
            error = f"{type(e).__name__}: {e}"
            for key in keys:
                self.scenarios.setdefault(key, {"title": key, "kind": "error", "error": error})
            self.notes.append(f"{', '.join(keys) or 'a step'} failed: {error[:300]}")

    async def ids_of(self, user: str) -> list[str]:
        """The user's job ids, oldest first."""
        return [item["metadata"]["id"] for item in await self.api.list(user)]

    async def object_names(self, user: str) -> dict[str, str]:
        """job id -> TFJob name, for the user's jobs on the cluster."""
        listing = await self.kube.list_tfjobs(f"{OWNER_LABEL}={user}")
        return {o["metadata"]["labels"][JOB_ID_LABEL]: o["metadata"]["name"] for o in listing["items"]}

    # ----- phase 1 -----------------------------------------------------------------------------------

    async def setup_phase1(self) -> None:
        """One job to GET, a template for direct creates, the event jobs, the two list users; the
        payloads the baseline serves."""
        self.redis_used_start = int((await self.redis.info("memory"))["used_memory"])
        self.gateway_rss_start = rss_bytes(self.gateway.pid)
        got = await retry("create the GET job", lambda: self.api.create(GET_USER, job_body("bench-get")))
        self.get_id = got["metadata"]["id"]
        template = await retry("create the template job",
                               lambda: self.api.create(DIRECT_USER, job_body(TEMPLATE_NAME)))
        self.template_id = template["metadata"]["id"]
        await self.fill({EVENT_USER: self.plan.event_jobs}, "fill event jobs")
        counts = await self.fill({SMALL_USER: self.plan.list_small, LARGE_USER: self.plan.list_large},
                                 "fill list users")
        self.counts.update(list_small=counts[SMALL_USER], list_large=counts[LARGE_USER])

        async def get_job_running() -> bool:
            return bool((await self.api.get(GET_USER, self.get_id))["status"]["phase"] == "running")

        try:
            await wait_until(get_job_running, timeout=60, what="the GET job to run")
        except RuntimeError:
            self.notes.append("the GET job was not running after 60 s: its payload has no replicas")
        self.job_bytes = await self.api.get_raw(GET_USER, self.get_id)
        await self.store_payload("job", self.job_bytes)
        await self.store_payload("list-small", await self.api.list_raw(SMALL_USER))
        await self.store_payload("list-large", await self.api.list_raw(LARGE_USER))
        self.large_ids = await self.ids_of(LARGE_USER)
        self.counts["job_bytes"] = len(self.job_bytes)
        self.counts["phase1_partition_jobs"] = await self.kube.count_tfjobs()

    async def phase1(self) -> None:
        """GET, LISTs, PATCH, mixed, OIDC, creates."""
        plan = self.plan
        total = self.counts["phase1_partition_jobs"]
        get_script = self.script({"get": self.get_reqs(GET_USER, [self.get_id])})
        if plan.wants("get_one_job"):
            sides = [self.gateway_side(get_script), self.baseline_side("job")]
            await self.guard(["get_one_job"], lambda: self.compare(
                "get_one_job", f"GET one job ({len(self.job_bytes)} B)", sides, connections=plan.connections,
                params={"partition_jobs": total, "payload_bytes": len(self.job_bytes)}))
            if plan.profile:
                await self.guard([], lambda: self.profile("get_one_job", get_script, plan.connections))
        for key, user, payload in (("list_small", SMALL_USER, "list-small"),
                                   ("list_large", LARGE_USER, "list-large")):
            if plan.wants(key):
                await self.guard([key], lambda key=key, user=user, payload=payload: self.list_scenario(
                    key, user, payload, f"LIST {self.counts[key]} (one user's, {total} in partition)"))
        patches = [k for k in ("patch_sequential", "patch_in_flight") if plan.wants(k)]
        if patches:
            await self.guard(patches, self.patches)
        for c in plan.mixed_connections:
            if plan.wants(f"mixed_{c}"):
                await self.guard([f"mixed_{c}"], lambda c=c: self.mixed(c))
        if plan.wants("oidc_get"):
            await self.guard(["oidc_get"], self.oidc)
        creates = [k for k in ("create_sequential", "create_in_flight") if plan.wants(k)]
        if creates:  # last: what they create stays (and counts towards phase 2's N)
            await self.guard(creates, self.creates)

    async def list_scenario(self, key: str, user: str, payload: str, title: str) -> None:
        """The user's LIST against the issue's baseline, the bare server's GET of one stored job (the ratio),
        and also against that server answering the same list bytes from one GET (`ratio_same_bytes`)."""
        script = self.script({"list": [Req("GET", JOBS_PATH, {"X-User": user})]})
        size = await self.redis.strlen(BASELINE_PREFIX + payload)
        jobs = self.counts["list_small" if user == SMALL_USER else "list_large"]
        same_bytes = self.baseline_side(payload)._replace(label="baseline-same-bytes")
        scenario = await self.compare(key, title, [self.gateway_side(script), self.baseline_side("job"), same_bytes],
                                      connections=self.plan.list_connections,
                                      params={"jobs_listed": jobs, "partition_jobs": await self.kube.count_tfjobs(),
                                              "payload_bytes": size})
        rps = {row["target"]: row.get("rps") for row in scenario["rows"]}
        if rps.get("gateway") and rps.get("baseline-same-bytes"):
            scenario["ratio_same_bytes"] = round(rps["gateway"] / rps["baseline-same-bytes"], 4)
        if self.plan.profile and key == "list_small":
            await self.guard([], lambda: self.profile(key, script, self.plan.list_connections))

    def patch_reqs(self, text: str) -> list[Req]:
        """A PATCH of the description of each of the large user's jobs (new text every request)."""
        body = json.dumps({"description": f"{text} {UNIQ}"})
        headers = {"X-User": LARGE_USER, **JSON}
        return [Req("PATCH", f"{JOBS_PATH}/{i}", headers, body) for i in self.large_ids]

    async def patches(self) -> None:
        """PATCH of a description, the large user's jobs in turn: through the gateway against the same
        change as a merge patch of the TFJob's description annotation straight to kubesim."""
        names = await self.object_names(LARGE_USER)
        merge = json.dumps({"metadata": {"annotations": {"clever.dev/description": f"bench patch {UNIQ}"}}})
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/merge-patch+json"}
        direct = [Req("PATCH", f"{TFJOBS}/{names[i]}", headers, merge) for i in self.large_ids if i in names]
        sides = [self.gateway_side(self.script({"patch": self.patch_reqs("bench patch")})),
                 self.kubesim_side(self.script({"patch": direct}))]
        params = {"jobs_patched_in_turn": len(self.large_ids)}
        for key, conns, ratio in WRITE_KINDS:
            if self.plan.wants(key := f"patch_{key}"):
                title = "PATCH description, " + ("sequential" if conns == 1 else f"{conns} in flight")
                await self.compare(key, title, sides, connections=conns, ratio=ratio, writes=True,
                                   rounds=self.plan.write_rounds, duration=self.plan.write_duration,
                                   params=params)

    async def mixed(self, connections: int) -> None:
        """80% GET of the large user's jobs in turn, 10% LIST of the small user's, 10% PATCH of a
        description, against the baseline's GET at the same connection count."""
        pools = {"get": self.get_reqs(LARGE_USER, self.large_ids),
                 "list": [Req("GET", JOBS_PATH, {"X-User": SMALL_USER})],
                 "patch": self.patch_reqs("bench mixed")}
        pattern = ["get", "get", "get", "get", "list", "get", "get", "get", "get", "patch"]
        await self.compare(f"mixed_{connections}", f"mixed 80 GET/10 LIST/10 PATCH @{connections}",
                           [self.gateway_side(self.script(pools, pattern)), self.baseline_side("job")],
                           connections=connections, writes=True,
                           params={"mix": {"get": 0.8, "list": 0.1, "patch": 0.1},
                                   "list_size": self.counts["list_small"],
                                   "reference": "baseline GET one job"})

    async def oidc(self) -> None:
        """GET one job with a cached OIDC token against auth off: two extra gateway replicas (same Redis,
        the watch stays with the main gateway), alike but for authentication."""
        sys.path.insert(0, str(ROOT))
        from tests.auth.issuer import LocalIssuer

        async with LocalIssuer() as issuer:
            token = issuer.mint(user=GET_USER, groups=["bench"])
            oidc_auth = {"mode": "oidc", "oidc": {"issuer": issuer.issuer, "audience": issuer.audience}}
            admin = {"Authorization": "Bearer " + issuer.mint(user="bench-admin", groups=["clever-admins"])}
            started = await asyncio.gather(self.start_gateway("gateway-authoff", {"mode": "none"}),
                                           self.start_gateway("gateway-oidc", oidc_auth, admin),
                                           return_exceptions=True)
            try:
                for outcome in started:
                    if isinstance(outcome, BaseException):
                        raise outcome
                (off, off_url), (on, on_url) = started
                checked = await Legacy(self.session, on_url, token=token).get(GET_USER, self.get_id)
                assert checked["metadata"]["id"] == self.get_id
                path = f"{JOBS_PATH}/{self.get_id}"
                bearer = {"Authorization": f"Bearer {token}"}
                sides = [Side("oidc", on_url, self.script({"g": [Req("GET", path, bearer)]}), on.pid),
                         Side("auth off", off_url, self.script({"g": self.get_reqs(GET_USER, [self.get_id])}),
                              off.pid)]
                await self.compare("oidc_get", "GET one job, OIDC cached token vs off", sides,
                                   connections=self.plan.connections,
                                   params={"replicas": "two extra gateways, neither holding the watch",
                                           "jwks_fetches": issuer.jwks_requests})
            finally:
                await asyncio.gather(*(self.procs.stop(outcome[0]) for outcome in started
                                       if not isinstance(outcome, BaseException)))

    # ----- phase 2 -----------------------------------------------------------------------------------

    async def setup_phase2(self) -> None:
        """Fill the partition to `--jobs` with users of 100 jobs; refresh the baseline's payloads."""
        have = await self.kube.count_tfjobs()
        missing = max(0, self.plan.jobs - have)
        users = math.ceil(missing / FILL_PER_USER)
        targets = {f"bench-fill-{i:03d}": min(FILL_PER_USER, missing - i * FILL_PER_USER)
                   for i in range(users)}
        if targets:
            report.progress(f"filling the partition from {have} to {self.plan.jobs} jobs ({users} users)")
            await self.fill(targets, "fill partition")
        self.counts["partition_jobs"] = await self.kube.count_tfjobs()
        await self.watch_live()
        job = await retry("GET the job", lambda: self.api.get_raw(GET_USER, self.get_id))
        await self.store_payload("job", job)
        await self.store_payload("list-small", await retry("LIST", lambda: self.api.list_raw(SMALL_USER)))

    async def watch_live(self) -> None:
        """Wait (at most 5 minutes) until the gateway's watch is live again: without it, reads go to the
        cluster (a stalled kubesim makes them time out), which is not what phase 2 measures."""
        async def live() -> bool:
            ping = await self.api.ping(BENCH_ADMIN)
            return bool(ping["clusters"]["c1"].get("watchLive"))

        try:
            await wait_until(live, timeout=300, what="the gateway's watch to be live", interval=1)
        except RuntimeError:
            self.notes.append("phase 2: the gateway's watch was not live after 5 minutes "
                              "(its reads go to the cluster)")

    async def phase2(self) -> None:
        """Memory, reads at N, event to visible."""
        plan, n = self.plan, self.counts["partition_jobs"]
        await self.watch_live()
        if plan.wants("memory"):
            await self.settle()
            await self.guard(["memory"], self.memory)
        if plan.wants("get_one_job_at_n"):
            sides = [self.gateway_side(self.script({"get": self.get_reqs(GET_USER, [self.get_id])})),
                     self.baseline_side("job")]
            await self.guard(["get_one_job_at_n"], lambda: self.compare(
                "get_one_job_at_n", f"GET one job, {n} in partition", sides, connections=plan.connections,
                params={"partition_jobs": n}))
        if plan.wants("list_small_of_n"):
            title = f"LIST {self.counts['list_small']} of {n} (one user's)"
            await self.guard(["list_small_of_n"], lambda: self.list_scenario(
                "list_small_of_n", SMALL_USER, "list-small", title))
        if plan.wants("event_to_visible"):
            await self.guard(["event_to_visible"], self.event_to_visible)

    async def memory(self) -> None:
        """Redis bytes per job (used_memory since the start, less the baseline's payloads, over the jobs;
        and MEMORY USAGE of up to 200 keys of each key family) and the gateway's RSS."""
        jobs = await self.kube.count_tfjobs()
        used = int((await self.redis.info("memory"))["used_memory"])
        payloads = 0
        async for key in self.redis.scan_iter(match=BASELINE_PREFIX + "*", count=1000):
            payloads += int(await self.redis.memory_usage(key, samples=0) or 0)
        families: Counter[str] = Counter()
        samples: dict[str, list[bytes]] = {}
        async for key in self.redis.scan_iter(match=KEY_PREFIX + "*", count=1000):
            family = key[len(KEY_PREFIX):].split(b":", 1)[0].decode(errors="replace")
            families[family] += 1
            if len(samples.setdefault(family, [])) < 200:
                samples[family].append(key)
        by_family = {}
        for family, count in families.most_common():
            sizes = [int(await self.redis.memory_usage(k, samples=0) or 0) for k in samples[family]]
            avg = sum(sizes) / len(sizes)
            by_family[family] = {"keys": count, "sampled": len(sizes), "avg_bytes": round(avg, 1),
                                 "est_total_bytes": round(avg * count)}
        per_job_keys = sum(f["est_total_bytes"] for f in by_family.values()) / max(jobs, 1)
        self.scenarios["memory"] = {
            "title": f"memory at {jobs} jobs", "kind": "memory", "params": {"partition_jobs": jobs},
            "redis": {"jobs": jobs, "used_memory": used, "used_memory_start": self.redis_used_start,
                      "baseline_payload_bytes": payloads,
                      "bytes_per_job": round((used - self.redis_used_start - payloads) / max(jobs, 1), 1),
                      "key_bytes_per_job": round(per_job_keys, 1), "families": by_family},
            "gateway_rss_bytes": rss_bytes(self.gateway.pid),
            "gateway_rss_start_bytes": self.gateway_rss_start,
            "baseline_rss_bytes": rss_bytes(self.baseline_proc.pid),
            "kubesim_rss_bytes": rss_bytes(self.kubesim_proc.pid)}
        self.print_rows("memory")

    async def event_to_visible(self) -> None:
        """TFJobs turn Succeeded on the cluster while wrk GETs at full load: from the suite's own watch
        seeing Succeeded to a legacy GET of the job (polled, one in flight) answering `succeeded`."""
        plan = self.plan
        ids = (await self.ids_of(EVENT_USER))[:plan.event_jobs]
        names = await self.object_names(EVENT_USER)
        selector = f"{OWNER_LABEL}={EVENT_USER}"
        rv = (await self.kube.list_tfjobs(selector))["metadata"]["resourceVersion"]
        seen: dict[str, float] = {}
        visible: dict[str, tuple[float, float]] = {}  # job id -> (that GET sent, its answer received)
        failed_triggers: list[str] = []

        async def watch() -> None:
            async for at, event in self.kube.watch_tfjobs(selector, rv):
                obj = event.get("object") or {}
                job_id = ((obj.get("metadata") or {}).get("labels") or {}).get(JOB_ID_LABEL)
                conditions = (obj.get("status") or {}).get("conditions") or []
                if job_id and job_id not in seen and any(
                        c.get("type") == "Succeeded" and c.get("status") == "True" for c in conditions):
                    seen[job_id] = at

        async def trigger_and_poll(job_id: str) -> None:
            try:
                if plan.event_trigger == "status":
                    await self.kube.mark_succeeded(names[job_id])
                else:
                    await self.kube.set_scenario(names[job_id], "succeed:after=0")
            except (HttpError, aiohttp.ClientError, TimeoutError) as e:
                failed_triggers.append(f"{job_id}: {e}"[:200])
                return
            deadline = time.perf_counter() + plan.event_timeout
            while time.perf_counter() < deadline:
                with contextlib.suppress(HttpError, aiohttp.ClientError, TimeoutError):  # 503s under load
                    sent = time.perf_counter()
                    job = await self.api.get(EVENT_USER, job_id)
                    if job["status"]["phase"] == "succeeded":
                        visible[job_id] = (sent, time.perf_counter())
                        return
                await asyncio.sleep(POLL_SECONDS)

        async def stamped() -> bool:  # the suite's watch may come after the gateway's
            return all(i in seen for i in visible)

        report.progress(f"[event_to_visible] {len(ids)} jobs, trigger {plan.event_trigger}, GET load at "
                        f"{plan.connections} connections")
        stop = asyncio.Event()
        load_script = self.script({"get": self.get_reqs(GET_USER, [self.get_id])})
        load = asyncio.create_task(self.wrk.run(self.gateway_url, load_script, connections=plan.connections,
                                                duration=3600, stop=stop))
        watcher = asyncio.create_task(watch())
        pollers = []
        try:
            await asyncio.sleep(plan.warmup)
            for job_id in ids:  # a slow kubesim must not stretch the spacing
                pollers.append(asyncio.create_task(trigger_and_poll(job_id)))
                await asyncio.sleep(plan.event_spacing)
            await asyncio.gather(*pollers)
            with contextlib.suppress(RuntimeError):
                await wait_until(stamped, timeout=5, what="the watch's stamps")
        finally:
            stop.set()
            for task in pollers:
                task.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            background = await load
        both = [i for i in ids if i in visible and i in seen]
        self.scenarios["event_to_visible"] = {
            "title": f"event to visible, {self.counts['partition_jobs']} jobs", "kind": "event",
            "params": {"jobs": len(ids), "trigger": plan.event_trigger, "spacing_s": plan.event_spacing,
                       "poll_interval_s": POLL_SECONDS, "timeout_s": plan.event_timeout,
                       "partition_jobs": self.counts["partition_jobs"]},
            "latency_ms": summary([(visible[i][1] - seen[i]) * 1000 for i in both]),
            "latency_to_request_sent_ms": summary([(visible[i][0] - seen[i]) * 1000 for i in both]),
            "cluster_seen": len(seen), "gateway_visible": len(visible), "failed_triggers": failed_triggers,
            "samples_ms": [round((visible[i][1] - seen[i]) * 1000, 2) for i in both],
            "rows": [{"target": "gateway GET (background)", **background.to_json()}]}
        self.print_rows("event_to_visible")

    async def direct_template(self) -> str:
        """The TFJob the gateway made for the template job, as a body for creates straight to kubesim:
        server fields dropped, the job id and the name replaced by `@@UNIQ@@` (new every request)."""
        obj = await self.kube.tfjob_of(self.template_id)
        meta = obj["metadata"]
        body = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
                "spec": obj["spec"]}
        text = json.dumps(body, separators=(",", ":"))
        return text.replace(self.template_id, UNIQ).replace(TEMPLATE_NAME, f"d{UNIQ}")

    async def creates(self) -> None:
        """Creates through the gateway against the same TFJob straight to kubesim: sequential (p50) and
        16 in flight (creates/s), the two sides' runs interleaved so both see the same object count."""
        gateway = [Req("POST", JOBS_PATH, {"X-User": CREATE_USER, **JSON}, json.dumps(job_body(f"g{UNIQ}")))]
        bearer = {"Authorization": f"Bearer {TOKEN}", **JSON}
        direct = [Req("POST", TFJOBS, bearer, await self.direct_template())]
        sides = [self.gateway_side(self.script({"create": gateway})),
                 self.kubesim_side(self.script({"create": direct}))]
        for key, conns, ratio in WRITE_KINDS:
            if self.plan.wants(key := f"create_{key}"):
                before = await self.kube.count_tfjobs()
                title = "create, " + ("sequential" if conns == 1 else f"{conns} in flight")
                scenario = await self.compare(key, title, sides, connections=conns, ratio=ratio, writes=True,
                                              rounds=self.plan.write_rounds,
                                              duration=self.plan.write_duration)
                scenario["params"].update(objects_before=before, objects_after=await self.kube.count_tfjobs())

    # ----- the run -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Everything, in order. A failed setup step fails the scenarios that depend on it (kind
        `error`), the others still run; `document()` is the result at any time."""
        await self.start()
        report.progress("phase 1: creating its jobs")
        phase1 = [s for s in SCENARIOS if self.plan.wants(s)]
        await self.guard(phase1, self.setup_phase1)
        if not self.failed(phase1):
            await self.phase1()
        phase2 = [s for s in PHASE2 if self.plan.wants(s)]
        if phase2 and not self.failed(phase2):
            report.progress("phase 2")
            await self.guard(phase2, self.setup_phase2)
            if not self.failed(phase2):
                await self.phase2()

    def failed(self, keys: Sequence[str]) -> bool:
        """Whether these scenarios were all marked failed already."""
        return all(self.scenarios.get(k, {}).get("kind") == "error" for k in keys)

    def document(self, *, complete: bool) -> dict[str, Any]:
        """The result document (see bench/report.py)."""
        return {
            "suite": "clever-gateway bench", "format": 1, "complete": complete, "started": self.started,
            "finished": now_iso(), "command": sys.argv, "git": git_info(), "quick": self.plan.quick,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_before": [round(x, 2) for x in self.load_before],
                        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                        "pinning": {"gateway_and_baseline_cpu": self.server_cpu,
                                    "wrk_redis_kubesim_driver_cpu": self.load_cpu},
                        "kubesim_niceness": {"measuring": MEASURE_NICENESS, "filling": 0}},
            "params": asdict(self.plan), "counts": self.counts, "notes": self.notes,
            "scenarios": self.scenarios}


def now_iso() -> str:
    """The current UTC time, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(values: Sequence[float]) -> dict[str, Any]:
    """count, p50/p90/p99 (nearest rank), min, max, mean."""
    result: dict[str, Any] = {"count": len(values)}
    if values:
        result.update({f"p{q}": round(report.percentile(values, q), 2) for q in (50, 90, 99)})
        result.update(min=round(min(values), 2), max=round(max(values), 2),
                      mean=round(sum(values) / len(values), 2))
    return result


def git_info() -> dict[str, Any]:
    """The commit measured (and whether tracked files had changes)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="./run bench", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true",
        help="about a second per scenario, 200 jobs (CI: proves the suite works)")
    add("--jobs", type=int, help="jobs in the partition in phase 2 (default 10000; quick 200)")
    add("--list-small", type=int, help="jobs of the small LIST's user (default 100; quick 20)")
    add("--list-large", type=int, help="jobs of the large LIST's user (default 1000; quick 100)")
    add("--duration", type=float, help="seconds per measured read run (default 10; quick 1)")
    add("--warmup", type=float, help="seconds of warm-up per side (default 2; quick 1)")
    add("--rounds", type=int, help="interleaved rounds per read comparison (default 3; quick 1)")
    add("--write-duration", type=float, help="seconds per create/PATCH run (default 5; quick 1)")
    add("--write-rounds", type=int,
        help="interleaved rounds per create/PATCH comparison (default 4; quick 1)")
    add("--list-connections", type=int, help="connections of the LIST rows (default 64; quick 4)")
    add("--event-jobs", type=int, help="jobs turned Succeeded in event_to_visible (default 50; quick 5)")
    add("--event-timeout", type=float,
        help="seconds a job may take to become visible (default 120; quick 30)")
    add("--event-trigger", choices=("status", "scenario"), default="status",
        help="status (default): patch the TFJob's /status as training-operator would; scenario: switch "
             "the job's kubesim scenario to succeed (then kubesim's controllers make it Succeeded)")
    add("--fill-concurrency", type=int, default=16, help="creates in flight while filling (default 16)")
    add("--fill-timeout", type=float, help="seconds a fill may take (default 3600; quick 120)")
    add("--gateway-log-level", default="info", help="the gateway's logging.level (default info, as deployed)")
    add("--only", help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}")
    add("--profile", action="store_true", help="py-spy the gateway during one more GET and LIST 100 run "
                                               "(py-spy in .venv or on PATH)")
    add("--out", type=Path, default=DEFAULT_OUT, help="result file (default bench/results/latest.json)")
    add("--keep-tmp", action="store_true", help="keep the temporary directory (logs, configs, scripts)")
    return parser.parse_args(argv)


def print_result(result: dict[str, Any], out: Path) -> None:
    """The table, the profiles, the notes."""
    print()
    print(report.table(result["scenarios"]))
    for key, scenario in result["scenarios"].items():
        profile = scenario.get("profile")
        if profile:
            for order in ("own", "total"):
                print(f"\npy-spy --gil, gateway during {key} ({profile['connections']} connections, "
                      f"{profile['samples']} samples), top 10 by {order} time:")
                for row in profile[f"by_{order}"]:
                    print(f"  {row['own_pct']:5.1f}% own {row['total_pct']:5.1f}% total  {row['function']}")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"\nresult: {out}")


async def amain(args: argparse.Namespace) -> int:
    """Run, write, print; everything stopped whatever happens."""
    plan = Plan.from_args(args, SCENARIOS)
    tmp = Path(tempfile.mkdtemp(prefix="clever-bench-"))
    suite = Suite(plan, tmp)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # stop as on Ctrl-C
    complete = False
    try:
        await suite.run()
        complete = True
    finally:
        await suite.stop()
        if not complete or args.keep_tmp:
            print(f"logs, configs and wrk scripts kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        result = suite.document(complete=complete)  # also what an interrupted run measured
        report.write_json(args.out, result)
    print_result(result, args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (`python -m bench`)."""
    args = parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything the suite started was stopped", file=sys.stderr)
        return 130
