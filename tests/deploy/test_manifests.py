"""What the renders must hold beyond schema validity: the objects of a production install, wired to each
other (selectors, names, ports), every path the config names present in the pod, a shutdown that fits
the grace period, the Redis password from a file, and no right or token the gateway does not need."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography.fernet import Fernet

import gateway.app
from gateway.config import ConfigError, ListenSettings, load_settings
from gateway.web.ui.session import load_keys
from tests.deploy.conftest import GATEWAY_RENDERS, KUBERNETES, documents, find, generated, kustomize, one

ETC = "/etc/clever-gateway"
GATEWAY_LABELS = {"app.kubernetes.io/name": "clever-gateway"}


def gateway_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", "clever-gateway")["spec"]["template"]  # type: ignore[no-any-return]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # the manifests use matchLabels only
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def projected_files(docs: list[dict[str, Any]]) -> dict[str, tuple[str, str | None, str | None]]:
    """Path in the pod -> (source kind, object name, key) for every file of the gateway's volumes."""
    pod = gateway_pod(docs)["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    files: dict[str, tuple[str, str | None, str | None]] = {}
    for volume in pod["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            (kind, spec), = source.items()
            if kind == "serviceAccountToken":
                files[f"{mounts[volume['name']]}/{spec['path']}"] = (kind, None, None)
                continue
            for item in spec["items"]:
                files[f"{mounts[volume['name']]}/{item['path']}"] = (kind, spec["name"], item["key"])
    return files


def config_text(docs: list[dict[str, Any]]) -> str:
    return generated(docs, "ConfigMap", "clever-gateway-config")["data"]["config.yaml"]  # type: ignore[no-any-return]


def paths_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(paths_in(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(paths_in(v) for v in node)) if node else set()
    return {node} if isinstance(node, str) and node.startswith(ETC + "/") else set()


def test_deploy_kubernetes_renders_the_base(renders: dict[str, str]) -> None:
    assert renders["production"] == kustomize(KUBERNETES / "base")


def test_production_install_has_every_object(renders: dict[str, str]) -> None:
    docs = documents(renders["production"])
    kinds = {(doc["kind"], doc["metadata"]["name"].rsplit("-", 1)[0] if doc["kind"] in ("ConfigMap", "Secret")
              else doc["metadata"]["name"]) for doc in docs}
    assert {("Namespace", "clever-gateway"), ("ServiceAccount", "clever-gateway"),
            ("Deployment", "clever-gateway"), ("Service", "clever-gateway"),
            ("PodDisruptionBudget", "clever-gateway"), ("HorizontalPodAutoscaler", "clever-gateway"),
            ("ServiceMonitor", "clever-gateway"), ("PrometheusRule", "clever-gateway"),
            ("ConfigMap", "clever-gateway-config"), ("Secret", "clever-gateway-redis"),
            ("Secret", "clever-gateway-cluster-c1"), ("Secret", "clever-gateway-cluster-c2"),
            ("Secret", "clever-gateway-ui")} <= kinds
    assert {name for kind, name in kinds if kind == "NetworkPolicy"} == {
        "clever-gateway-ingress", "clever-gateway-egress-dns", "clever-gateway-egress-redis",
        "clever-gateway-egress-issuer", "clever-gateway-egress-clusters"}
    # The hosting cluster grants the gateway nothing (target clusters: deploy/rbac).
    assert not [doc for doc in docs if doc["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    assert {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"} == {"clever-gateway"}
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_production_config_map_is_the_example_config(renders: dict[str, str]) -> None:
    docs = documents(renders["production"])
    assert config_text(docs) == (KUBERNETES / "base" / "config.example.yaml").read_text()
    assert (KUBERNETES.parent / "config.example.yaml").resolve() == (KUBERNETES / "base" / "config.example.yaml")


@pytest.mark.parametrize("render", GATEWAY_RENDERS)
def test_every_path_of_the_config_exists_in_the_pod(render: str, renders: dict[str, str], tmp_path: Path) -> None:
    docs = documents(renders[render])
    (tmp_path / "config.yaml").write_text(config_text(docs))
    settings = load_settings(tmp_path / "config.yaml", environ={})  # what `serve --check` runs
    files = projected_files(docs)
    named = paths_in(yaml.safe_load(config_text(docs)))
    assert named, "the config names no file under /etc/clever-gateway"
    for cluster in settings.clusters:
        for path in (cluster.token_file, cluster.ca_file, cluster.kubeconfig):
            assert path is None or path in named
    for path in (settings.redis.password_file, settings.redis.sentinel_password_file, settings.redis.tls_ca_file,
                 settings.ui.session_key_file, settings.ui.client_secret_file):
        assert path is None or path in named
    arguments = " ".join(gateway_pod(docs)["spec"]["containers"][0]["args"])
    needed = named | {f"{ETC}/config.yaml"} | set(re.findall(rf"{ETC}/[\w./-]+", arguments))
    assert needed <= set(files), sorted(needed - set(files))
    # ...and every file comes from an object of the render (or of every namespace, kube-root-ca.crt)
    # that has the key.
    for path, (kind, name, key) in files.items():
        if kind == "serviceAccountToken":
            continue
        if name == "kube-root-ca.crt":
            assert key == "ca.crt"
            continue
        (source,) = [d for d in find(docs, {"configMap": "ConfigMap", "secret": "Secret"}[kind], name)]
        assert key in source.get("data", {}) | source.get("stringData", {}), (path, name, key)


@pytest.mark.parametrize("render", ["production", "redis-sentinel"])
def test_enabling_the_dashboard_is_a_config_change(render: str, renders: dict[str, str], tmp_path: Path) -> None:
    """ui.sessionKeyFile is set and mounted from Secret clever-gateway-ui: turning the dashboard on takes
    `enabled`, a clientId and real keys in the Secret, no change of the manifests. The placeholder the
    base ships is refused at start, naming the key."""
    docs = documents(renders[render])
    config = yaml.safe_load(config_text(docs))
    config["ui"] |= {"enabled": True, "clientId": "clever-dashboard"}
    config["auth"]["oidc"]["audience"] = [config["auth"]["oidc"]["audience"], "clever-dashboard"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(tmp_path / "config.yaml", environ={})
    assert settings.ui.enabled and settings.ui.session_key_file == f"{ETC}/ui/session-keys"
    kind, name, key = projected_files(docs)[settings.ui.session_key_file]
    secret = generated(docs, "Secret", "clever-gateway-ui")
    assert (kind, name, key) == ("secret", secret["metadata"]["name"], "session-keys")
    placeholder = tmp_path / "session-keys"
    placeholder.write_bytes(base64.b64decode(secret["data"]["session-keys"]))
    with pytest.raises(ConfigError, match="ui.sessionKeyFile: .* key 1 is not a Fernet key"):
        load_keys(settings.model_copy(update={"ui": settings.ui.model_copy(
            update={"session_key_file": str(placeholder)})}))
    placeholder.write_text(Fernet.generate_key().decode() + "\n")
    assert len(load_keys(settings.model_copy(update={"ui": settings.ui.model_copy(
        update={"session_key_file": str(placeholder)})}))) == 1


def test_sentinel_overlay_config_is_the_example_with_its_redis(renders: dict[str, str], tmp_path: Path) -> None:
    """overlays/redis-sentinel replaces config.yaml for its redis section only, which names the Sentinel
    of each of its Redis pods through their headless Service (what bootstrap.sh announces)."""
    docs = documents(renders["redis-sentinel"])
    overlay = yaml.safe_load(config_text(docs))
    example = yaml.safe_load((KUBERNETES / "base" / "config.example.yaml").read_text())
    assert {k: v for k, v in overlay.items() if k != "redis"} == {k: v for k, v in example.items() if k != "redis"}
    (tmp_path / "config.yaml").write_text(config_text(docs))
    redis_settings = load_settings(tmp_path / "config.yaml", environ={}).redis
    assert redis_settings.mode == "sentinel"
    statefulset = one(docs, "StatefulSet", "redis")
    service = one(docs, "Service", statefulset["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    (sentinel,) = [c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "sentinel"]
    (port,) = [p["containerPort"] for p in sentinel["ports"]]
    assert redis_settings.sentinels == [f"redis-{i}.{service['metadata']['name']}:{port}"
                                        for i in range(statefulset["spec"]["replicas"])]
    assert f"sentinel monitor {redis_settings.sentinel_service} " in (
        KUBERNETES / "overlays" / "redis-sentinel" / "bootstrap.sh").read_text()


def test_secret_keys_cannot_hold_the_config_paths() -> None:
    """Why the Secrets are projected per directory: a Secret key cannot contain '/'."""
    key = re.compile(r"^[-._a-zA-Z0-9]+$")  # Kubernetes' rule for ConfigMap and Secret keys
    assert not key.match("clusters/c1/token")
    assert key.match("ca.crt") and key.match("token") and key.match("kubeconfig")


@pytest.mark.parametrize("render", GATEWAY_RENDERS)
def test_gateway_pod_is_locked_down(render: str, renders: dict[str, str]) -> None:
    docs = documents(renders[render])
    pod = gateway_pod(docs)["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount", "clever-gateway")["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # A writable /tmp beside the read-only root.
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    # Secrets only as files.
    assert "env" not in container and "envFrom" not in container
    assert re.fullmatch(r"[\w.-]+(/[\w.-]+)+@sha256:[0-9a-f]{64}", container["image"]), container["image"]
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_production_image_is_the_unpullable_placeholder(renders: dict[str, str]) -> None:
    (container,) = gateway_pod(documents(renders["production"]))["spec"]["containers"]
    assert container["image"] == "registry.example.com/clever/clever-gateway@sha256:" + "0" * 64


@pytest.mark.parametrize("render", GATEWAY_RENDERS)
def test_availability(render: str, renders: dict[str, str]) -> None:
    docs = documents(renders[render])
    deployment = one(docs, "Deployment", "clever-gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = one(docs, "HorizontalPodAutoscaler", "clever-gateway")
    assert deployment["spec"]["replicas"] >= 2 and hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clever-gateway"}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one(docs, "PodDisruptionBudget", "clever-gateway")
    assert selects(pdb["spec"]["selector"], labels) and pdb["spec"]["maxUnavailable"] == 1
    spread = {c["topologyKey"]: c for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert "topology.kubernetes.io/zone" in spread
    assert all(selects(c["labelSelector"], labels) for c in spread.values())


def test_grace_period_outlasts_the_shutdown(renders: dict[str, str]) -> None:
    """SIGTERM comes after the preStop pause; then aiohttp waits up to shutdown_timeout for requests in
    flight, and the app stops its background tasks (two bounded waits). All must fit in the grace
    period, or the kubelet kills the server mid-request."""
    server_wait = ListenSettings().shutdown_timeout_seconds  # what `serve` passes to aiohttp
    tasks_wait = 2 * gateway.app._STOP_GRACE_SECONDS
    pod = gateway_pod(documents(renders["production"]))["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert pause >= 5  # endpoints leave kube-proxy and load balancers a few seconds after termination
    assert pod["terminationGracePeriodSeconds"] >= pause + server_wait + tasks_wait + 10


def test_service_monitor_and_service_reach_the_pods(renders: dict[str, str]) -> None:
    docs = documents(renders["production"])
    template = gateway_pod(docs)
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = one(docs, "Service", "clever-gateway")
    assert selects({"matchLabels": service["spec"]["selector"]}, template["metadata"]["labels"])
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    monitor = one(docs, "ServiceMonitor", "clever-gateway")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"] and endpoint["path"] == "/metrics"
    rule = one(docs, "PrometheusRule", "clever-gateway")
    assert rule["metadata"]["namespace"] == monitor["metadata"]["namespace"] == "clever-gateway"


@pytest.mark.parametrize("render", GATEWAY_RENDERS)
def test_network_policies(render: str, renders: dict[str, str]) -> None:
    docs = documents(renders[render])
    template = gateway_pod(docs)
    (container,) = template["spec"]["containers"]
    policies = [p for p in find(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"], GATEWAY_LABELS)]
    ingress = [rule for p in policies if "Ingress" in p["spec"]["policyTypes"] for rule in p["spec"].get("ingress", [])]
    assert [port["port"] for rule in ingress for port in rule["ports"]] == ["http"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    egress = {p["metadata"]["name"]: p["spec"]["egress"] for p in policies if "Egress" in p["spec"]["policyTypes"]}
    dns = {(port["port"], port["protocol"]) for rule in egress["clever-gateway-egress-dns"] for port in rule["ports"]}
    assert dns == {(53, "UDP"), (53, "TCP")}
    assert egress["clever-gateway-egress-clusters"] and egress["clever-gateway-egress-redis"]
    # An in-cluster Redis is selected by its pods' labels: those pods exist in the render.
    for rule in egress["clever-gateway-egress-redis"]:
        for peer in rule["to"]:
            if "podSelector" in peer:
                targets = [w for w in docs if w["kind"] in ("Deployment", "StatefulSet")
                           and selects(peer["podSelector"], w["spec"]["template"]["metadata"]["labels"])]
                assert targets, peer
    if render != "demo":  # auth off in the demo: no issuer
        assert egress["clever-gateway-egress-issuer"]
    # Every other pod of the install has a policy too.
    for workload in (w for w in docs if w["kind"] in ("Deployment", "StatefulSet")):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(selects(p["spec"]["podSelector"], labels) for p in find(docs, "NetworkPolicy")), workload["metadata"]


@pytest.mark.parametrize("render", GATEWAY_RENDERS)
def test_redis_password_comes_from_the_secret_file(render: str, renders: dict[str, str], tmp_path: Path) -> None:
    """The gateway runs the image's entry point with its config, no shell line and no env: the Redis URL
    holds no password, and the password (where the Redis wants one) is redis.passwordFile, projected from
    Secret clever-gateway-redis's key `password`."""
    docs = documents(renders[render])
    (container,) = gateway_pod(docs)["spec"]["containers"]
    assert "command" not in container  # the image's ENTRYPOINT, clever-gateway
    assert container["args"] == ["serve", "--config", f"{ETC}/config.yaml"]
    (tmp_path / "config.yaml").write_text(config_text(docs))
    redis_settings = load_settings(tmp_path / "config.yaml", environ={}).redis
    assert urlsplit(redis_settings.url).password is None and redis_settings.password is None
    if render == "demo":  # the demo's Redis pod has no password, and the demo no Secret for one
        assert redis_settings.password_file is None
        assert not [s for s in find(docs, "Secret") if s["metadata"]["name"].startswith("clever-gateway-redis")]
        return
    assert redis_settings.password_file == f"{ETC}/redis/password"
    kind, name, key = projected_files(docs)[redis_settings.password_file]
    assert (kind, key) == ("secret", "password")
    assert generated(docs, "Secret", "clever-gateway-redis")["metadata"]["name"] == name


def test_demo_reaches_this_cluster_with_a_projected_token(renders: dict[str, str], tmp_path: Path) -> None:
    docs = documents(renders["demo"])
    files = projected_files(docs)
    (tmp_path / "config.yaml").write_text(config_text(docs))
    (cluster,) = load_settings(tmp_path / "config.yaml", environ={}).clusters
    assert cluster.server == "https://kubernetes.default.svc"
    assert files[cluster.token_file] == ("serviceAccountToken", None, None)  # type: ignore[index]
    assert files[cluster.ca_file] == ("configMap", "kube-root-ca.crt", "ca.crt")  # type: ignore[index]
    pod = gateway_pod(docs)["spec"]
    (token,) = [s["serviceAccountToken"] for v in pod["volumes"] for s in v.get("projected", {}).get("sources", [])
                if "serviceAccountToken" in s]
    assert token["expirationSeconds"] <= 3600
    # This cluster is a target: the base permissions are bound to the gateway's ServiceAccount here.
    binding = one(docs, "ClusterRoleBinding", "clever-gateway")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "clever-gateway", "namespace": "clever-gateway"}]
    assert one(docs, "ClusterRole", binding["roleRef"]["name"])
    assert not [d for d in find(docs, "Secret") if d["metadata"]["name"].startswith("clever-gateway-cluster-")]


def test_rbac_renders(renders: dict[str, str]) -> None:
    base = documents(renders["rbac-base"])
    assert {d["kind"] for d in base} == {"ClusterRole", "ClusterRoleBinding"}  # nothing the host already has
    remote = documents(renders["rbac-remote"])
    assert one(remote, "Namespace", "clever-gateway") and one(remote, "ServiceAccount", "clever-gateway")
    token = one(remote, "Secret", "clever-gateway-token")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "clever-gateway"
    every = documents(renders["rbac-all-modes"])
    roles = {d["metadata"]["name"]: d for d in find(every, "ClusterRole")}
    for binding in find(every, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] in roles
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "clever-gateway",
                                        "namespace": "clever-gateway"}]
    assert {"clever-gateway", "clever-gateway-subjectaccessreview", "clever-gateway-impersonator"} <= set(roles)


def test_impersonation_names_every_identity(renders: dict[str, str]) -> None:
    """No wildcard impersonation: each `impersonate` rule lists its users or groups, never a system
    identity, and covers neither service accounts, UIDs nor extra fields."""
    rules = [rule for role in find(documents(renders["rbac-all-modes"]), "ClusterRole") for rule in role["rules"]]
    impersonating = [r for r in rules if {"impersonate", "*"} & set(r["verbs"])]
    assert {res for r in impersonating for res in r["resources"]} == {"users", "groups"}
    for rule in impersonating:
        assert rule["apiGroups"] == [""] and rule["verbs"] == ["impersonate"]
        assert rule["resourceNames"], rule
        assert not [n for n in rule["resourceNames"] if n.startswith("system:")], rule
    assert not [r for r in rules if "*" in r["resources"] or "*" in r["verbs"]]


def image_name(reference: str) -> str:
    """`registry/name` of `registry/name:tag@sha256:...`."""
    reference = reference.split("@", 1)[0]
    return reference.rsplit(":", 1)[0] if ":" in reference.rsplit("/", 1)[-1] else reference


@pytest.mark.parametrize("overlay", ["demo", "redis-sentinel"])
def test_overlay_images_match_an_image_they_change(overlay: str, renders: dict[str, str]) -> None:
    """kustomize applies the base's `images:` first: an overlay entry must name the image as the base
    left it (or as its own manifests write it), or it silently changes nothing."""
    directory = KUBERNETES / "overlays" / overlay
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    before = {image_name(c["image"]) for doc in documents(renders["production"]) if doc["kind"] == "Deployment"
              for c in doc["spec"]["template"]["spec"]["containers"]}
    for resource in spec["resources"]:
        if resource.endswith(".yaml"):
            for doc in documents((directory / resource).read_text()):
                if doc["kind"] in ("Deployment", "StatefulSet"):
                    pod = doc["spec"]["template"]["spec"]
                    before |= {image_name(c["image"]) for c in pod["containers"] + pod.get("initContainers", [])}
    rendered = {c["image"] for doc in documents(renders[overlay]) if doc["kind"] in ("Deployment", "StatefulSet")
                for c in doc["spec"]["template"]["spec"]["containers"]}
    for entry in spec["images"]:
        assert entry["name"] in before, (entry["name"], before)
        assert any(image.endswith("@" + entry["digest"]) for image in rendered), entry
