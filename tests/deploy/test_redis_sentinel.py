"""overlays/redis-sentinel, run for real where it can be without a cluster: the bootstrap script writes
configurations that Redis and Sentinel accept, and the gateway's Redis client, built from the redis section
of the config the overlay renders (mode sentinel, the pods' sentinels, passwordFile), reaches the master
through the sentinels with the password and follows a failover.
Every server here listens on 127.0.0.1 only and is stopped by the test."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.config import RedisSettings, load_settings
from gateway.state import connect
from tests.deploy.conftest import KUBERNETES, documents, system_tool
from tests.deploy.test_manifests import config_text

OVERLAY = KUBERNETES / "overlays" / "redis-sentinel"
PASSWORD = "pw-for-tests-only"


def bootstrap(tmp_path: Path, pod: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    secrets, conf, data = tmp_path / pod / "secrets", tmp_path / pod / "conf", tmp_path / pod / "data"
    secrets.mkdir(parents=True)
    conf.mkdir()
    data.mkdir()
    (secrets / "password").write_text(password)
    env = {**os.environ, "REDIS_SECRETS_DIR": str(secrets), "REDIS_CONF_DIR": str(conf),
           "REDIS_DATA_DIR": str(data), "POD_NAME": pod,
           # peers that cannot resolve: no sentinel answers, as in a fresh set
           "REDIS_SERVICE": "redis-headless.invalid"}
    return subprocess.run(["sh", str(OVERLAY / "bootstrap.sh")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def conf_lines(tmp_path: Path, pod: str, name: str) -> list[str]:
    return (tmp_path / pod / "conf" / name).read_text().splitlines()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (redis.RedisError, OSError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_bootstrap_refuses_the_placeholder_password(tmp_path: Path) -> None:
    result = bootstrap(tmp_path, "redis-0", password="REPLACE-ME")
    assert result.returncode != 0 and "set the Redis password" in result.stderr
    assert not (tmp_path / "redis-0" / "conf" / "redis.conf").exists()


def test_bootstrap_makes_redis_0_master_of_a_fresh_set(tmp_path: Path) -> None:
    for pod in ("redis-0", "redis-1"):
        assert bootstrap(tmp_path, pod).returncode == 0
    master = conf_lines(tmp_path, "redis-0", "redis.conf")
    replica = conf_lines(tmp_path, "redis-1", "redis.conf")
    assert not [line for line in master if line.startswith("replicaof")]
    assert "replicaof redis-0.redis-headless.invalid 6379" in replica
    for lines in (master, replica):
        assert f"requirepass {PASSWORD}" in lines and f"masterauth {PASSWORD}" in lines
        assert 'save ""' in lines and "appendonly no" in lines
    sentinel = conf_lines(tmp_path, "redis-1", "sentinel.conf")
    assert sentinel.index("sentinel resolve-hostnames yes") < sentinel.index(
        "sentinel monitor mymaster redis-0.redis-headless.invalid 6379 2")
    assert f"sentinel auth-pass mymaster {PASSWORD}" in sentinel
    assert oct((tmp_path / "redis-1" / "conf" / "redis.conf").stat().st_mode & 0o777) == "0o600"


def start_redis(tmp_path: Path, pod: str, port: int, processes: list[subprocess.Popen[str]],
                *extra: str) -> redis.Redis:
    """redis-server with the bootstrap's file for `pod`, moved to a local port."""
    processes.append(subprocess.Popen(
        [system_tool("redis-server"), str(tmp_path / pod / "conf" / "redis.conf"), "--port", str(port),
         "--bind", "127.0.0.1", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=2, decode_responses=True)
    wait_for(client.ping, f"{pod} on port {port}")
    return client


def test_redis_accepts_the_bootstrap_configuration(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    for pod in ("redis-0", "redis-1"):
        assert bootstrap(tmp_path, pod).returncode == 0
    master_port = free_port()
    master = start_redis(tmp_path, "redis-0", master_port, processes)
    replica = start_redis(tmp_path, "redis-1", free_port(), processes, "--replicaof", "127.0.0.1", str(master_port))
    assert master.info("replication")["role"] == "master"
    wait_for(lambda: replica.info("replication")["master_link_status"] == "up", "replication")
    master.set("k", "v")
    wait_for(lambda: replica.get("k") == "v", "the write on the replica")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=master_port, socket_timeout=2).get("k")


def local_pod(tmp_path: Path, pod: str, redis_ports: list[int], sentinel_ports: list[int]) -> None:
    """The bootstrap's files for `pod`, moved to local ports: each pod's host name (as the headless Service
    resolves it in the cluster) becomes 127.0.0.1 with that pod's ports. Every line changed is one the
    bootstrap wrote, counted, so a change of the script cannot pass unnoticed."""
    index = int(pod.rsplit("-", 1)[1])

    def rewrite(name: str, rules: list[tuple[str, str | Callable[[re.Match[str]], str]]]) -> None:
        path = tmp_path / pod / "conf" / name
        text = path.read_text()
        for pattern, replacement in rules:
            text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
            assert count == 1, (name, pattern)
        path.write_text(text)

    host = r"redis-(\d)\.redis-headless\.invalid"
    redis_rules: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
        (r"^bind 0\.0\.0\.0$", "bind 127.0.0.1"), (r"^port 6379$", f"port {redis_ports[index]}"),
        (rf"^replica-announce-ip {host}$", "replica-announce-ip 127.0.0.1")]
    if index != 0:
        redis_rules.append((rf"^replicaof {host} 6379$", lambda m: f"replicaof 127.0.0.1 {redis_ports[int(m[1])]}"))
    rewrite("redis.conf", redis_rules)
    rewrite("sentinel.conf", [
        (r"^bind 0\.0\.0\.0$", "bind 127.0.0.1"), (r"^port 26379$", f"port {sentinel_ports[index]}"),
        (r"^dir /tmp$", f"dir {tmp_path / pod / 'conf'}"),
        (rf"^sentinel announce-ip {host}$", "sentinel announce-ip 127.0.0.1"),
        (rf"^sentinel monitor mymaster {host} 6379 2$",
         lambda m: f"sentinel monitor mymaster 127.0.0.1 {redis_ports[int(m[1])]} 2")])


def overlay_redis_settings(renders: dict[str, str], tmp_path: Path, sentinel_ports: list[int],
                           password: str = PASSWORD) -> RedisSettings:
    """The redis section of the gateway's config as the overlay renders it, with the sentinels' host names
    moved to the local ports and passwordFile to a local copy of the Secret's file."""
    (tmp_path / "gateway.yaml").write_text(config_text(documents(renders["redis-sentinel"])))
    rendered = load_settings(tmp_path / "gateway.yaml", environ={}).redis
    local = []
    for address in rendered.sentinels:
        match = re.fullmatch(r"redis-(\d)\.redis-headless:26379", address)
        assert match, address
        local.append(f"127.0.0.1:{sentinel_ports[int(match[1])]}")
    secret = tmp_path / f"password-{len(list(tmp_path.glob('password-*')))}"
    secret.write_text(password + "\n")  # as a Secret written by hand often ends
    data = rendered.model_dump(by_alias=True) | {"sentinels": local, "passwordFile": str(secret)}
    return RedisSettings.model_validate(data)


def start_pods(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> tuple[list[redis.Redis], list[int]]:
    """Three pods as bootstrap.sh configures them (a fresh set: redis-0 master), each with its Sentinel, on
    local ports, once every sentinel watches the master and its two replicas: (Redis clients, sentinel ports)."""
    pods = ["redis-0", "redis-1", "redis-2"]
    redis_ports = [free_port() for _ in pods]
    sentinel_ports = [free_port() for _ in pods]
    for pod in pods:
        assert bootstrap(tmp_path, pod).returncode == 0
        local_pod(tmp_path, pod, redis_ports, sentinel_ports)
    servers = []
    for pod in pods:
        processes.append(subprocess.Popen([system_tool("redis-server"), str(tmp_path / pod / "conf" / "redis.conf")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
        servers.append(redis.Redis(host="127.0.0.1", port=redis_ports[pods.index(pod)], password=PASSWORD,
                                   socket_timeout=2, decode_responses=True))
    for pod, server in zip(pods, servers, strict=True):
        wait_for(server.ping, pod)
    sentinels = []
    for pod, port in zip(pods, sentinel_ports, strict=True):
        conf = tmp_path / pod / "conf" / "sentinel.conf"
        processes.append(subprocess.Popen([system_tool("redis-server"), str(conf), "--sentinel"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
        sentinels.append(redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True))

    def healthy() -> bool:
        for sentinel in sentinels:
            state = sentinel.sentinel_master("mymaster")
            assert isinstance(state, dict)
            if int(state["num-slaves"]) < 2 or int(state["num-other-sentinels"]) < 2:
                return False
        return all(s.info("replication").get("master_link_status") == "up" for s in servers[1:])

    wait_for(healthy, "three sentinels watching a master with two replicas", seconds=60)
    return servers, sentinel_ports


async def test_the_overlays_gateway_config_reaches_the_master_through_sentinel(
        renders: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    """Three pods with their sentinels (start_pods); the gateway's client built from the overlay's rendered
    config (mode sentinel, its sentinels, its passwordFile) reaches the master, a wrong password reaches
    nothing, and when the master dies the same client follows the sentinels to the promoted replica."""
    servers, sentinel_ports = start_pods(tmp_path, processes)
    run_ids = [str(server.info("server")["run_id"]) for server in servers]
    gateway = connect(overlay_redis_settings(renders, tmp_path, sentinel_ports))
    try:
        assert str((await gateway.info("server"))["run_id"]) == run_ids[0]
        assert await gateway.set(b"cg:deploy-test", b"through sentinel")
        wait_for(lambda: servers[1].get("cg:deploy-test") == "through sentinel", "the write on a replica")

        wrong = connect(overlay_redis_settings(renders, tmp_path, sentinel_ports, password="wrong"))
        try:
            with pytest.raises(redis.AuthenticationError):
                await wrong.ping()
        finally:
            await wrong.aclose()

        # The master's pod dies: the sentinels promote a replica, and the gateway's client follows.
        processes[0].terminate()
        processes[0].wait(timeout=10)
        deadline = time.monotonic() + 60
        reached = None
        while time.monotonic() < deadline:
            try:
                info = await gateway.info("replication")
                if info["role"] == "master":
                    reached = str((await gateway.info("server"))["run_id"])
                    if reached in run_ids[1:]:
                        break
            except (redis.RedisError, OSError):
                pass
            await asyncio.sleep(0.5)
        assert reached in run_ids[1:], "the gateway did not reach the promoted replica"
        assert await gateway.get(b"cg:deploy-test") == b"through sentinel"
    finally:
        await gateway.aclose()
