"""JobSet (jobset.x-k8s.io/v1alpha2, kubernetes-sigs/jobset v0.12.0) as the API server admits it.

Contract:
- Names and labels the controller and webhook share: `job_name(js, rjob, i)` = `<js>-<rjob>-<i>`,
  `pod_name_prefix(...)`, `subdomain(js)` (spec.network.subdomain, else the JobSet's name) and the
  `jobset.sigs.k8s.io/...` label keys.
- `default_jobset(js)` is the mutating webhook `mjobset.kb.io` (CREATE only) and returns a new dict: success
  policy `{operator: All}`, startup policy `{startupPolicyOrder: AnyOrder}`, each Job template
  `completionMode: Indexed` and pod `restartPolicy: OnFailure`, `network.enableDNSHostnames` and
  `publishNotReadyAddresses` true, failure policy rule names `failurePolicyRule<i>`, volume claim
  retention `Delete`. The webhook answers with a JSON patch computed from the Go struct it decoded, so
  what Go drops or adds shows up too: zero `replicas`, empty `groupName` and `subdomain` are dropped (the
  CRD defaults then give replicas 1 and group `default`), templates gain `metadata: {}`, containers
  `resources: {}`.
- `validate(js, old=None)` raises `ApiError`: first what the API server checks itself (the CRD's CEL rules:
  StartupPolicy InOrder excludes dependsOn; network, successPolicy, failurePolicy, startupPolicy,
  volumeClaimPolicies and each dependsOn immutable; replicatedJobs names unique as a map-list) as a plain
  422 Invalid, then the validating webhook `vjobset.kb.io`, whose denial the API server reports as
  422 Invalid `admission webhook "vjobset.kb.io" denied the request: JobSet.jobset.x-k8s.io "<name>" is
  invalid: [...]` with the webhook's causes (field errors, or `<nil>: Internal error: ...` for the plain
  errors upstream wraps). On CREATE: subdomain (DNS-1123 subdomain and DNS-1035 label), managedBy
  (domain-prefixed path, ≤63), per replicated job the replicas×parallelism bound, groupName, generated Job
  and pod names (DNS-1035, pod names with a 5-character suffix, so ≤63), dependsOn only on earlier jobs and
  not on the first, success/failure policy target names, failure policy rule names and reasons, the
  disabled RestartJob and InPlaceRestart feature gates, coordinator. On UPDATE: replicatedJobs immutable
  (pod template labels, annotations, nodeSelector, tolerations and schedulingGates may change while the
  JobSet is or gets suspended) and managedBy immutable.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from kubesim import errors
from kubesim.admission import dns1035_errors, dns1123_subdomain_errors
from kubesim.errors import ApiError
from kubesim.selectors import label_value_error

GROUP = "jobset.x-k8s.io"
MUTATING_WEBHOOK = "mjobset.kb.io"
VALIDATING_WEBHOOK = "vjobset.kb.io"
CONTROLLER_NAME = "jobset.sigs.k8s.io/jobset-controller"

PREFIX = "jobset.sigs.k8s.io/"
JOBSET_NAME = PREFIX + "jobset-name"
JOBSET_UID = PREFIX + "jobset-uid"
REPLICATED_JOB_NAME = PREFIX + "replicatedjob-name"
REPLICATED_JOB_REPLICAS = PREFIX + "replicatedjob-replicas"
GLOBAL_REPLICAS = PREFIX + "global-replicas"
JOB_INDEX = PREFIX + "job-index"
JOB_GLOBAL_INDEX = PREFIX + "job-global-index"
JOB_KEY = PREFIX + "job-key"
RESTART_ATTEMPT = PREFIX + "restart-attempt"
GROUP_NAME = PREFIX + "group-name"
GROUP_REPLICAS = PREFIX + "group-replicas"
JOB_GROUP_INDEX = PREFIX + "job-group-index"
COORDINATOR = PREFIX + "coordinator"
EXCLUSIVE_TOPOLOGY = "alpha.jobset.sigs.k8s.io/exclusive-topology"
NODE_SELECTOR_STRATEGY = "alpha.jobset.sigs.k8s.io/node-selector"
NAMESPACED_JOB = "alpha.jobset.sigs.k8s.io/namespaced-job"
NO_SCHEDULE_TAINT = "alpha.jobset.sigs.k8s.io/no-schedule"

MAX_INT32 = 2**31 - 1
FAILURE_REASONS = ("BackoffLimitExceeded", "DeadlineExceeded", "FailedIndexes", "MaxFailedIndexesExceeded",
                   "PodFailurePolicy")
_RULE_NAME = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_HTTP_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")
IMMUTABLE_SPEC_FIELDS = ("network", "successPolicy", "failurePolicy", "startupPolicy", "volumeClaimPolicies")
_SUSPEND_MUTABLE_POD_FIELDS = ("nodeSelector", "tolerations", "schedulingGates")


# ----- names ---------------------------------------------------------------------------------------------


def job_name(jobset_name: str, replicated_job: str, index: int) -> str:
    """placement.GenJobName: `<jobset>-<replicatedJob>-<jobIndex>`."""
    return f"{jobset_name}-{replicated_job}-{index}"


def pod_name_prefix(jobset_name: str, replicated_job: str, job_index: int | str, pod_index: int | str) -> str:
    """placement.GenPodName: the deterministic part of a pod name, `<job>-<podIndex>`."""
    return f"{jobset_name}-{replicated_job}-{job_index}-{pod_index}"


def subdomain(js: Mapping[str, Any]) -> str:
    """GetSubdomain: spec.network.subdomain, else the JobSet's own name."""
    network = (js.get("spec") or {}).get("network") or {}
    return str(network.get("subdomain") or (js.get("metadata") or {}).get("name") or "")


