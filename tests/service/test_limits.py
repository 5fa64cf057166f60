"""Per-user write limit: the next write past it is a legacy 429 with Retry-After and changes nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import Gateway
from tests.service.seed_bodies import minimal

ALICE, BOB = {"X-User": "alice"}, {"X-User": "bob"}


async def _not_near_a_minute_boundary() -> None:
    """The limit counts per wall-clock minute: start where the whole test fits in one."""
    into_minute = time.time() % 60
    if into_minute > 50:
        await asyncio.sleep(60.5 - into_minute)


async def test_writes_past_the_per_user_limit_are_429(make_gateway: Any) -> None:
    gw: Gateway = await make_gateway(limits={"writesPerUserPerMinute": 3})
    await _not_near_a_minute_boundary()
    ids = []
    for name in ("one", "two"):
        response = await gw.client.post(gw.jobs_url(), json=minimal(name), headers=ALICE)
        assert response.status == 200
        ids.append((await response.json())["metadata"]["id"])
    patched = await gw.client.patch(f"{gw.jobs_url()}/{ids[0]}", json={"description": "x"}, headers=ALICE)
    assert patched.status == 200  # the third write

    before = await gw.keys()
    for method, path, body in (("POST", gw.jobs_url(), minimal("three")),
                               ("PATCH", f"{gw.jobs_url()}/{ids[0]}", {"description": "y"}),
                               ("DELETE", f"{gw.jobs_url()}/{ids[1]}", None)):
        refused = await gw.client.request(method, path, json=body, headers=ALICE)
        assert refused.status == 429, (method, await refused.text())
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        error = await refused.json()
        assert (error["code"], error["reason"]) == (429, "TooManyRequests")
        assert error["details"]["limit"] == 3 and "3 changes in one minute" in error["message"]
    assert await gw.keys() == before  # nothing created, changed or deleted

    # Reads are not limited, and the limit is per user.
    assert (await gw.client.get(gw.jobs_url(), headers=ALICE)).status == 200
    assert (await gw.client.post(gw.jobs_url(), json=minimal("bobs"), headers=BOB)).status == 200


async def test_zero_means_no_limit(make_gateway: Any) -> None:
    gw: Gateway = await make_gateway(limits={"writesPerUserPerMinute": 0})
    for index in range(5):
        assert (await gw.client.post(gw.jobs_url(), json=minimal(f"n{index}"), headers=ALICE)).status == 200
