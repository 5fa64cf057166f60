"""Configuration: the example file parses, env overrides reach every key, bad files name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "config.example.yaml"
MINIMAL = {"auth": {"mode": "none"}, "clusters": [{"id": "c1", "server": "https://127.0.0.1:6443", "token": "t"}]}


def test_serve_check_wants_every_named_file_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The example names files under /etc/clever-gateway (mounted Secrets): here they are missing.
    assert main(["serve", "--config", str(EXAMPLE), "--check"]) == 2
    err = capsys.readouterr().err
    assert "clusters.0.tokenFile: /etc/clever-gateway/clusters/c1/token: No such file or directory" in err
    assert "clusters.1.kubeconfig" in err and "Traceback" not in err
    for name, key in (("token", "TOKEN_FILE"), ("ca.crt", "CA_FILE")):
        (tmp_path / name).write_text("x")
        monkeypatch.setenv(f"CLEVER_GATEWAY__CLUSTERS__0__{key}", str(tmp_path / name))
    (tmp_path / "kubeconfig").write_text("x")
    monkeypatch.setenv("CLEVER_GATEWAY__CLUSTERS__1__KUBECONFIG", str(tmp_path / "kubeconfig"))
    (tmp_path / "redis-password").write_text("x")
    monkeypatch.setenv("CLEVER_GATEWAY__REDIS__PASSWORD_FILE", str(tmp_path / "redis-password"))
    (tmp_path / "session-keys").write_text("x")
    monkeypatch.setenv("CLEVER_GATEWAY__UI__SESSION_KEY_FILE", str(tmp_path / "session-keys"))
    assert main(["serve", "--config", str(EXAMPLE), "--check"]) == 0
    assert "2 cluster(s): c1, c2" in capsys.readouterr().out


def test_example_config_values() -> None:
    settings = load_settings(EXAMPLE, environ={})
    c1 = settings.cluster("c1")
    assert c1 is not None and c1.token_file and c1.ca_file
    profile = c1.profile()
    assert profile.runtimes["Python_2.7+Tensorflow_1.2.1"].command == ("python2",)
    assert profile.namespace_map == {"clever": "clever-jobs"}
    assert profile.max_gpus_per_job == 16
    assert settings.cluster("c2").profile().backend == "volcano"  # type: ignore[union-attr]
    assert settings.limits.max_body_bytes == 1024 * 1024


def test_env_overrides_nested_and_list_items(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE, environ={
        "CLEVER_GATEWAY__REDIS__URL": "redis://other:6380/2",
        "CLEVER_GATEWAY__REDIS__KEY_PREFIX": "x:",
        "CLEVER_GATEWAY__LISTEN__PORT": "9090",
        "CLEVER_GATEWAY__CLUSTERS__1__QUEUE": "gpu",
        "CLEVER_GATEWAY__SYNC__WATCH": "false",
        "CLEVER_GATEWAY__AUTH__ADMIN_GROUPS": '["ops"]',
    })
    assert settings.redis.url == "redis://other:6380/2"
    assert settings.redis.key_prefix == "x:"
    assert settings.listen.port == 9090
    assert settings.clusters[1].queue == "gpu"
    assert settings.sync.watch is False
    assert settings.auth.adminGroups == ["ops"]


def test_config_path_from_environment() -> None:
    settings = load_settings(environ={"CLEVER_GATEWAY_CONFIG": str(EXAMPLE)})
    assert [c.id for c in settings.clusters] == ["c1", "c2"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"clusters": [{"id": "c1", "server": "https://x", "backend": "mpi"}]},
     "clusters.0.backend: Input should be 'training-operator', 'tf-operator', 'volcano' or 'jobset'"),
    ({"clusters": [{"id": "c1", "server": "https://x"}, {"id": "c1", "inCluster": True}]},
     "duplicate cluster id 'c1'"),
    ({"clusters": [{"id": "c1"}]}, "clusters.0: Value error, give exactly one of server, kubeconfig, inCluster"),
    ({"clusters": []}, "clusters: Value error, at least one cluster is required"),
    ({"limits": {"maxBodyBytes": "lots"}}, "limits.maxBodyBytes: Input should be a valid integer"),
    ({"listen": {"prot": 80}}, "listen.prot: Extra inputs are not permitted"),
    ({"auth": {"mode": "oidc"}}, "auth.oidc is required"),
    ({"clusters": [{"id": "C 1", "server": "https://x"}]}, "clusters.0.id"),
    ({"redis": {"mode": "sentinel"}}, "mode sentinel needs sentinels"),
    ({"redis": {"mode": "sentinel", "sentinels": ["10.0.0.5"]}}, "'10.0.0.5' is not host:port"),
    ({"redis": {"mode": "raft"}}, "redis.mode: Input should be 'standalone', 'sentinel' or 'cluster'"),
    ({"redis": {"sentinels": ["h:1"]}}, "sentinels are used only with mode sentinel"),
    ({"redis": {"url": "embedded", "mode": "cluster"}}, "needs mode standalone"),
    ({"redis": {"url": "http://redis:6379"}}, "url must start with redis:// or rediss://"),
    ({"redis": {"waitReplicas": -1}}, "redis.waitReplicas: Input should be greater than or equal to 0"),
])
def test_bad_config_names_the_key_path(change: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, base={**MINIMAL, **change})
    assert expected in str(caught.value)


def test_unreadable_password_file_fails_serve_naming_the_key(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Like every file the configuration names: `serve` and `serve --check` refuse it with exit 2."""
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "redis": {"passwordFile": "/nonexistent/secret"}}))
    for args in (["serve", "--config", str(path)], ["serve", "--config", str(path), "--check"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "redis.passwordFile: /nonexistent/secret: No such file or directory" in err
        assert "Traceback" not in err


def test_bad_file_fails_serve_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("auth: {mode: none}\nclusters:\n  - {id: c1, server: 'https://x', backend: nope}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "clusters.0.backend" in capsys.readouterr().err


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(listing, environ={})


def test_redis_modes_and_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = load_settings(environ={
        "CLEVER_GATEWAY__REDIS__MODE": "sentinel",
        "CLEVER_GATEWAY__REDIS__SENTINELS": '["10.0.0.5:26379", "[::1]:26380"]',
        "CLEVER_GATEWAY__REDIS__SENTINEL_SERVICE": "clever",
        "CLEVER_GATEWAY__REDIS__PASSWORD_FILE": str(secret),
        "CLEVER_GATEWAY__REDIS__URL": "rediss:///2",
    }, base=MINIMAL)
    redis = settings.redis
    assert (redis.mode, redis.sentinel_service, redis.wait_replicas) == ("sentinel", "clever", 1)
    assert redis.sentinel_addresses() == [("10.0.0.5", 26379), ("::1", 26380)]
    assert redis.secret(redis.password, redis.password_file, what="passwordFile") == "s3cret"


def test_env_override_of_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="CLEVER_GATEWAY__REDIS__NOPE"):
        load_settings(environ={"CLEVER_GATEWAY__REDIS__NOPE": "1"}, base=MINIMAL)


def test_a_busy_port_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    # A process of its own: `serve` configures logging for the whole process.
    import socket
    import subprocess
    import sys

    path = tmp_path / "gw.yaml"
    path.write_text("auth: {mode: none}\nredis: {url: 'redis://127.0.0.1:6379/0', keyPrefix: 'test:cli:'}\n"
                    "logging: {level: error}\nclusters:\n  - {id: c1, server: 'https://127.0.0.1:1', token: t}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path), "--host",
                                 "127.0.0.1", "--port", str(port)], capture_output=True, text=True, timeout=60,
                                check=False)
    assert result.returncode == 1, result
    err = result.stderr
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot listen on 127.0.0.1:{port} (listen.host/listen.port, --host/--port): address already in use" in err


def test_translate_prints_the_cluster_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    body = tmp_path / "job.json"
    body.write_text(json.dumps({"name": "mnist", "runtime": "Python 2.7 + Tensorflow 1.2.1",
                                "bootfile": "/clever/a.py", "cpu": "1", "memory": "1Gi", "count": "2"}))
    assert main(["translate", "--config", str(EXAMPLE), "--cluster", "c1", "--partition", "clever", str(body)]) == 0
    tfjob = json.loads(capsys.readouterr().out)
    assert (tfjob["apiVersion"], tfjob["kind"]) == ("kubeflow.org/v1", "TFJob")
    assert tfjob["metadata"]["namespace"] == "clever-jobs"  # the cluster's namespaceMap
    assert tfjob["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    body.write_text(json.dumps({"name": "x"}))
    assert main(["translate", "--config", str(EXAMPLE), "--cluster", "c1", str(body)]) == 2
    assert "runtime: required" in capsys.readouterr().err
    assert main(["translate", "--config", str(EXAMPLE), "--cluster", "nope", str(body)]) == 2
    assert "--cluster: no cluster 'nope'" in capsys.readouterr().err


def test_replica_identity_defaults_to_the_pod_name() -> None:
    settings = load_settings(environ={}, base=MINIMAL)
    assert settings.replica_identity({"POD_NAME": "gw-5d9f-x2", "HOSTNAME": "other"}) == "gw-5d9f-x2"
    assert settings.replica_identity({"HOSTNAME": "gw-5d9f-x3"}) == "gw-5d9f-x3"
    assert settings.replica_identity({})  # the host name
    named = load_settings(environ={"CLEVER_GATEWAY__REPLICA_ID": "gw-a"}, base=MINIMAL)
    assert named.replica_identity({"POD_NAME": "ignored"}) == "gw-a"
    with pytest.raises(ConfigError, match="replicaId"):
        load_settings(environ={}, base={**MINIMAL, "replicaId": "two words"})
