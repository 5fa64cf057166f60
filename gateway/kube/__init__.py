"""The cluster client: transport and credentials, typed errors, watch (DESIGN §5).

- `refs`: `ResourceKind`, `ObjectRef` (the one URL builder), `PODS`, `EVENTS`, `NAMESPACES`, `SUBJECT_ACCESS_REVIEWS`.
- `errors`: `KubeStatus` and the flat error set (`ClusterApiError`, `WatchExpired`, `ClusterUnreachable`,
  `ClusterTimedOut`, `ClusterCredentialsError`, `ClusterBadResponse`, `UnknownCluster`); `transient` is
  decided by the Status, not by class.
- `credentials`: server/kubeconfig/in-cluster connections, TLS from data without files, exec plugins,
  token files, proxies.
- `transport`: the aiohttp session, one request, 401 refresh, request ids, metrics; no aiohttp exception
  leaves it.
- `watch`: one watch request's events; `transport.ByteStream`: a streamed answer (a followed pod log).
  `client`: `ClusterClient` (verbs, retries). `registry`:
  `ClusterRegistry`.
The legacy HTTP answer for these errors is decided in one place: `gateway.web.errors.legacy_error`.
"""

from gateway.kube.client import ClusterClient, ListResult
from gateway.kube.errors import (
    ClusterApiError,
    ClusterBadResponse,
    ClusterCredentialsError,
    ClusterTimedOut,
    ClusterUnreachable,
    KubeCause,
    KubeError,
    KubeStatus,
    UnknownCluster,
    WatchExpired,
)
from gateway.kube.refs import EVENTS, NAMESPACES, PODS, SUBJECT_ACCESS_REVIEWS, ObjectRef, ResourceKind
from gateway.kube.registry import ClusterRegistry
from gateway.kube.transport import ByteStream
from gateway.kube.watch import WatchEvent

__all__ = [
    "EVENTS", "NAMESPACES", "PODS", "SUBJECT_ACCESS_REVIEWS", "ByteStream", "ClusterApiError", "ClusterBadResponse",
    "ClusterClient", "ClusterCredentialsError", "ClusterRegistry", "ClusterTimedOut", "ClusterUnreachable", "KubeCause",
    "KubeError", "KubeStatus", "ListResult", "ObjectRef", "ResourceKind", "UnknownCluster", "WatchEvent",
    "WatchExpired",
]
