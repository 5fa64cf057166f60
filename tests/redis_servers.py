"""Real Redis topologies for tests, started from the installed `redis-server` on free loopback ports.

- `RedisServer`: one redis-server without persistence (kill, restart on the same port, flush).
- `SentinelSet`: one master, one replica, three sentinels (quorum 2) watching it as `mymaster`.
- `ClusterSet`: a Redis Cluster of three masters, each with one replica (`redis-cli --cluster create`).

Everything here is synchronous (subprocesses and redis-py's blocking client), so session-scoped fixtures
can own the servers while each test runs in its own event loop. Failover timings are short (a node is
judged down after about a second) so that a failover test takes seconds.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
CLUSTER_NODE_TIMEOUT_MS = 1500


def redis_binary() -> str:
    """The redis-server binary (`./run test` installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: ./run test installs it (apt-get install redis-server)")
    return binary


def free_port() -> int:
    """A TCP port nobody listens on right now (and whose +10000 cluster-bus port is free too)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until truthy; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (redis.RedisError, OSError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise RuntimeError(f"{what} not reached within {timeout}s (last: {last!r})")


class RedisServer:
    """One redis-server process on a fixed loopback port (see module docstring)."""

    def __init__(self, workdir: Path, *, args: tuple[str, ...] = (), port: int | None = None,
                 config_text: str | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.config_text = config_text
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A blocking client of this server."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kwargs)

    def start(self, *, wait: bool = True) -> None:
        command = [redis_binary()]
        if self.config_text is not None:
            config = self.workdir / "redis.conf"
            config.write_text(self.config_text)
            command.append(str(config))
        command += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log"), *self.args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        with self.client() as client:
            wait_for(client.ping, timeout=20, what=f"redis-server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


class SentinelSet:
    """A master, a replica and three sentinels (see module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master = RedisServer(workdir / "master")
        self.replica = RedisServer(workdir / "replica", args=("--replicaof", "127.0.0.1", str(self.master.port)))
        self.sentinels = [RedisServer(workdir / f"sentinel-{i}", args=("--sentinel",)) for i in range(3)]
        for sentinel in self.sentinels:
            sentinel.config_text = (
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 4000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n")

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, self.replica, *self.sentinels]

    @property
    def sentinel_addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def settings(self) -> dict[str, Any]:
        """The gateway's `redis` settings for this set."""
        return {"url": "redis:///0", "mode": "sentinel", "sentinels": self.sentinel_addresses,
                "sentinelService": SERVICE}

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start(wait=False)
        for sentinel in self.sentinels:
            sentinel.wait_ready()
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Every sentinel sees the master, one replica and the two other sentinels; the replica is in sync."""
        def ready() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client(decode_responses=True) as client:
                    state = client.sentinel_master(SERVICE)
                    if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                        return False
            host, port = self.master_address()
            with redis.Redis(host=host, port=port, decode_responses=True) as master:
                info = master.info("replication")
                return int(info.get("connected_slaves", 0)) >= 1 and "online" in str(info.get("slave0", ""))

        wait_for(ready, timeout=60, what="sentinel set healthy", interval=0.2)

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            try:
                with sentinel.client(decode_responses=True) as client:
                    host, port = client.sentinel_get_master_addr_by_name(SERVICE)
                    return str(host), int(port)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answers")

    def server_at(self, port: int) -> RedisServer:
        return next(s for s in (self.master, self.replica) if s.port == port)

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; returns its server (restart it to get a replica back)."""
        victim = self.server_at(self.master_address()[1])
        victim.kill()
        return victim

    def wait_failover(self, old_port: int, *, timeout: float = 60) -> tuple[str, int]:
        """Until the sentinels name another master (and it answers as one)."""
        def promoted() -> tuple[str, int] | None:
            host, port = self.master_address()
            if port == old_port:
                return None
            with redis.Redis(host=host, port=port, decode_responses=True) as master:
                return (host, port) if master.info("replication")["role"] == "master" else None

        return wait_for(promoted, timeout=timeout, what="sentinel failover", interval=0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.kill()


class ClusterSet:
    """Three masters with one replica each (see module docstring)."""

    def __init__(self, workdir: Path, *, masters: int = 3) -> None:
        self.workdir = workdir
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS))
        self.nodes = [RedisServer(workdir / f"node-{i}", args=args) for i in range(masters * 2)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def settings(self) -> dict[str, Any]:
        """The gateway's `redis` settings for this cluster."""
        return {"url": self.url, "mode": "cluster"}

    def start(self) -> None:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()
        subprocess.run(["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        self.wait_healthy()

    def running(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process is not None]

    def wait_healthy(self) -> None:
        """Every running node says cluster_state:ok and every master has a replica in sync."""
        def ready() -> bool:
            for node in self.running():
                with node.client(decode_responses=True) as client:
                    if "cluster_state:ok" not in str(client.execute_command("CLUSTER", "INFO")):
                        return False
                    info = client.info("replication")
                    if info["role"] == "master" and int(info.get("connected_slaves", 0)) < 1:
                        return False
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
            return True

        wait_for(ready, timeout=60, what="cluster healthy", interval=0.2)

    def master_of(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now."""
        with self.running()[0].client(decode_responses=True) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no node serves {key!r}")

    def wait_failover(self, key: str, old: RedisServer, *, timeout: float = 60) -> RedisServer:
        """Until another node serves `key` (its replica was promoted)."""
        def promoted() -> RedisServer | None:
            node = self.master_of(key)
            return node if node is not old else None

        return wait_for(promoted, timeout=timeout, what="cluster failover", interval=0.1)

    def flush_all(self) -> None:
        """FLUSHALL on every master."""
        for node in self.running():
            with node.client(decode_responses=True) as client:
                if client.info("replication")["role"] == "master":
                    client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