def coordinator_endpoint(js: Mapping[str, Any]) -> str:
    """CoordinatorEndpoint: `<js>-<rjob>-<jobIndex>-<podIndex>.<subdomain>` (spec.coordinator must be set)."""
    coordinator = (js.get("spec") or {}).get("coordinator") or {}
    prefix = pod_name_prefix((js.get("metadata") or {}).get("name", ""), coordinator.get("replicatedJob", ""),
                             coordinator.get("jobIndex", 0), coordinator.get("podIndex", 0))
    return f"{prefix}.{subdomain(js)}"


# ----- the mutating webhook ------------------------------------------------------------------------------


def default_jobset(js: dict[str, Any]) -> dict[str, Any]:
    """The `mjobset.kb.io` defaults (and the Go round trip's traces); returns a new dict. A part of the wrong
    type is left alone for the schema validation that follows to report."""
    js = copy.deepcopy(js)
    spec = _part(js, "spec")
    if spec is None:
        return js
    if spec.get("successPolicy") is None:
        spec["successPolicy"] = {"operator": "All"}
    if spec.get("startupPolicy") is None:
        spec["startupPolicy"] = {"startupPolicyOrder": "AnyOrder"}
    for rjob in _items(spec.get("replicatedJobs")):
        for key in ("replicas", "groupName"):
            if key in rjob and not rjob[key]:  # omitempty: Go never sends a zero value back
                del rjob[key]
        job_template = _part(rjob, "template")
        job_spec = _part(job_template, "spec") if job_template is not None else None
        if job_template is None or job_spec is None:
            continue
        _part(job_template, "metadata")
        if not job_spec.get("completionMode"):
            job_spec["completionMode"] = "Indexed"
        pod_template = _part(job_spec, "template")
        pod_spec = _part(pod_template, "spec") if pod_template is not None else None
        if pod_template is None or pod_spec is None:
            continue
        _part(pod_template, "metadata")
        if not pod_spec.get("restartPolicy"):
            pod_spec["restartPolicy"] = "OnFailure"
        for kind in ("initContainers", "containers", "ephemeralContainers"):
            for container in _items(pod_spec.get(kind)):
                container.setdefault("resources", {})
    network = _part(spec, "network")
    if network is not None:
        if "subdomain" in network and not network["subdomain"]:
            del network["subdomain"]
        if network.get("enableDNSHostnames") is None:
            network["enableDNSHostnames"] = True
        if network.get("publishNotReadyAddresses") is None:
            network["publishNotReadyAddresses"] = True
    failure_policy = spec.get("failurePolicy")
    rules = failure_policy.get("rules") if isinstance(failure_policy, dict) else None
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        if isinstance(rule, dict) and not rule.get("name"):
            rule["name"] = f"failurePolicyRule{index}"
    for policy in _items(spec.get("volumeClaimPolicies")):
        if policy.get("retentionPolicy") is None:
            policy["retentionPolicy"] = {"whenDeleted": "Delete"}
    return js


