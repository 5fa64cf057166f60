"""Mutated legacy bodies over real HTTP: every answer is a 200 or a legacy 4xx, never a 5xx, and a
refused request leaves Redis and the cluster as they were.

The bodies are seed 003 shapes with a few point changes each: keys dropped, values swapped for
other JSON types, odd strings (unicode, control characters, huge numbers, very long text), nesting
where a scalar belongs, unknown or optional keys added. A
seeded `random.Random` keeps every run the same, so a failure names a reproducible case.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from typing import Any

from kubesim.store import TFJOBS
from tests.conftest import Gateway
from tests.service.seed_bodies import SEED_CREATE_FLAT, SEED_RESPONSE_SHAPED, minimal

USER = {"X-User": "alice"}
CASES = 150
LEGACY_ERRORS = {400, 404, 409, 413, 415, 422}

ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 10**30, -(10**30), float("1e308"), "", " ", "0", "-1", "1e3", "NaN",
    "Infinity", "1.000", "2048Mi", "abc", "ünïcödé", "名字", "a\x00b", "\u202e", "/", "/clever/../etc",
    "x" * 5000, [], [1, "a"], {}, {"count": "1"}, [{"type": "worker"}], {"replicas": None},
)
KEYS: tuple[str, ...] = tuple(sorted({*SEED_CREATE_FLAT, *SEED_RESPONSE_SHAPED["spec"], "replicas", "env",
                                      "environment", "conut", "activeDeadlineSeconds", "backoffLimit",
                                      "cleanPodPolicy", "ttlSecondsAfterFinished", "successPolicy"}))


def containers(body: Any) -> list[Any]:
    """Every dict and list inside `body`, itself included."""
    found: list[Any] = []
    if isinstance(body, (dict, list)):
        found.append(body)
        for child in body.values() if isinstance(body, dict) else body:
            found.extend(containers(child))
    return found


def odd(rng: random.Random) -> Any:
    """A fresh odd value (a copy: the lists and dicts in ODD_VALUES must never be mutated)."""
    return copy.deepcopy(rng.choice(ODD_VALUES))


def mutate(rng: random.Random, body: Any) -> Any:
    """A copy of `body` with 0 to 3 point changes: a key dropped, a value swapped, a key added."""
    out = copy.deepcopy(body)
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
        node = rng.choice(containers(out))
        if isinstance(node, list):
            if node and rng.random() < 0.5:
                node.pop(rng.randrange(len(node)))
            else:
                node.append(odd(rng))
        elif node and rng.random() < 0.35:
            del node[rng.choice(sorted(node))]
        elif node and rng.random() < 0.8:
            node[rng.choice(sorted(node))] = odd(rng)
        else:
            node[rng.choice(KEYS)] = odd(rng)
    return out


def bodies(rng: random.Random) -> list[Any]:
    """CASES mutated bodies from the seed's shapes; a few not even objects."""
    seeds: list[Any] = [SEED_CREATE_FLAT, SEED_RESPONSE_SHAPED["spec"], SEED_RESPONSE_SHAPED, minimal("fuzz")]
    out: list[Any] = []
    for i in range(CASES):
        body = mutate(rng, rng.choice(seeds))
        if isinstance(body, dict) and "name" in body and rng.random() < 0.8:
            body["name"] = f"fuzz-{i}"  # mostly distinct names so valid ones create, not 409
        out.append(body)
    return out + [[], "string", 42, None, [minimal("in-a-list")]]


def patch_bodies(rng: random.Random, job: dict[str, Any]) -> list[Any]:
    """CASES mutated partial updates: a few keys of the job's own body or the seed's, then point changes."""
    sources = [job, SEED_CREATE_FLAT, {"description": "new words", "args": "--epochs 2", "backoffLimit": 2,
                                       "activeDeadlineSeconds": 600, "cleanPodPolicy": "All"}]
    out: list[Any] = []
    for _ in range(CASES):
        source = rng.choice(sources)
        keys = rng.sample(sorted(source), k=rng.randint(1, min(4, len(source))))
        out.append(mutate(rng, {key: source[key] for key in keys}))
    return out + [[], "string", 42, None, {}]


async def assert_legacy_error(response: Any, case: Any) -> None:
    """A legacy 4xx: code, reason, message; the code matches the HTTP status."""
    assert response.status in LEGACY_ERRORS, (response.status, case)
    error = await response.json()
    assert error["code"] == response.status and error["reason"] and error["message"], error


async def test_mutated_creates_never_fail_the_server(gateway: Gateway) -> None:
    rng = random.Random(20261128)
    created: list[str] = []
    refused: Counter[int] = Counter()
    for body in bodies(rng):
        before = await gateway.keys()
        objects_before = len(gateway.sim.store.list(TFJOBS)[0])
        response = await gateway.client.post(gateway.jobs_url(), data=json.dumps(body), headers=USER)
        if response.status == 200:
            job = await response.json()
            assert job["metadata"]["id"] and job["spec"]["name"], job
            created.append(job["metadata"]["id"])
            continue
        await assert_legacy_error(response, body)
        refused[response.status] += 1
        assert await gateway.keys() == before, body
        assert len(gateway.sim.store.list(TFJOBS)[0]) == objects_before, body
    print(f"created {len(created)}, refused {dict(refused)}")
    assert created and refused[400] > len(created) // 2  # both ways were really exercised
    listing = await (await gateway.client.get(gateway.jobs_url(), headers=USER)).json()
    assert sorted(item["metadata"]["id"] for item in listing["items"]) == sorted(created)
    assert listing["metadata"]["total"] == len(created)


async def test_mutated_patches_never_fail_the_server_or_corrupt_the_job(gateway: Gateway) -> None:
    rng = random.Random(1128)
    gateway.sim.controllers.set_default_scenario("hold")
    target = minimal("target")
    job = await (await gateway.client.post(gateway.jobs_url(), json=target, headers=USER)).json()
    url = f"{gateway.jobs_url()}/{job['metadata']['id']}"
    answers: Counter[int] = Counter()
    for body in patch_bodies(rng, target):
        before = (await (await gateway.client.get(url, headers=USER)).json())["spec"]
        response = await gateway.client.patch(url, data=json.dumps(body), headers=USER)
        after = await gateway.client.get(url, headers=USER)
        assert after.status == 200, body  # whatever the patch, the job is still there
        answers[response.status] += 1
        if response.status == 200:
            assert (await response.json())["spec"] == (await after.json())["spec"]
            continue
        await assert_legacy_error(response, body)
        assert (await after.json())["spec"] == before, body
    print(f"patch answers {dict(answers)}")
    assert answers[200] and answers[400]
