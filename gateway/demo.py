"""`clever-gateway demo`: the whole gateway on one machine, nothing to install or configure.

Starts two KubeSims (simulated Kubernetes APIs over HTTPS, namespaces `clever` and `default`, real-time
clock so a job takes a few seconds): cluster `c1` runs the training-operator (TFJobs), cluster `c2` runs
JobSet (where TFJob has gone); an embedded Redis (fakeredis, in-process, not durable); auth off (X-User
trusted, loudly warned; `admin` is an admin, so `?user=` can be tried). Both clusters' runtime catalogs
cover the legacy seed's runtimes; the dashboard at /ui with a user-name prompt. Prints a ready-to-paste curl
session and runs until Ctrl-C.
Not for production: KubeSim runs no containers, the Redis is not shared, and anyone can be anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gateway.app import create_app, server_options
from gateway.config import EMBEDDED_REDIS, Settings, load_settings
from gateway.web.server import GatewayRunner

log = structlog.get_logger(__name__)

DEMO_CLUSTER = "c1"
DEMO_JOBSET_CLUSTER = "c2"
DEMO_ADMIN = "admin"
DEMO_RUNTIMES: dict[str, dict[str, Any]] = {
    "Python_2.7+Tensorflow_1.2.1": {"image": "tensorflow/tensorflow:1.2.1",
                                    "gpuImage": "tensorflow/tensorflow:1.2.1-gpu", "command": ["python2"]},
    "Python_3.11+Tensorflow_2.15.0": {"image": "tensorflow/tensorflow:2.15.0",
                                      "gpuImage": "tensorflow/tensorflow:2.15.0-gpu", "command": ["python3"]},
}


def demo_settings(*, server: str, token: str, ca_file: str, port: int, host: str = "127.0.0.1",
                  jobset: tuple[str, str, str] | None = None) -> Settings:
    """Settings of the demo gateway against a running KubeSim (and a JobSet one: server, token, CA file)."""
    def cluster(cid: str, backend: str, url: str, tok: str, ca: str) -> dict[str, Any]:
        return {"id": cid, "server": url, "token": tok, "caFile": ca, "backend": backend, "runtimes": DEMO_RUNTIMES,
                "volumes": [{"name": "clever-data", "mountPath": "/clever", "hostPath": "/clever"}],
                "pathRoot": "/clever"}

    clusters = [cluster(DEMO_CLUSTER, "training-operator", server, token, ca_file)]
    if jobset is not None:
        clusters.append(cluster(DEMO_JOBSET_CLUSTER, "jobset", *jobset))
    return load_settings(environ={}, base={
        "listen": {"host": host, "port": port},
        "redis": {"url": EMBEDDED_REDIS, "keyPrefix": "demo:"},
        "auth": {"mode": "none", "adminUsers": [DEMO_ADMIN]},
        "clusters": clusters,
        "limits": {"statusStalenessSeconds": 1},
        "sync": {"relistBackoffSeconds": 0.5, "leaseSeconds": 6, "outboxRetrySeconds": 1},
        "ui": {"enabled": True},  # the dashboard, with the name prompt (auth none)
    })


def curl_examples(base: str) -> str:
    """The copy-paste session printed at start."""
    api = f"{base}/api/v1alpha1/clusters/{DEMO_CLUSTER}/partitions/clever/tfjobs"
    jobset_api = f"{base}/api/v1alpha1/clusters/{DEMO_JOBSET_CLUSTER}/partitions/clever/tfjobs"
    return f"""
clever-gateway demo is up on {base}   (auth is OFF: X-User is trusted; demo only)

  admin user: {DEMO_ADMIN}   (X-User: {DEMO_ADMIN}, or that name at the dashboard's prompt: sees and manages
              every user's jobs, ?user=* lists them all, /api/ping gives it the detail)
  dashboard: {base}/ui   (sign in with any user name, e.g. {DEMO_ADMIN})

  curl -s {base}/api/version
  curl -s {base}/api/ping
  curl -s -X POST {api} \\
       -H 'X-User: admin' -H 'Content-Type: application/json' \\
       -d '{{"name": "mnist", "description": "create a tfjob", "runtime": "Python_2.7+Tensorflow_1.2.1",
            "workdir": "/clever/admin/jobs", "bootfile": "/clever/admin/file.py",
            "args": "--test=10 --config=1", "enviroment": "A=1,B=2",
            "cpu": "1.000", "memory": "2048Mi", "gpu": "0", "type": "worker", "count": "2"}}'
  curl -s {api} -H 'X-User: admin'                       # list: pending -> running -> succeeded
  curl -s {api}/<id> -H 'X-User: admin'                  # one job (id from the create answer)
  curl -s -X PATCH {api}/<id> -H 'X-User: admin' -H 'Content-Type: application/json' \\
       -d '{{"description": "renamed"}}'
  curl -s -X DELETE {api}/<id> -H 'X-User: admin'
  curl -s '{api}?user=*' -H 'X-User: admin'               # admin is an admin here: every user's jobs
  curl -s {jobset_api} -H 'X-User: admin'                # cluster {DEMO_JOBSET_CLUSTER} runs the same API on JobSet
  curl -s '{api}/<id>/logs?replica=worker-0&tail=20' -H 'X-User: admin'   # a replica's log (&follow=true streams)
  curl -s {api}/<id>/events -H 'X-User: admin'           # the job's and its pods' events

Ctrl-C stops the demo.
"""


async def run_demo(*, host: str = "127.0.0.1", port: int = 8080, ready: asyncio.Event | None = None,
                   stop: asyncio.Event | None = None) -> None:
    """Run until Ctrl-C / SIGTERM (or until `stop` is set, for tests)."""
    from kubesim.testing import KubeSim  # demo-only dependency on the simulator

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="clever-gateway-demo-") as workdir:
        async with KubeSim(namespaces=("clever", "default"), time_scale=1.0, jobset=False) as sim, \
                KubeSim(namespaces=("clever", "default"), time_scale=1.0, tfjob_operator=None, volcano=False,
                        jobset=True) as jobset_sim:
            kubeconfig = sim.write_kubeconfig(Path(workdir) / "kubeconfig")
            jobset_kubeconfig = jobset_sim.write_kubeconfig(Path(workdir) / "kubeconfig-jobset")
            settings = demo_settings(server=sim.url, token=sim.token, ca_file=sim.ca_file, port=port, host=host,
                                     jobset=(jobset_sim.url, jobset_sim.token, jobset_sim.ca_file))
            runner = GatewayRunner(create_app(settings), access_log=None, **server_options(settings))
            await runner.setup()
            try:
                site = web.TCPSite(runner, host, port)
                await site.start()
                bound = port or _bound_port(runner)
                log.warning("DEMO MODE: authentication is off, Redis is in-process, the cluster is simulated",
                            admin_user=DEMO_ADMIN)
                print(curl_examples(f"http://{host}:{bound}"), flush=True)
                print(f"  (the simulated clusters: kubectl --kubeconfig {kubeconfig} get tfjobs -A\n"
                      f"                          kubectl --kubeconfig {jobset_kubeconfig} get jobsets,pods -A)\n",
                      flush=True)
                if ready is not None:
                    ready.set()
                await stop.wait()
            finally:
                await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return 0
