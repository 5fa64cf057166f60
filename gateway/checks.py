"""`clever-gateway check`: whether a configuration can work where it is deployed, before it serves.

Contract: `await run_checks(settings)` returns one `Check` per row, in order:
- every file the configuration names is readable (`gateway.config.referenced_files`);
- Redis answers PING (in its `redis.mode`, with its credentials and TLS);
- with `auth.mode: oidc`, the issuer's discovery document and key set (JWKS) can be fetched and hold a
  usable signing key;
- per cluster: its credentials load, its API server answers (`GET /version`), it serves the backend's
  job resource (API discovery of its group/version: a CRD that is not installed is not served), and the
  gateway's own identity is allowed each verb of the RBAC rules the backend declares
  (`JobBackend.rbac_rules`, the same rules deploy/rbac grants), asked as SelfSubjectAccessReviews
  across all namespaces (the watch lists and watches every namespace).
A check that cannot run because an earlier one failed (no RBAC without an API server) is not listed: the
failed row says why. Nothing is written anywhere. `render(checks)` is the table the command prints.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisClusterException, RedisError

from gateway.auth import OIDCAuthenticator
from gateway.config import ClusterSettings, ConfigError, Settings, referenced_files
from gateway.errors import GatewayError
from gateway.kube import ClusterApiError, ClusterClient, KubeError
from gateway.state import State

# Per step: a cluster or an issuer that does not answer must not hang the command.
STEP_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Check:
    """One row: what was checked, on what, and the outcome."""

    target: str
    check: str
    ok: bool
    detail: str


async def run_checks(settings: Settings) -> list[Check]:
    """Every check of the module docstring."""
    rows = [_file(key, path) for key, path in referenced_files(settings)]
    rows.append(await _redis(settings))
    if settings.auth.mode == "oidc":
        rows.append(await _oidc(settings))
    for cluster in settings.clusters:
        rows += await _cluster(settings, cluster)
    return rows


def _file(key: str, path: str) -> Check:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as e:
        return Check(key, "file readable", False, f"{path}: {e.strerror or e}")
    return Check(key, "file readable", True, path)


def render(checks: list[Check]) -> str:
    """The table: target, check, ok/FAILED, detail."""
    header = ("TARGET", "CHECK", "RESULT", "DETAIL")
    table = [header, *((c.target, c.check, "ok" if c.ok else "FAILED", c.detail) for c in checks)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    return "\n".join(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
                     for row in table) + "\n"


async def _timed(step: Callable[[], Awaitable[object]]) -> float:
    """Run one step within the step timeout; its duration in milliseconds."""
    started = time.perf_counter()
    async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
        await step()
    return (time.perf_counter() - started) * 1000.0


def _why(error: BaseException) -> str:
    if isinstance(error, (GatewayError, KubeError)):
        return error.message
    if isinstance(error, TimeoutError):
        return f"no answer within {STEP_TIMEOUT_SECONDS:g}s"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def _redis(settings: Settings) -> Check:
    target = f"redis ({settings.redis.mode})"
    try:
        state = State.from_settings(settings.redis)
    except (ConfigError, ValueError) as e:
        return Check(target, "PING", False, str(e))
    try:
        latency = await _timed(state.redis.ping)
    except (RedisError, RedisClusterException, OSError, TimeoutError) as e:
        return Check(target, "PING", False, _why(e))
    finally:
        await state.close()
    return Check(target, "PING", True, f"answered in {latency:.1f} ms")


async def _oidc(settings: Settings) -> Check:
    oidc = settings.auth.oidc
    assert oidc is not None  # auth.mode oidc requires it (validated with the settings)
    authenticator = OIDCAuthenticator(settings.auth)
    try:
        await _timed(authenticator.start)
        health = authenticator.health()
    except TimeoutError as e:
        return Check(oidc.issuer, "discovery + JWKS", False, _why(e))
    finally:
        await authenticator.close()
    if not health["keysLoaded"]:
        return Check(oidc.issuer, "discovery + JWKS", False, str(health["lastError"] or "no key set"))
    return Check(oidc.issuer, "discovery + JWKS", True, "signing keys fetched")


async def _cluster(settings: Settings, cluster: ClusterSettings) -> list[Check]:
    target = f"cluster {cluster.id}"
    client = ClusterClient(cluster, retry=settings.retry)
    try:
        await client.start()
    except ConfigError as e:
        return [Check(target, "credentials", False, str(e))]
    try:
        try:
            latency = await _timed(client.ping)
        except (KubeError, TimeoutError) as e:
            return [Check(target, "API server", False, _why(e) + " (resource and RBAC checks skipped)")]
        rows = [Check(target, "API server", True, f"{client.connection.server} answered in {latency:.1f} ms")]
        rows.append(await _served(client))
        rows += await _rbac(client)
        return rows
    finally:
        await client.close()


async def _served(client: ClusterClient) -> Check:
    resource = client.backend.resource
    what = f"{resource.plural}.{resource.group}/{resource.version}" if resource.group else resource.plural
    check = f"serves {what}"
    served: set[str] = set()

    async def discover() -> None:
        served.update(await client.served_resources(resource.group, resource.version))

    try:
        await _timed(discover)
    except ClusterApiError as e:
        if e.status.code == 404:
            return Check(f"cluster {client.id}", check, False,
                         f"{resource.api_version} is not served: is the {resource.kind} CRD installed?")
        return Check(f"cluster {client.id}", check, False, _why(e))
    except (KubeError, TimeoutError) as e:
        return Check(f"cluster {client.id}", check, False, _why(e))
    if resource.plural not in served:
        return Check(f"cluster {client.id}", check, False,
                     f"{resource.api_version} does not serve {resource.plural}: is the {resource.kind} CRD installed?")
    return Check(f"cluster {client.id}", check, True, f"backend {client.profile.backend}")


async def _rbac(client: ClusterClient) -> list[Check]:
    rows = []
    for rule in client.backend.rbac_rules():
        for group in rule["apiGroups"]:
            for name in rule["resources"]:
                resource, _, subresource = name.partition("/")
                denied: list[str] = []
                try:
                    for verb in rule["verbs"]:
                        allowed, _reason = await client.self_review(verb=verb, group=group, resource=resource,
                                                                    subresource=subresource)
                        if not allowed:
                            denied.append(verb)
                except (KubeError, TimeoutError) as e:
                    rows.append(Check(f"cluster {client.id}", f"rbac {name}", False, _why(e)))
                    continue
                qualified = f"{name}.{group}" if group else name
                if denied:
                    rows.append(Check(f"cluster {client.id}", f"rbac {qualified}", False,
                                      f"denied: {', '.join(denied)} (allowed: "
                                      f"{', '.join(v for v in rule['verbs'] if v not in denied) or 'nothing'})"))
                else:
                    rows.append(Check(f"cluster {client.id}", f"rbac {qualified}", True,
                                      f"allowed: {', '.join(rule['verbs'])}"))
    return rows
