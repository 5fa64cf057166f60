"""Backend `tf-operator`: a `kubeflow.org/v1` TFJob for the older kubeflow/tf-operator (seeds 000-002).

The TFJob itself is translators.backends.tfjob's; this dialect puts `cleanPodPolicy`,
`ttlSecondsAfterFinished`, `activeDeadlineSeconds`, `backoffLimit` directly in `spec` (that operator's
RunPolicy was inlined). Its CRD accepts them; the v1.9.0 CRD would prune exactly those four. No
`schedulingPolicy` there (that operator's gang mode made PodGroups itself): only the pods'
`schedulerName`. In-place merge patches change `spec.<field>`.
"""

from __future__ import annotations

from typing import Any

from translators.backends.tfjob import TFJobBackend
from translators.spec import Backend, ClusterProfile, JobSpec


class TFOperatorBackend(TFJobBackend):
    """TFJob with the run policy inlined in `spec`."""

    name: Backend = "tf-operator"

    def run_policy_body(self, policy: dict[str, Any], spec: JobSpec,
                        profile: ClusterProfile) -> dict[str, Any]:
        """The run-policy fields themselves, for `spec`."""
        return dict(policy)

    def run_policy_patch(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Changes go directly under `spec`."""
        return dict(changes)
