"""What authentication costs per request, as ratios against auth off, measured in the same run.

Part 1 (always): the authenticator alone, against a local issuer on loopback — resolving X-User with
auth off (baseline), a cached verified token, and a full signature check (RS256, ES256) per request.
Part 2 (when `gateway.app.create_app` exists): an authenticated GET of one job through the whole app vs
the same GET with auth off.

Run: `.venv/bin/python bench/bench_auth.py [--requests N]`. Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.auth import NoAuthAuthenticator, OIDCAuthenticator
from gateway.auth.settings import AuthSettings
from tests.auth.issuer import LocalIssuer


async def per_call(fn: Callable[[int], Awaitable[object]], count: int) -> float:
    """Mean seconds per call of fn(i) over `count` calls (after a short warm-up)."""
    for i in range(min(50, count)):
        await fn(i)
    start = time.perf_counter()
    for i in range(count):
        await fn(i)
    return (time.perf_counter() - start) / count


def row(name: str, seconds: float, baseline: float) -> str:
    return f"  {name:<40} {seconds * 1e6:10.1f} µs/op   x{seconds / baseline:8.1f} vs auth off"


async def bench_authenticator(requests: int) -> None:
    async with LocalIssuer() as issuer:
        settings = AuthSettings.model_validate({
            "mode": "oidc", "oidc": {"issuer": issuer.issuer, "audience": issuer.audience}})
        oidc = OIDCAuthenticator(settings)
        await oidc.start()
        no_auth = NoAuthAuthenticator(AuthSettings(mode="none"))
        try:
            cached_token = issuer.mint(user="alice", groups=["team-a"])
            cached_headers = {"Authorization": f"Bearer {cached_token}", "X-User": "alice"}
            uncached = max(50, requests // 20)
            rsa_headers = [{"Authorization": f"Bearer {issuer.mint(kind='RSA', user=f'u{i}')}"}
                           for i in range(uncached + 50)]
            ec_headers = [{"Authorization": f"Bearer {issuer.mint(kind='EC', user=f'u{i}')}"}
                          for i in range(uncached + 50)]

            baseline = await per_call(lambda i: no_auth.authenticate({"X-User": "alice"}), requests)
            cached = await per_call(lambda i: oidc.authenticate(cached_headers), requests)
            rs256 = await per_call(lambda i: oidc.authenticate(rsa_headers[i]), uncached)
            es256 = await per_call(lambda i: oidc.authenticate(ec_headers[i]), uncached)
        finally:
            await oidc.close()

    print("authenticator alone")
    print(row("auth off (X-User trusted)", baseline, baseline))
    print(row("OIDC, cached verified token", cached, baseline))
    print(row("OIDC, RS256 signature check each time", rs256, baseline))
    print(row("OIDC, ES256 signature check each time", es256, baseline))
    print(f"  cache saves x{rs256 / cached:.1f} (RS256) / x{es256 / cached:.1f} (ES256) per request; "
          f"JWKS fetches during the run: {issuer.jwks_requests}")


async def bench_app(requests: int) -> None:
    """GET of one job through the whole gateway (Redis, KubeSim), auth off vs OIDC, interleaved."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from redis import asyncio as redis_asyncio

    from gateway.app import create_app
    from gateway.config import load_settings
    from kubesim.testing import KubeSim

    prefix = f"bench:{uuid.uuid4().hex}:"
    runtime = {"image": "tensorflow/tensorflow:2.15.0", "gpuImage": "tensorflow/tensorflow:2.15.0-gpu",
               "command": ["python3"]}
    body = {"name": "bench", "runtime": "py3", "bootfile": "/clever/a/train.py", "cpu": "1", "memory": "1Gi",
            "gpu": "0", "type": "worker", "count": "1"}
    async with KubeSim(namespaces=("default", "clever"), time_scale=0.01, default_scenario="hold") as sim, \
            LocalIssuer() as issuer:
        def settings(auth: dict[str, Any], name: str) -> Any:
            return load_settings(environ={}, base={
                "listen": {"host": "127.0.0.1", "port": 0},
                "redis": {"url": "redis://127.0.0.1:6379/0", "keyPrefix": f"{prefix}{name}:"},
                "auth": auth,
                "clusters": [{"id": "c1", "server": sim.url, "token": sim.token, "caFile": sim.ca_file,
                              "backend": "training-operator", "runtimes": {"py3": runtime}}],
            })

        token = issuer.mint(user="alice", groups=["team-a"])
        variants = {
            "auth off": (settings({"mode": "none"}, "none"), {"X-User": "alice"}),
            "OIDC (cached token)": (settings({"mode": "oidc", "oidc": {"issuer": issuer.issuer,
                                                                       "audience": issuer.audience}}, "oidc"),
                                    {"Authorization": f"Bearer {token}", "X-User": "alice"}),
        }
        clients: dict[str, tuple[TestClient[web.Request, web.Application], str, dict[str, str]]] = {}
        try:
            for name, (config, headers) in variants.items():
                client = TestClient(TestServer(create_app(config)))
                await client.start_server()
                path = "/api/v1alpha1/clusters/c1/partitions/clever/tfjobs"
                created = await client.post(path, json={**body, "name": f"bench-{len(clients)}"}, headers=headers)
                assert created.status == 200, await created.text()
                job_id = (await created.json())["metadata"]["id"]
                clients[name] = (client, f"{path}/{job_id}", headers)

            async def get(name: str) -> None:
                client, url, headers = clients[name]
                response = await client.get(url, headers=headers)
                await response.read()
                assert response.status == 200

            totals = dict.fromkeys(clients, 0.0)
            rounds, batch = 10, max(1, requests // 10)
            for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
                for name in clients:
                    async def get_one(_: int, variant: str = name) -> None:
                        await get(variant)

                    totals[name] += await per_call(get_one, batch) * batch
        finally:
            for client, _, _ in clients.values():
                await client.close()
            redis = redis_asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
            keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()

    baseline = totals["auth off"] / (rounds * batch)
    print("GET of one job through the gateway")
    for name, total in totals.items():
        print(row(name, total / (rounds * batch), baseline))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="calls per measurement")
    args = parser.parse_args()
    from gateway.logging import configure_logging

    configure_logging(level="warning", fmt="console")  # the per-request access log would drown the numbers
    asyncio.run(bench_authenticator(args.requests))
    if importlib.util.find_spec("gateway.app") is not None:
        asyncio.run(bench_app(max(200, args.requests // 5)))
    else:
        print("gateway.app not available: whole-gateway comparison skipped")


if __name__ == "__main__":
    main()