def _part(parent: dict[str, Any], key: str) -> dict[str, Any] | None:
    """parent[key] as an object, created empty when absent or null; None when it is something else."""
    if parent.get(key) is None:
        parent[key] = {}
    value = parent[key]
    return value if isinstance(value, dict) else None


def _items(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field (nothing for a missing or mistyped one)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# ----- validation ----------------------------------------------------------------------------------------


def validate(js: dict[str, Any], old: Mapping[str, Any] | None = None) -> None:
    """The API server's own checks, then `vjobset.kb.io`; raises ApiError on the first that denies."""
    name = str((js.get("metadata") or {}).get("name") or "")
    server_causes = _cel_causes(js, old)
    if server_causes:
        raise _invalid(name, server_causes)
    causes = _webhook_create_causes(js) if old is None else _webhook_update_causes(js, old)
    if causes:
        denied = _invalid(name, causes)
        prefix = f'admission webhook "{VALIDATING_WEBHOOK}" denied the request: '
        raise ApiError(422, "Invalid", prefix + denied.message, details=denied.details)


def _invalid(name: str, causes: list[dict[str, str]]) -> ApiError:
    """apierrors.NewInvalid for JobSet (repeated messages dropped from the aggregate, as upstream)."""
    texts = list(dict.fromkeys(f"{c['field']}: {c['message']}" for c in causes))
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(422, "Invalid", f'JobSet.{GROUP} "{name}" is invalid: {joined}',
                    details={"name": name, "group": GROUP, "kind": "JobSet", "causes": causes})


def _field_invalid(path: str, value: Any, detail: str) -> dict[str, str]:
    rendered = f'"{value}"' if isinstance(value, str) else ("null" if value is None else str(value))
    return errors.field_cause(path, f"Invalid value: {rendered}: {detail}")


def _internal(message: str) -> dict[str, str]:
    """A plain Go error wrapped by field.InternalError(nil, err)."""
    return {"reason": "InternalError", "message": f"Internal error: {message}", "field": "<nil>"}


def _cel_causes(js: dict[str, Any], old: Mapping[str, Any] | None) -> list[dict[str, str]]:
    spec = js.get("spec") or {}
    rjobs = [r for r in spec.get("replicatedJobs") or [] if isinstance(r, dict)]
    causes: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, rjob in enumerate(rjobs):  # x-kubernetes-list-type: map, keyed by name
        if rjob.get("name") in seen:
            key = f'map[string]interface {{}}{{"name":"{rjob["name"]}"}}'
            causes.append(errors.field_cause(f"spec.replicatedJobs[{index}]", f"Duplicate value: {key}",
                                             reason="FieldValueDuplicate"))
        seen.add(str(rjob.get("name")))
    startup = spec.get("startupPolicy") or {}
    if startup.get("startupPolicyOrder") == "InOrder" and any("dependsOn" in r for r in rjobs):
        causes.append(errors.field_cause("spec", 'Invalid value: "object": StartupPolicy and DependsOn APIs '
                                                 "are mutually exclusive"))
    if old is None:
        return causes
    old_spec = old.get("spec") or {}
    for key in IMMUTABLE_SPEC_FIELDS:
        # a transition rule only runs when the field exists before and after
        if key in spec and key in old_spec and spec[key] != old_spec[key]:
            kind = "array" if isinstance(spec[key], list) else "object"
            causes.append(errors.field_cause(f"spec.{key}", f'Invalid value: "{kind}": Value is immutable'))
    old_rjobs = {r.get("name"): r for r in old_spec.get("replicatedJobs") or [] if isinstance(r, dict)}
    for index, rjob in enumerate(rjobs):
        before = old_rjobs.get(rjob.get("name"))
        if before is not None and "dependsOn" in rjob and "dependsOn" in before \
                and rjob["dependsOn"] != before["dependsOn"]:
            causes.append(errors.field_cause(f"spec.replicatedJobs[{index}].dependsOn",
                                             'Invalid value: "array": Value is immutable'))
    return causes


def _webhook_create_causes(js: dict[str, Any]) -> list[dict[str, str]]:
    name = str((js.get("metadata") or {}).get("name") or "")
    spec = js.get("spec") or {}
    rjobs = [r for r in spec.get("replicatedJobs") or [] if isinstance(r, dict)]
    failure_policy = spec.get("failurePolicy")
    causes: list[dict[str, str]] = []
    if (failure_policy or {}).get("restartStrategy") == "InPlaceRestart":
        causes.append(_internal("InPlaceRestart restart strategy cannot be set when InPlaceRestart feature "
                                "gate is disabled"))
    if rjobs and rjobs[0].get("dependsOn") is not None:
        causes.append(_internal("DependsOn can't be set for the first ReplicatedJob"))
    sub = str((spec.get("network") or {}).get("subdomain") or "")
    if sub:
        for message in dns1123_subdomain_errors(sub):
            causes.append(_field_invalid("spec.network.subdomain", sub, message))
        causes.extend(_dns1035("spec.network.subdomain", sub,
                               ".spec.network.subdomain is too long, must be less than 63 characters"))
    if spec.get("managedBy") is not None:
        causes.extend(_managed_by_causes(str(spec["managedBy"])))
    names: list[str] = []
    for index, rjob in enumerate(rjobs):
        causes.extend(_replicated_job_causes(name, index, rjob, names))
        names.append(str(rjob.get("name", "")))
    for target in (spec.get("successPolicy") or {}).get("targetReplicatedJobs") or []:
        if target not in names:
            causes.append(_internal(f"invalid replicatedJob name '{target}' does not appear in "
                                    ".spec.ReplicatedJobs"))
    if failure_policy is not None:
        causes.extend(_failure_policy_causes(failure_policy, names))
    if spec.get("coordinator") is not None:
        causes.extend(_coordinator_causes(js, rjobs))
    return causes


def _dns1035(path: str, value: str, too_long: str, *, shown: str | None = None) -> list[dict[str, str]]:
    """IsDNS1035Label errors of `value` as field.Invalid (of `shown`, if given), the length one reworded the
    way the webhook does."""
    return [_field_invalid(path, value if shown is None else shown,
                           too_long if "must be no more than 63 characters" in message else message)
            for message in dns1035_errors(value)]


def _replicated_job_causes(js_name: str, index: int, rjob: dict[str, Any],
                           earlier: list[str]) -> list[dict[str, str]]:
    path = f"spec.replicatedJobs[{index}]"
    rname = str(rjob.get("name", ""))
    replicas = int(rjob.get("replicas") or 0)
    job_spec = (rjob.get("template") or {}).get("spec") or {}
    causes: list[dict[str, str]] = []
    parallelism = job_spec.get("parallelism")
    if int(1 if parallelism is None else parallelism) * replicas > MAX_INT32:
        causes.append(_internal(f"the product of replicas and parallelism must not exceed {MAX_INT32} for "
                                f"replicatedJob '{rname}'"))
    causes += _dns1035(f"{path}.groupName", str(rjob.get("groupName") or ""),
                       ".spec.replicatedJob[].groupName is too long, must be less than 63 characters")
    longest_job = job_name(js_name, rname, replicas - 1)
    causes += _dns1035(f"{path}.name", longest_job, "JobSet name is too long, job names generated for this "
                                                    "JobSet will exceed 63 characters")
    completions = job_spec.get("completions")
    if job_spec.get("completionMode") == "Indexed" and completions is not None:
        longest_pod = pod_name_prefix(js_name, rname, replicas - 1, int(completions) - 1) + "-abcde"
        # upstream reports the Job name here, not the pod name it measured
        causes += _dns1035(f"{path}.name", longest_pod, "JobSet name is too long, pod names generated for "
                                                        "this JobSet will exceed 63 characters",
                           shown=longest_job)
    for dependency in rjob.get("dependsOn") or []:
        target = (dependency or {}).get("name")
        if target not in earlier + [rname]:
            causes.append(_internal(f"replicatedJob: {rname} cannot depend on replicatedJob: {target}"))
    return causes


def _managed_by_causes(manager: str) -> list[dict[str, str]]:
    path = "spec.managedBy"
    causes: list[dict[str, str]] = []
    host, slash, rest = manager.partition("/")
    if not manager:
        causes.append(errors.field_cause(path, "Required value", reason="FieldValueRequired"))
    elif not slash or not host or not rest:
        causes.append(_field_invalid(path, manager, 'must be a domain-prefixed path (such as "acme.io/foo")'))
    else:
        causes.extend(_field_invalid(path, host, message) for message in dns1123_subdomain_errors(host))
        if not _HTTP_PATH.match(rest):
            causes.append(_field_invalid(path, rest, "Invalid path (regex used for validation is "
                                                     "'[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"))
    if len(manager) > 63:
        causes.append(errors.field_cause(path, "Too long: may not be more than 63 bytes",
                                         reason="FieldValueTooLong"))
    return causes


def _failure_policy_causes(policy: dict[str, Any], names: list[str]) -> list[dict[str, str]]:
    rules = [r for r in policy.get("rules") or [] if isinstance(r, dict)]
    if any(r.get("action") in ("RestartJob", "RestartJobAndIgnoreMaxRestarts") for r in rules):
        # the RestartJob feature gate is alpha and off in v0.12.0; upstream stops validating here
        return [_internal("RestartJob and RestartJobAndIgnoreMaxRestarts failure policy actions are not "
                          "allowed when RestartJob feature gate is disabled")]
    causes: list[dict[str, str]] = []
    by_name: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        rule_name = str(rule.get("name") or "")
        if not 1 <= len(rule_name) <= 128:
            causes.append(_internal(f"invalid failure policy rule name of length {len(rule_name)}, the rule "
                                    "name must be at least 1 characters long and at most 128 characters "
                                    "long"))
        by_name.setdefault(rule_name, []).append(index)
        if not _RULE_NAME.match(rule_name):
            causes.append(_internal(f"invalid failure policy rule name '{rule_name}', a failure policy rule "
                                    "name must start with an alphabetic character, optionally followed by a "
                                    "string of alphanumeric characters or '_,:', and must end with an "
                                    "alphanumeric character or '_'"))
        for target in rule.get("targetReplicatedJobs") or []:
            if target not in names:
                causes.append(_internal(f"invalid replicatedJob name '{target}' in failure policy does not "
                                        "appear in .spec.ReplicatedJobs"))
        for reason in rule.get("onJobFailureReasons") or []:
            if reason not in FAILURE_REASONS:
                causes.append(_internal(f"invalid job failure reason '{reason}' in failure policy is not a "
                                        "recognized job failure reason"))
    for rule_name, indexes in by_name.items():
        if len(indexes) > 1:
            listed = "[" + " ".join(str(i) for i in indexes) + "]"
            causes.append(_internal(f"rule names are not unique, rules with indices {listed} all have the "
                                    f"same name '{rule_name}'"))
    return causes


def _coordinator_causes(js: dict[str, Any], rjobs: list[dict[str, Any]]) -> list[dict[str, str]]:
    coordinator = (js.get("spec") or {}).get("coordinator") or {}
    wanted = coordinator.get("replicatedJob")
    rjob = next((r for r in rjobs if r.get("name") == wanted), None)
    job_index, pod_index = int(coordinator.get("jobIndex") or 0), int(coordinator.get("podIndex") or 0)
    causes: list[dict[str, str]] = []
    if rjob is None:
        causes.append(_internal(f"coordinator replicatedJob {wanted} does not exist"))
    else:
        job_spec = (rjob.get("template") or {}).get("spec") or {}
        completions = job_spec.get("completions")
        if not 0 <= job_index < int(rjob.get("replicas") or 0):
            causes.append(_internal(f"coordinator job index {job_index} is invalid for replicatedJob "
                                    f"{wanted}"))
        elif job_spec.get("completionMode") != "Indexed" or completions is None:
            causes.append(_internal("job for coordinator pod must be indexed completion mode, and "
                                    "completions number must be set"))
        elif not 0 <= pod_index < int(completions):
            causes.append(_internal(f"coordinator pod index {pod_index} is invalid for replicatedJob "
                                    f"{wanted} job index {job_index}"))
    endpoint = coordinator_endpoint(js)
    problem = label_value_error(endpoint)
    if problem:
        causes.append(_internal(f'spec will lead to invalid label value "{endpoint}" for coordinator label '
                                f'"{COORDINATOR}" (long JobSet / ReplicatedJob / SubDomain name?): '
                                f"{problem}"))
    return causes


def _webhook_update_causes(js: dict[str, Any], old: Mapping[str, Any]) -> list[dict[str, str]]:
    spec, old_spec = js.get("spec") or {}, old.get("spec") or {}
    munged = copy.deepcopy(spec.get("replicatedJobs") or [])
    if old_spec.get("suspend") or spec.get("suspend"):
        old_by_name = {r.get("name"): r for r in copy.deepcopy(old_spec.get("replicatedJobs") or [])
                       if isinstance(r, dict)}
        for rjob in munged:
            before = old_by_name.get((rjob or {}).get("name"))
            if not isinstance(rjob, dict) or before is None:
                continue
            pod, old_pod = _pod_template(rjob), _pod_template(before)
            for key in ("labels", "annotations"):
                _copy_key(pod.setdefault("metadata", {}), old_pod.get("metadata") or {}, key)
            for key in _SUSPEND_MUTABLE_POD_FIELDS:
                _copy_key(pod.setdefault("spec", {}), old_pod.get("spec") or {}, key)
    causes: list[dict[str, str]] = []
    if munged != (old_spec.get("replicatedJobs") or []):
        causes.append(errors.field_cause("spec.replicatedJobs",
                                         "Invalid value: []v1alpha2.ReplicatedJob{...}: field is immutable"))
    if spec.get("managedBy") != old_spec.get("managedBy"):
        causes.append(_field_invalid("spec.managedBy", spec.get("managedBy"), "field is immutable"))
    return causes


def _pod_template(rjob: dict[str, Any]) -> dict[str, Any]:
    job_spec = (rjob.setdefault("template", {})).setdefault("spec", {})
    template: dict[str, Any] = job_spec.setdefault("template", {})
    return template


def _copy_key(target: dict[str, Any], source: dict[str, Any], key: str) -> None:
    if key in source:
        target[key] = copy.deepcopy(source[key])
    else:
        target.pop(key, None)


__all__ = ["CONTROLLER_NAME", "COORDINATOR", "GLOBAL_REPLICAS", "GROUP", "GROUP_NAME",
           "GROUP_REPLICAS", "JOBSET_NAME", "JOBSET_UID", "JOB_GLOBAL_INDEX", "JOB_GROUP_INDEX", "JOB_INDEX",
           "JOB_KEY", "MUTATING_WEBHOOK", "REPLICATED_JOB_NAME", "REPLICATED_JOB_REPLICAS", "RESTART_ATTEMPT",
           "VALIDATING_WEBHOOK", "coordinator_endpoint", "default_jobset", "job_name", "pod_name_prefix",
           "subdomain", "validate"]
