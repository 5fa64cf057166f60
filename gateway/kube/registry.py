"""`ClusterRegistry`: every configured cluster's client by id; owns their sessions.

Contract: `get(id)` returns the client or raises `UnknownCluster` (answered 404); iteration and `ids()`
follow the configuration's order; `start()` starts every client (fails on a bad connection setting, not on
an unreachable cluster) and `close()` closes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.kube.client import ClusterClient
from gateway.kube.errors import UnknownCluster


class ClusterRegistry:
    """All configured clusters by id (see module docstring)."""

    def __init__(self, clients: Mapping[str, ClusterClient]) -> None:
        self._clients = dict(clients)

    def get(self, cluster_id: str) -> ClusterClient:
        """The client of `cluster_id`; `UnknownCluster` for an unknown id."""
        client = self._clients.get(cluster_id)
        if client is None:
            raise UnknownCluster(cluster_id)
        return client

    def __iter__(self) -> Iterator[ClusterClient]:
        return iter(self._clients.values())

    def ids(self) -> list[str]:
        """Configured cluster ids in config order."""
        return list(self._clients)

    async def start(self) -> None:
        """Start every client."""
        for client in self._clients.values():
            await client.start()

    async def close(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.close()


__all__ = ["ClusterRegistry"]
