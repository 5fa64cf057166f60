"""Request bodies from seed 003 (legacy tfjob-admin API) in valid-JSON form, and tolerated spellings."""

from __future__ import annotations

import copy
from typing import Any

# The create request as the seed's argument table describes it (flat fields, `enviroment` spelling).
SEED_CREATE_FLAT: dict[str, Any] = {
    "name": "tfjob-flat",
    "description": "create a tfjobs",
    "runtime": "Python_2.7+Tensorflow_1.2.1",
    "workdir": "/clever/admin/xinhe/jobs",
    "bootfile": "/clever/admin/xinhe/file.py",
    "args": ["--test=10", "--config=1"],
    "enviroment": "A=1,B=2",
    "checkpointDir": "/clever/admin",
    "eventDir": "/clever/admin/xinhe",
    "modelDir": "/clever/admin/xinhe/logs",
    "logDir": "/clever/admin/xinhe/logs/guideline",
    "cpu": "1.000",
    "gpu": "1",
    "memory": "2048Mi",
    "type": "worker",
    "count": "1",
}

# The create/get/update response object of the seed, sent back as a request (`workerdir`, args as one
# string, runtime with spaces, wrapped replicas, `conut`).
SEED_RESPONSE_SHAPED: dict[str, Any] = {
    "metadata": {"uid": "admin", "id": "12345678", "name": "tfserving-0",
                 "creationTime": "2017-08-23T21:17:09.379754063+08:00",
                 "lastUpdateTime": "2017-08-23T21:17:09.379754063+08:00"},
    "spec": {
        "description": "create a tfjobs",
        "partition": "clever",
        "runtime": "Python 2.7 + Tensorflow 1.2.1",
        "workerdir": "/clever/admin/xinhe/logs",
        "bootfile": "/clever/admin/xinhe/file.python",
        "args": "-test=10 -config=1",
        "checkpointDir": "/clever/admin",
        "eventDir": "/clever/admin/xinhe",
        "modelDir": "/clever/admin/xinhe/logs",
        "logDir": "/clever/admin/xinhe/logs/guideline",
        "replicas": {"count": "1", "replicas": [
            {"type": "worker", "count": "1", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}},
            {"type": "ps", "conut": "0", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}},
        ]},
    },
    "status": {"phase": "running", "replicas": [
        {"id": "12345678-k8s-xyz", "restartCount": 0, "status": "Running",
         "startTime": "2017-08-23T21:17:09.379754063+08:00"}]},
}

# The list item of the seed, as a flat body: replicas as a plain list, args as a list.
SEED_LIST_ITEM_FLAT: dict[str, Any] = {
    "name": "tfjob-list-item",
    "description": "create a tfjobs",
    "partition": "clever",
    "runtime": "Python_2.7+Tensorflow_1.2.1",
    "workdir": "/clever/admin/xinhe/jobs",
    "bootfile": "/clever/admin/xinhe/file.py",
    "args": ["--test=10", "--config=1"],
    "checkpointDir": "/clever/admin",
    "eventDir": "/clever/admin/xinhe",
    "modelDir": "/clever/admin/xinhe/logs",
    "logDir": "/clever/admin/xinhe/logs/guideline",
    "replicas": [
        {"type": "worker", "count": "1", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}},
        {"type": "ps", "conut": "0", "resource": {"cpu": "1.000", "memory": "2048Mi", "gpu": "1"}},
    ],
}

SEED_BODIES: dict[str, dict[str, Any]] = {
    "flat-request": SEED_CREATE_FLAT,
    "response-shaped": SEED_RESPONSE_SHAPED,
    "list-item": SEED_LIST_ITEM_FLAT,
}


def minimal(name: str = "mnist", **extra: Any) -> dict[str, Any]:
    """A small valid create body."""
    body: dict[str, Any] = {"name": name, "runtime": "Python_3.11+Tensorflow_2.15.0", "bootfile": "/clever/a/train.py",
                            "cpu": "1", "memory": "1Gi", "gpu": "0", "type": "worker", "count": "1"}
    body.update(extra)
    return body


def _variant(name: str, **changes: Any) -> dict[str, Any]:
    body = minimal(name)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = copy.deepcopy(value)
    return body


TOLERATED_SPELLINGS: dict[str, dict[str, Any]] = {
    "environment": _variant("sp-environment", environment="A=1;B=2\nC=3"),
    "enviroment": _variant("sp-enviroment", enviroment="A=1,B=2"),
    "env": _variant("sp-env", env="A=1"),
    "env-object": _variant("sp-env-object", environment={"A": "1", "B": 2}),
    "env-list": _variant("sp-env-list", environment=["A=1", "B=x,y"]),
    "workerdir": _variant("sp-workerdir", workerdir="/clever/a"),
    "numbers": _variant("sp-numbers", cpu=2, memory="2Gi", gpu=0, count=2),
    "args-string": _variant("sp-args-string", args="--lr 0.1 --name 'a b'"),
    "replicas-list": _variant("sp-replicas-list", type=None, count=None, replicas=[
        {"type": "chief", "count": 1}, {"type": "worker", "count": "2", "resource": {"cpu": "500m"}},
        {"type": "ps", "conut": "1"}, {"type": "evaluator", "count": 1}]),
    "replicas-wrapped": _variant("sp-replicas-wrapped", type=None, count=None, replicas={
        "count": "1", "replicas": [{"type": "worker", "conut": "1",
                                     "resource": {"cpu": "1", "memory": "1Gi", "gpu": "0"}}]}),
    "runtime-spaced": _variant("sp-runtime-spaced", runtime="Python 2.7 + Tensorflow 1.2.1"),
}

LEGACY_METADATA = {"uid", "id", "name", "creationTime", "lastUpdateTime"}
LEGACY_SPEC = {"description", "partition", "runtime", "workdir", "bootfile", "args", "environment",
               "checkpointDir", "eventDir", "modelDir", "logDir", "replicas"}
LEGACY_STATUS = {"phase", "replicas"}


def assert_legacy_object(obj: dict[str, Any]) -> None:
    """Every field of the seed's response object is present, in the seed's types."""
    assert LEGACY_METADATA <= set(obj["metadata"]), obj["metadata"]
    assert LEGACY_SPEC <= set(obj["spec"]), obj["spec"]
    assert LEGACY_STATUS <= set(obj["status"]), obj["status"]
    assert isinstance(obj["spec"]["args"], list)
    for replica in obj["spec"]["replicas"]:
        assert {"type", "count", "resource"} <= set(replica)
        assert isinstance(replica["count"], str)
        assert {"cpu", "memory", "gpu"} <= set(replica["resource"])
