"""Bounded polling for the controller tests (simulated time runs 100x fast; no timing assertions)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def wait_for(predicate: Callable[[], Any], what: str, *, attempts: int = 400) -> Any:
    """Poll `predicate` every 10 ms until it returns something truthy; fail after `attempts` tries."""
    for _ in range(attempts):
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
