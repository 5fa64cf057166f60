"""PartitionAccess in `sar` mode against a real SubjectAccessReview endpoint (KubeSim's policy, over HTTPS)."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest

from gateway.auth import Principal
from gateway.auth.policy import PartitionAccess
from gateway.auth.settings import AuthSettings
from gateway.errors import Forbidden


class HttpReviewer:
    """The smallest SubjectAccessReviewer: POST /apis/authorization.k8s.io/v1/subjectaccessreviews."""

    def __init__(self, sim: Any, session: aiohttp.ClientSession) -> None:
        self._url = f"{sim.url}/apis/authorization.k8s.io/v1/subjectaccessreviews"
        self._headers = {"Authorization": f"Bearer {sim.token}"}
        self._ssl = ssl.create_default_context(cafile=sim.ca_file)
        self._session = session
        self.calls = 0

    async def review(self, *, user: str, groups: Sequence[str], namespace: str, verb: str, group: str,
                     resource: str) -> bool:
        self.calls += 1
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": list(groups),
                         "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                                "resource": resource}}}
        async with self._session.post(self._url, json=body, headers=self._headers, ssl=self._ssl) as response:
            assert response.status == 201, await response.text()
            answer = await response.json()
        return bool(answer["status"].get("allowed"))


@pytest.fixture
async def http_reviewer(kubesim: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        yield HttpReviewer(kubesim, session)


async def test_sar_against_kubesim_policy(kubesim: Any, http_reviewer: HttpReviewer) -> None:
    kubesim.policy.allow("group:team-a", "create", "tfjobs", "team-a", api_group="kubeflow.org")
    kubesim.policy.allow("bob", "*", "tfjobs", "bob-ns", api_group="kubeflow.org")
    kubesim.policy.deny("mallory", "*", "*", "*")
    settings = AuthSettings.model_validate({"mode": "none", "clusters": {"c1": {"mode": "sar", "cacheSeconds": 30}}})
    access = PartitionAccess(settings, reviewers={"c1": http_reviewer})

    alice = Principal(user="alice", groups=frozenset({"team-a"}))
    await access.check(alice, cluster="c1", partition="team-a", verb="create")
    with pytest.raises(Forbidden):  # the group may create, not delete
        await access.check(alice, cluster="c1", partition="team-a", verb="delete")
    with pytest.raises(Forbidden):  # another namespace
        await access.check(alice, cluster="c1", partition="team-b", verb="create")
    await access.check(Principal(user="bob"), cluster="c1", partition="bob-ns", verb="delete")
    mallory = Principal(user="mallory", groups=frozenset({"team-a"}))
    with pytest.raises(Forbidden):  # an explicit deny wins over the group's allow
        await access.check(mallory, cluster="c1", partition="team-a", verb="create")
    with pytest.raises(Forbidden):  # Volcano jobs are another resource
        await access.check(alice, cluster="c1", partition="team-a", verb="create", group="batch.volcano.sh",
                           resource="jobs")
    assert http_reviewer.calls == 6

    # Cached answers: asking again does not reach the cluster.
    await access.check(alice, cluster="c1", partition="team-a", verb="create")
    with pytest.raises(Forbidden):
        await access.check(alice, cluster="c1", partition="team-b", verb="create")
    assert http_reviewer.calls == 6
