"""Backend `training-operator`: a `kubeflow.org/v1` TFJob for kubeflow/training-operator (≤ v1.9).

The TFJob itself is translators.backends.tfjob's; this dialect puts the run policy under
`spec.runPolicy` and, when the cluster gang-schedules (its profile names a `schedulerName`), adds
`spec.runPolicy.schedulingPolicy {minAvailable = total replicas, queue, priorityClass}`. Validates
against the v1.9.0 CRD (shared/crds) with nothing pruned. In-place merge patches change
`spec.runPolicy.<field>`.
"""

from __future__ import annotations

from typing import Any

from translators.backends.tfjob import TFJobBackend
from translators.spec import Backend, ClusterProfile, JobSpec


class TrainingOperatorBackend(TFJobBackend):
    """TFJob with `spec.runPolicy`."""

    name: Backend = "training-operator"

    def run_policy_body(self, policy: dict[str, Any], spec: JobSpec,
                        profile: ClusterProfile) -> dict[str, Any]:
        """`{"runPolicy": ...}` holding the run policy and, for a gang scheduler, the scheduling policy."""
        run_policy = dict(policy)
        if profile.scheduler_name:
            scheduling: dict[str, Any] = {"minAvailable": sum(r.count for r in spec.replicas)}
            if profile.queue:
                scheduling["queue"] = profile.queue
            if profile.priority_class:
                scheduling["priorityClass"] = profile.priority_class
            run_policy["schedulingPolicy"] = scheduling
        return {"runPolicy": run_policy} if run_policy else {}

    def run_policy_patch(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Changes go under `spec.runPolicy`."""
        return {"runPolicy": changes}
