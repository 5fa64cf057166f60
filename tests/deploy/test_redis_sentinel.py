"""overlays/redis-sentinel, run for real where it can be without a cluster: the bootstrap script writes
configurations that Redis accepts, and HAProxy with the overlay's haproxy.cfg sends clients to the
Redis that is master, with the password from the environment, and follows a failover.
Every server here listens on 127.0.0.1 only and is stopped by the test."""

from __future__ import annotations

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

from tests.deploy.conftest import KUBERNETES, system_tool

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


def local_haproxy_cfg(front: int, health: int, servers: list[int]) -> str:
    """The overlay's haproxy.cfg with its listeners and servers moved to local ports."""
    text = (OVERLAY / "haproxy.cfg").read_text()
    text, binds = re.subn(r"bind :6379\n", f"bind 127.0.0.1:{front}\n", text)
    text, health_binds = re.subn(r"bind :8404\n", f"bind 127.0.0.1:{health}\n", text)
    text, replaced = re.subn(r"(server redis-(\d)) \S+:6379\n",
                             lambda m: f"{m[1]} 127.0.0.1:{servers[int(m[2])]}\n", text)
    assert (binds, health_binds, replaced) == (1, 1, 3)
    return text


def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text((OVERLAY / "haproxy.cfg").read_text())
    result = subprocess.run([system_tool("haproxy"), "-c", "-f", str(cfg)], env={**os.environ, "REDIS_PASSWORD": "x"},
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_leads_to_the_master_and_follows_a_failover(tmp_path: Path,
                                                            processes: list[subprocess.Popen[str]]) -> None:
    for pod in ("redis-0", "redis-1"):
        assert bootstrap(tmp_path, pod).returncode == 0
    ports = [free_port(), free_port(), free_port()]  # the third server never answers (a lost pod)
    first = start_redis(tmp_path, "redis-0", ports[0], processes)
    second = start_redis(tmp_path, "redis-1", ports[1], processes, "--replicaof", "127.0.0.1", str(ports[0]))
    front, health = free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(local_haproxy_cfg(front, health, ports))
    processes.append(subprocess.Popen([system_tool("haproxy"), "-db", "-f", str(cfg)],
                                      env={**os.environ, "REDIS_PASSWORD": PASSWORD},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))

    def behind_haproxy(port: int = front) -> str:
        """The run_id of the Redis a client of HAProxy on `port` reaches."""
        client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=2)
        try:
            return str(client.info("server")["run_id"])
        finally:
            client.close()

    first_id, second_id = first.info("server")["run_id"], second.info("server")["run_id"]
    assert wait_for(lambda: behind_haproxy() == first_id, "HAProxy to reach the master")
    # What Sentinel does on failover: promote the replica, demote the old master.
    second.replicaof("NO", "ONE")
    first.replicaof("127.0.0.1", ports[1])
    assert wait_for(lambda: behind_haproxy() == second_id, "HAProxy to follow the new master")
    # With a wrong password every check fails: HAProxy sends no one anywhere.
    wrong_front = free_port()
    wrong = tmp_path / "haproxy-wrong-password.cfg"
    wrong.write_text(local_haproxy_cfg(wrong_front, free_port(), ports))
    processes.append(subprocess.Popen([system_tool("haproxy"), "-db", "-f", str(wrong)],
                                      env={**os.environ, "REDIS_PASSWORD": "wrong"},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True))
    time.sleep(3)  # several check intervals
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        behind_haproxy(wrong_front)
