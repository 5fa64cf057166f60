"""Admission webhooks kubesim runs in-process, reproducing the real ones' decisions and wording.

Contract: `admit(res, obj, old=None) -> dict` returns the (possibly mutated) object or raises `ApiError`.
- TFJob (training-operator v1.9.0 `validator.tfjob.training-operator.kubeflow.org`, CREATE/UPDATE): name is a
  DNS-1035 label, tfReplicaSpecs required, each replica has ≥1 container, each container an image, one container
  named `tensorflow`, at most one Chief/Master, runPolicy.managedBy supported and immutable → 403 Forbidden.
- Volcano Job (`mutatejob.volcano.sh` on CREATE, then `validatejob.volcano.sh` on CREATE/UPDATE): defaults
  queue/schedulerName/maxRetry/task names/task minAvailable/job minAvailable and the `svc` plugin for
  tensorflow/mpi/pytorch/ray; rejects duplicate task names, minAvailable > replicas, unknown plugins, and on
  update any change other than minAvailable / tasks[*].replicas / priorityClassName → 400 BadRequest.
- JobSet (`mjobset.kb.io` on CREATE, then the CRD's CEL rules and `vjobset.kb.io`): see kubesim.jobset.
- batch/v1 Job, a built-in kind without webhooks: the registry's defaults, generated selector and
  validation run at the same points (see kubesim.batch).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubesim import batch
from kubesim.errors import ApiError, bad_request, forbidden, invalid
from kubesim.store import BATCH_JOBS, JOBSETS, TFJOBS, VCJOBS, Resource, clone

TFJOB_WEBHOOK = "validator.tfjob.training-operator.kubeflow.org"
VCJOB_WEBHOOK = "validatejob.volcano.sh"
TFJOB_CONTAINER = "tensorflow"
MANAGED_BY_VALUES = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")
VOLCANO_PLUGINS = frozenset({"env", "svc", "ssh", "tensorflow", "mpi", "pytorch", "ray", "mxnet"})
_NEEDS_SVC = ("tensorflow", "mpi", "pytorch", "ray")

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_SUBDOMAIN_MESSAGE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                             "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                             "'example.com', regex used for validation is "
                             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1035_MESSAGE = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                   "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                   "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
DNS1123_LABEL_MESSAGE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                         "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                         "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def dns1035_errors(name: str) -> list[str]:
    """apimachinery IsDNS1035Label messages for `name` ([] = valid)."""
    errs = []
    if len(name) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035.match(name):
        errs.append(DNS1035_MESSAGE)
    return errs


def dns1123_subdomain_errors(name: str) -> list[str]:
    """apimachinery IsDNS1123Subdomain messages for `name` ([] = valid)."""
    errs = []
    if len(name) > 253:
        errs.append("must be no more than 253 characters")
    if not DNS1123_SUBDOMAIN.match(name):
        errs.append(DNS1123_SUBDOMAIN_MESSAGE)
    return errs


def admit(res: Resource, obj: dict[str, Any], old: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the mutating then validating webhooks registered for `res`; returns the admitted object."""
    obj = mutate(res, obj, old)
    validate(res, obj, old)
    return obj


def mutate(res: Resource, obj: dict[str, Any], old: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Mutating admission (Volcano's and JobSet's on CREATE only) and, for batch/v1 Jobs, the registry's
    defaulting (and generated selector on CREATE); returns a new or the same dict."""
    from kubesim import jobset  # here, not at the top: kubesim.jobset uses this module's name checks
    if res is VCJOBS and old is None:
        return mutate_vcjob(obj)
    if res is JOBSETS and old is None:
        return jobset.default_jobset(obj)
    if res is BATCH_JOBS:
        problem = batch.decode_error(obj)
        if problem is not None:
            raise bad_request(f'Job in version "v1" cannot be handled as a Job: {problem}')
        job = clone(obj)
        return batch.prepare_for_create(job) if old is None else batch.default_job(job)
    return obj


def validate(res: Resource, obj: dict[str, Any], old: Mapping[str, Any] | None = None) -> None:
    """Validating admission (and the built-in registries' validation); raises ApiError on denial."""
    from kubesim import jobset
    if res is TFJOBS:
        _validate_tfjob(obj, old)
    elif res is VCJOBS:
        _validate_vcjob(obj, old)
    elif res is JOBSETS:
        jobset.validate(obj, old)
    elif res is BATCH_JOBS:
        causes = batch.validation_causes(obj, old)
        if causes:
            raise invalid(res, str((obj.get("metadata") or {}).get("name") or ""), causes)


# ----- TFJob -------------------------------------------------------------------------------------------------


def _validate_tfjob(obj: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    errs: list[str] = []
    name = (obj.get("metadata") or {}).get("name", "")
    name_errs = dns1035_errors(name)
    if name_errs:
        errs.append(f'metadata.name: Invalid value: "{name}": {",".join(name_errs)}')
    spec = obj.get("spec") or {}
    run_policy = spec.get("runPolicy") or {}
    managed_by = run_policy.get("managedBy")
    if old is not None:
        old_managed = ((old.get("spec") or {}).get("runPolicy") or {}).get("managedBy")
        if old_managed != managed_by:
            errs.append(f'spec.runPolicy.managedBy: Invalid value: "{managed_by or ""}": field is immutable')
    if managed_by is not None and managed_by not in MANAGED_BY_VALUES:
        supported = ", ".join(f'"{v}"' for v in MANAGED_BY_VALUES)
        errs.append(f'spec.runPolicy.managedBy: Unsupported value: "{managed_by}": supported values: {supported}')
    replica_specs = spec.get("tfReplicaSpecs")
    if replica_specs is None:
        errs.append("spec.tfReplicaSpecs: Required value: must be required")
    chief_or_master = 0
    for rtype in sorted(replica_specs or {}):
        rspec = (replica_specs or {})[rtype] or {}
        containers_path = f"spec.tfReplicaSpecs[{rtype}].template.spec.containers"
        containers = (((rspec.get("template") or {}).get("spec") or {}).get("containers")) or []
        if not containers:
            errs.append(f"{containers_path}: Required value: must be specified")
        present = False
        for index, container in enumerate(containers):
            if not (container or {}).get("image"):
                errs.append(f"{containers_path}[{index}].image: Required value: must be required")
            if (container or {}).get("name") == TFJOB_CONTAINER:
                present = True
        if not present:
            errs.append(f"{containers_path}: Required value: must have at least one container with name "
                        f"{TFJOB_CONTAINER}")
        if rtype in ("Chief", "Master"):
            chief_or_master += 1
    if chief_or_master > 1:
        errs.append("spec.tfReplicaSpecs: Forbidden: must not have more than 1 Chief or Master role")
    if errs:
        # field.ErrorList.ToAggregate().Error(): one error verbatim, several as "[a, b]".
        text = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
        raise forbidden(f'admission webhook "{TFJOB_WEBHOOK}" denied the request: {text}')


# ----- Volcano Job -------------------------------------------------------------------------------------------


def mutate_vcjob(obj: dict[str, Any]) -> dict[str, Any]:
    """Apply `mutatejob.volcano.sh` CREATE defaults; returns a new dict."""
    obj = clone(obj)
    spec = obj.setdefault("spec", {})
    if not spec.get("queue"):
        spec["queue"] = "default"
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "volcano"
    if not spec.get("maxRetry"):
        spec["maxRetry"] = 3
    tasks = spec.get("tasks") or []
    total_min = 0
    for index, task in enumerate(tasks):
        if not task.get("name"):
            task["name"] = f"default{index}"
        if task.get("minAvailable") is None:
            task["minAvailable"] = task.get("replicas", 0)
        if not task.get("maxRetry"):
            task["maxRetry"] = 3
        total_min += int(task.get("minAvailable") or 0)
    if not spec.get("minAvailable"):
        spec["minAvailable"] = total_min
    plugins = spec.get("plugins")
    if isinstance(plugins, dict):
        if any(name in plugins for name in _NEEDS_SVC) and "svc" not in plugins:
            plugins["svc"] = []
        if "mpi" in plugins and "ssh" not in plugins:
            plugins["ssh"] = []
    return obj


def _validate_vcjob(obj: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    msgs: list[str] = []
    if old is not None:
        msgs.extend(_vcjob_update_errors(old.get("spec") or {}, spec))
    if int(spec.get("minAvailable") or 0) < 0:
        msgs.append("job 'minAvailable' must be >= 0.")
    if int(spec.get("maxRetry") or 0) < 0:
        msgs.append("'maxRetry' cannot be less than zero.")
    if spec.get("ttlSecondsAfterFinished") is not None and int(spec["ttlSecondsAfterFinished"]) < 0:
        msgs.append("'ttlSecondsAfterFinished' cannot be less than zero.")
    if spec.get("minSuccess") is not None and int(spec["minSuccess"]) < 1:
        msgs.append("'minSuccess' must be >= 1.")
    tasks = spec.get("tasks") or []
    if not tasks:
        msgs.append("No task specified in job spec")
    seen: set[str] = set()
    total_replicas = 0
    for task in tasks:
        task_name = task.get("name", "")
        replicas = int(task.get("replicas") or 0)
        total_replicas += replicas
        if replicas < 0:
            msgs.append(f"'replicas' < 0 in task: {task_name};")
        task_min = task.get("minAvailable")
        if task_min is not None and int(task_min) > replicas:
            msgs.append(f"'minAvailable' is greater than 'replicas' in task: {task_name}, job: {name};")
        if task_name in seen:
            msgs.append(f"duplicated task name {task_name};")
        seen.add(task_name)
        if task_name and not _DNS1123_LABEL.match(task_name):
            msgs.append(f"[{DNS1123_LABEL_MESSAGE}];")
        for index in range(min(replicas, 1)):
            pod_name = f"{name}-{task_name}-{index}"
            if len(pod_name) > 63:
                msgs.append(f"create pod name {pod_name} failed: must be no more than 63 characters;")
    if tasks and int(spec.get("minAvailable") or 0) > total_replicas:
        msgs.append("job 'minAvailable' should not be greater than total replicas in tasks;")
    for plugin in sorted(spec.get("plugins") or {}):
        if plugin not in VOLCANO_PLUGINS:
            msgs.append(f"unable to find job plugin: {plugin};")
    if msgs:
        raise ApiError(400, "BadRequest",
                       f'admission webhook "{VCJOB_WEBHOOK}" denied the request: {" ".join(msgs)}')


def _vcjob_update_errors(old_spec: Mapping[str, Any], new_spec: dict[str, Any]) -> list[str]:
    """Volcano allows updating only minAvailable, tasks[*].replicas and priorityClassName."""
    old_tasks = old_spec.get("tasks") or []
    new_tasks = new_spec.get("tasks") or []
    if len(old_tasks) != len(new_tasks):
        return ["job updates may not add or remove tasks"]
    masked_old = {k: v for k, v in old_spec.items() if k not in ("minAvailable", "priorityClassName", "tasks")}
    masked_new = {k: v for k, v in new_spec.items() if k not in ("minAvailable", "priorityClassName", "tasks")}
    strip = [{k: v for k, v in t.items() if k not in ("replicas", "minAvailable")} for t in old_tasks]
    strip_new = [{k: v for k, v in t.items() if k not in ("replicas", "minAvailable")} for t in new_tasks]
    if masked_old != masked_new or strip != strip_new:
        return ["job updates may not change fields other than `minAvailable`, `tasks[*].replicas under spec`"]
    return []


__all__ = ["TFJOB_WEBHOOK", "VCJOB_WEBHOOK", "admit", "dns1035_errors", "mutate", "mutate_vcjob", "validate"]
