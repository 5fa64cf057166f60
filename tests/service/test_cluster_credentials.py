"""Cluster credentials as client-go handles them, each against KubeSim over real TLS:
exec plugins (short-lived tokens, re-run before expiry and once on a 401, never interactive, failures
named), client certificates and CAs from kubeconfig data without writing a file (the gateway started with
a read-only temp dir), a proxy (with credentials) that all cluster traffic goes through, in-cluster
service accounts (rotating token files), and what a kubeconfig may not ask for."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import pytest
import yaml
from aiohttp import web
from structlog.testing import capture_logs

from gateway.config import ClusterSettings, ConfigError, RetrySettings
from gateway.kube import PODS, ClusterClient, ClusterCredentialsError
from gateway.kube.credentials import ExecPlugin, load_client_certificate, load_connection
from gateway.metrics import Metrics
from gateway.web.errors import legacy_error
from tests.conftest import PARTITION, RUNTIMES, Gateway, wait_until
from tests.service.seed_bodies import minimal
from translators.naming import object_name

USER = {"X-User": "alice"}

PLUGIN = r'''
import json, os, sys, time
from datetime import datetime, timezone
ledger, lifetime = sys.argv[1], float(sys.argv[2])
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
record = {"apiVersion": info["apiVersion"], "interactive": info["spec"]["interactive"],
          "server": (info["spec"].get("cluster") or {}).get("server"), "stdin": sys.stdin.read(),
          "env": os.environ.get("PLUGIN_SETTING")}
with open(ledger, "a") as handle:
    handle.write(json.dumps(record) + "\n")
with open(ledger) as handle:
    run = sum(1 for _ in handle)
if os.environ.get("PLUGIN_FAIL"):
    print("this-would-be-a-token")
    print("could not reach the identity service", file=sys.stderr)
    sys.exit(3)
expiry = time.time() + lifetime
stamp = datetime.fromtimestamp(expiry, timezone.utc).isoformat().replace("+00:00", "Z")
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                  "status": {"token": f"exec.{run}.{int(expiry * 1000)}", "expirationTimestamp": stamp}}))
'''


class ShortLivedTokens:
    """KubeSim's token validator for the plugin's tokens: valid until their expiry, unless revoked."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.accepted: list[str] = []
        self.refused: list[str] = []

    def __call__(self, token: str) -> bool:
        parts = token.split(".")
        ok = (len(parts) == 3 and parts[0] == "exec" and parts[2].isdigit()
              and time.time() * 1000 < int(parts[2]) and token not in self.revoked)
        (self.accepted if ok else self.refused).append(token)
        return ok


def _ca_data(sim: Any) -> str:
    return base64.b64encode(Path(sim.ca_file).read_bytes()).decode()


def _kubeconfig(path: Path, *, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gw",
        "clusters": [{"name": "sim", "cluster": cluster}],
        "users": [{"name": "gateway", "user": user}],
        "contexts": [{"name": "gw", "context": {"cluster": "sim", "user": "gateway"}}],
    }))
    return path


def _exec_user(tmp_path: Path, *, lifetime: float, api_version: str = "client.authentication.k8s.io/v1",
               fail: bool = False) -> tuple[dict[str, Any], Path]:
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    ledger = tmp_path / "ledger.jsonl"
    env = [{"name": "PLUGIN_SETTING", "value": "from-kubeconfig"}]
    if fail:
        env.append({"name": "PLUGIN_FAIL", "value": "1"})
    return {"exec": {"apiVersion": api_version, "command": sys.executable, "args": [str(script), str(ledger),
                                                                                    str(lifetime)],
                     "env": env, "interactiveMode": "Never", "provideClusterInfo": True}}, ledger


def _runs(ledger: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []


@contextlib.asynccontextmanager
async def _client(settings: dict[str, Any], *, metrics: Metrics | None = None) -> AsyncIterator[ClusterClient]:
    client = ClusterClient(ClusterSettings.model_validate({"id": "c1", "runtimes": RUNTIMES, **settings}),
                           retry=RetrySettings(attempts=2, initial_delay_seconds=0.01, max_delay_seconds=0.02),
                           metrics=metrics)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


# --------------------------------------------------------------------------- exec plugins


async def test_exec_plugin_tokens_are_renewed_before_they_expire(make_gateway: Any, kubesim: Any,
                                                                 tmp_path: Path) -> None:
    tokens = ShortLivedTokens()
    kubesim.server.token_validator = tokens
    user, ledger = _exec_user(tmp_path, lifetime=2.0)
    kubeconfig = _kubeconfig(tmp_path / "config", user=user,
                             cluster={"server": kubesim.url, "certificate-authority-data": _ca_data(kubesim)})
    # Watch off: every read goes to the cluster (statusStalenessSeconds 0), so each GET is a fresh cluster call.
    gw: Gateway = await make_gateway(clusters=[{"id": "c1", "kubeconfig": str(kubeconfig), "runtimes": RUNTIMES}],
                                     sync={"watch": False})
    with capture_logs() as logs:
        created = await gw.client.post(gw.jobs_url(), json=minimal("expiring"), headers=USER)
        assert created.status == 200, await created.text()
        job_url = f"{gw.jobs_url()}/{(await created.json())['metadata']['id']}"
        deadline = time.monotonic() + 5.0  # two and a half token lifetimes
        answers = []
        while time.monotonic() < deadline:
            answers.append((await gw.client.get(job_url, headers=USER)).status)
            await asyncio.sleep(0.05)
    assert answers and set(answers) == {200}
    runs = _runs(ledger)
    assert len(runs) >= 3, runs  # re-run as each token neared its expiry
    assert all(r == {"apiVersion": "client.authentication.k8s.io/v1", "interactive": False, "server": kubesim.url,
                     "stdin": "", "env": "from-kubeconfig"} for r in runs), runs
    assert len(set(tokens.accepted)) >= 3
    # Never logged: no token, in any log line.
    assert not any(t in repr(logs) for t in set(tokens.accepted))


async def test_exec_plugin_runs_again_once_on_a_401(kubesim: Any, tmp_path: Path) -> None:
    tokens = ShortLivedTokens()
    kubesim.server.token_validator = tokens
    user, ledger = _exec_user(tmp_path, lifetime=3600, api_version="client.authentication.k8s.io/v1beta1")
    kubeconfig = _kubeconfig(tmp_path / "config", user=user,
                             cluster={"server": kubesim.url, "certificate-authority-data": _ca_data(kubesim)})
    async with _client({"kubeconfig": str(kubeconfig)}) as client:
        assert _runs(ledger) == []  # nothing runs at start: the first call does
        await client.list(client.ref(PODS, PARTITION))
        assert len(_runs(ledger)) == 1
        await client.list(client.ref(PODS, PARTITION))
        assert len(_runs(ledger)) == 1  # cached: an hour left
        tokens.revoked.add(tokens.accepted[-1])  # the cluster stops accepting it before it expires
        refused_before = len(tokens.refused)
        await client.list(client.ref(PODS, PARTITION))
        assert len(_runs(ledger)) == 2
        assert len(tokens.refused) == refused_before + 1  # one 401, then the fresh token went through
        # A plugin that keeps handing out refused tokens gets one retry per call, not a loop.
        tokens.revoked.update(f"exec.{n}." for n in range(10))
        kubesim.server.token_validator = lambda token: False
        with pytest.raises(Exception) as raised:
            await client.list(client.ref(PODS, PARTITION))
        assert len(_runs(ledger)) == 3
        answer = legacy_error(raised.value)  # type: ignore[arg-type]
        assert (answer.status, answer.reason) == (502, "BadGateway")
        assert "refused the gateway's credentials" in answer.message


async def test_exec_plugin_failure_names_the_cluster_and_command_never_the_output(kubesim: Any,
                                                                                  tmp_path: Path) -> None:
    user, _ledger = _exec_user(tmp_path, lifetime=3600, fail=True)
    kubeconfig = _kubeconfig(tmp_path / "config", user=user,
                             cluster={"server": kubesim.url, "certificate-authority-data": _ca_data(kubesim)})
    metrics = Metrics()
    async with _client({"kubeconfig": str(kubeconfig)}, metrics=metrics) as client:
        with capture_logs() as logs, pytest.raises(ClusterCredentialsError) as raised:
            await client.list(client.ref(PODS, PARTITION))
    error = raised.value
    assert error.message == (f"cluster c1: the exec credential plugin {sys.executable!r} exited with code 3")
    assert error.auth_failure and not error.transient
    assert "this-would-be-a-token" not in repr(logs) + error.message
    assert any(e.get("stderr") == "could not reach the identity service" for e in logs)
    assert (legacy_error(error).status, legacy_error(error).reason) == (502, "BadGateway")
    assert 'clever_gateway_cluster_auth_failures_total{cluster="c1",kind="credentials"} 1.0' in \
        metrics.render()[0].decode()

    missing = _kubeconfig(tmp_path / "missing", cluster={"server": kubesim.url}, user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "no-such-plugin-anywhere",
        "interactiveMode": "Never", "installHint": "install it with: pip install no-such-plugin"}})
    async with _client({"kubeconfig": str(missing)}) as client:
        with pytest.raises(ClusterCredentialsError) as raised:
            await client.get(client.ref(PODS, PARTITION, "x"))
    assert raised.value.message == ("cluster c1: the exec credential plugin 'no-such-plugin-anywhere' was not "
                                    "found (install it with: pip install no-such-plugin)")


async def test_exec_plugin_cache_follows_the_expiry_clock() -> None:
    """Unit: the token is reused until a tenth of its lifetime before expiry (at most a minute)."""
    from gateway.kube.credentials import ExecConfig

    now = [1000.0]
    plugin = ExecPlugin(ExecConfig(api_version="client.authentication.k8s.io/v1", command="unused"), cluster="c1",
                        clock=lambda: now[0])
    issued: list[float] = []

    async def fake_run() -> None:
        issued.append(now[0])
        plugin._token = f"t{len(issued)}"
        plugin._refresh_at = now[0] + 900 - min(60.0, 900 * 0.1)

    plugin._run = fake_run  # type: ignore[method-assign]
    assert await plugin.token() == "t1"
    now[0] += 839
    assert await plugin.token() == "t1"
    now[0] += 2
    assert await plugin.token() == "t2"
    assert await plugin.refresh("stale") is True and await plugin.token() == "t2"  # someone else's 401
    assert await plugin.refresh("t2") is True and await plugin.token() == "t3"


# --------------------------------------------------------------------------- client certificates from data


async def test_client_certificate_data_without_any_file(make_gateway: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from kubesim.store import TFJOBS
    from kubesim.testing import KubeSim

    async with KubeSim(namespaces=("default", PARTITION), time_scale=0.01, client_certificates=True) as sim:
        cert, key = sim.issue_client_certificate("clever-gateway", ["system:masters"])
        kubeconfig = _kubeconfig(tmp_path / "config", cluster={
            "server": sim.url, "certificate-authority-data": _ca_data(sim)}, user={
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode()})
        readonly = tmp_path / "readonly-tmp"
        readonly.mkdir()
        readonly.chmod(0o555)
        monkeypatch.setattr(tempfile, "tempdir", str(readonly))

        def no_temp_files(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a temporary file was asked for")

        for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory", "TemporaryFile"):
            monkeypatch.setattr(tempfile, name, no_temp_files)
        with capture_logs() as logs:
            gw: Gateway = await make_gateway(clusters=[{"id": "c1", "kubeconfig": str(kubeconfig),
                                                        "runtimes": RUNTIMES}])
            created = await gw.client.post(gw.jobs_url(), json=minimal("certified"), headers=USER)
            assert created.status == 200, await created.text()
            job_id = (await created.json())["metadata"]["id"]
            assert (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).status == 200
        assert sim.store.try_get(TFJOBS, PARTITION, object_name("certified", job_id)) is not None
        assert list(readonly.iterdir()) == []
        assert key.decode().splitlines()[1] not in repr(logs)
        await gw.client.close()


def _cert_settings(tmp_path: Path, sim_url: str, ca: str, cert: bytes, key: bytes, **extra: Any) -> ClusterSettings:
    kubeconfig = _kubeconfig(tmp_path / "config", cluster={"server": sim_url, "certificate-authority-data": ca},
                             user={"client-certificate-data": base64.b64encode(cert).decode(),
                                   "client-key-data": base64.b64encode(key).decode()})
    return ClusterSettings.model_validate({"id": "c1", "kubeconfig": str(kubeconfig), **extra})


async def test_client_certificate_falls_back_to_the_private_dir_only_without_memfd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubesim.testing import KubeSim

    async with KubeSim(namespaces=("default",), tfjob_operator=None, volcano=False, client_certificates=True) as sim:
        cert, key = sim.issue_client_certificate("clever-gateway", ["system:masters"])
        ca = _ca_data(sim)
        import ssl

        context = ssl.create_default_context()
        assert load_client_certificate(context, cert, key, private_dir=None, cluster="c1") == "memfd"
        monkeypatch.delattr(os, "memfd_create")
        with pytest.raises(ConfigError, match=r"clusters\[c1\]: .*set credentialsDir"):
            load_connection(_cert_settings(tmp_path, sim.url, ca, cert, key))
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        settings = _cert_settings(tmp_path, sim.url, ca, cert, key, credentialsDir=str(private))
        async with _client(settings.model_dump(by_alias=True, exclude={"id", "runtimes"}, exclude_none=True)) as c:
            assert (await c.list(c.ref(PODS, "default"))).items == []
        assert list(private.iterdir()) == []  # written for an instant, removed at once


# --------------------------------------------------------------------------- proxy


class ConnectProxy:
    """A tiny HTTP CONNECT proxy on loopback: requires Basic credentials, resolves `*.invalid` to loopback,
    and records every tunnel (its target and the local port of its upstream connection)."""

    def __init__(self, *, user: str, password: str) -> None:
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.targets: list[str] = []
        self.upstream_ports: set[int] = set()
        self.refused = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if method != "CONNECT" or headers.get("proxy-authorization") != self.expected:
            self.refused += 1
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        host, _, port = target.rpartition(":")
        self.targets.append(target)
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1" if host.endswith(".invalid") else host, int(port))
        self.upstream_ports.add(up_writer.get_extra_info("sockname")[1])
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        for task in (asyncio.create_task(self._pipe(reader, up_writer)),
                     asyncio.create_task(self._pipe(up_reader, writer))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()


async def test_all_cluster_traffic_goes_through_the_configured_proxy(make_gateway: Any, kubesim: Any,
                                                                     tmp_path: Path) -> None:
    from kubesim.store import TFJOBS

    port = int(kubesim.url.rsplit(":", 1)[1])
    async with ConnectProxy(user="gw", password="s3cret") as proxy:
        peers: list[int] = []

        def observe(request: web.Request) -> None:
            peers.append(request.transport.get_extra_info("peername")[1] if request.transport else -1)

        kubesim.server.on_request = observe
        # The server's name resolves nowhere but in the proxy: a request that bypassed it could not connect.
        # tls-server-name: the certificate is checked for a name the server certificate carries.
        kubeconfig = _kubeconfig(tmp_path / "config", cluster={
            "server": f"https://kubesim.invalid:{port}", "certificate-authority-data": _ca_data(kubesim),
            "tls-server-name": "localhost", "proxy-url": f"http://gw:s3cret@127.0.0.1:{proxy.port}"},
            user={"token": kubesim.token})
        with capture_logs() as logs:
            gw: Gateway = await make_gateway(clusters=[{"id": "c1", "kubeconfig": str(kubeconfig),
                                                        "runtimes": RUNTIMES}])
            created = await gw.client.post(gw.jobs_url(), json=minimal("proxied"), headers=USER)
            assert created.status == 200, await created.text()
            job_id = (await created.json())["metadata"]["id"]

            async def running() -> bool:
                job = await (await gw.client.get(f"{gw.jobs_url()}/{job_id}", headers=USER)).json()
                return job["status"]["phase"] in ("running", "succeeded")

            await wait_until(running)  # the watch (through the proxy too) saw the job move
        assert kubesim.store.try_get(TFJOBS, PARTITION, object_name("proxied", job_id)) is not None
        assert proxy.targets and set(proxy.targets) == {f"kubesim.invalid:{port}"}
        assert proxy.refused == 0
        assert peers and set(peers) <= proxy.upstream_ports  # every request KubeSim saw came through the proxy
        assert "s3cret" not in repr(logs)


async def test_a_proxy_that_refuses_is_an_unreachable_cluster(kubesim: Any, tmp_path: Path) -> None:
    async with ConnectProxy(user="gw", password="right") as proxy:
        kubeconfig = _kubeconfig(tmp_path / "config", cluster={
            "server": kubesim.url, "certificate-authority-data": _ca_data(kubesim),
            "proxy-url": f"http://gw:wrong@127.0.0.1:{proxy.port}"}, user={"token": kubesim.token})
        async with _client({"kubeconfig": str(kubeconfig)}) as client:
            with pytest.raises(Exception) as raised:
                await client.get(client.ref(PODS, PARTITION, "x"))
        assert proxy.refused == 2  # retried: a proxy hiccup is transient
        answer = legacy_error(raised.value)  # type: ignore[arg-type]
        assert (answer.status, answer.reason) == (503, "ServiceUnavailable")
        assert "wrong" not in answer.message


# --------------------------------------------------------------------------- in-cluster


async def test_in_cluster_service_account_with_a_rotating_token(kubesim: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "ca.crt").write_bytes(Path(kubesim.ca_file).read_bytes())
    token_file = account / "token"
    token_file.write_text(kubesim.token)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", kubesim.url.rsplit(":", 1)[1])
    sent: list[str] = []
    kubesim.server.on_request = lambda request: sent.append(request.headers.get("Authorization", ""))
    async with _client({"inCluster": True, "serviceAccountDir": str(account)}) as client:
        assert client.connection.server == kubesim.url
        await client.list(client.ref(PODS, PARTITION))
        # The kubelet rotates the projected token: the next call reads the new one.
        kubesim.server.token = "rotated-1"
        _replace(token_file, "rotated-1")
        await client.list(client.ref(PODS, PARTITION))
        assert sent[-1] == "Bearer rotated-1"
        # A rotation the file's stamp does not show (same size, same mtime): the 401 makes it read again.
        stat = token_file.stat()
        kubesim.server.token = "rotated-2"
        token_file.write_text("rotated-2")
        os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        await client.list(client.ref(PODS, PARTITION))
        assert sent[-2:] == ["Bearer rotated-1", "Bearer rotated-2"]


def _replace(path: Path, text: str) -> None:
    """Atomically, as the kubelet does (a new file renamed over the old one)."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    fresh.replace(path)


def test_in_cluster_outside_a_pod_says_so(tmp_path: Path) -> None:
    settings = ClusterSettings.model_validate({"id": "c1", "inCluster": True, "serviceAccountDir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"clusters\[c1\]: inCluster needs KUBERNETES_SERVICE_HOST"):
        load_connection(settings, environ={})
    with pytest.raises(ConfigError, match=r"clusters\[c1\]: cannot read the token file .*/token"):
        load_connection(settings, environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"})


# --------------------------------------------------------------------------- what a kubeconfig may not ask for


@pytest.mark.parametrize(("user", "message"), [
    ({"auth-provider": {"name": "gcp"}}, "auth-provider plugins are not supported; use an exec plugin"),
    ({"username": "a", "password": "b"}, "basic authentication is not supported"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x", "interactiveMode": "Always"}},
     "exec interactiveMode Always needs a terminal"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}},
     "exec interactiveMode must be set for client.authentication.k8s.io/v1"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}},
     "exec apiVersion must be one of"),
    ({"client-certificate-data": base64.b64encode(b"x").decode()}, "a client certificate without its key"),
    ({"client-key-data": "not base64!"}, "client-key-data is not base64"),
])
def test_kubeconfig_refusals_are_clear(tmp_path: Path, user: dict[str, Any], message: str) -> None:
    kubeconfig = _kubeconfig(tmp_path / "config", cluster={"server": "https://127.0.0.1:6443"}, user=user)
    settings = ClusterSettings.model_validate({"id": "c1", "kubeconfig": str(kubeconfig)})
    with pytest.raises(ConfigError) as raised:
        load_connection(settings)
    assert str(raised.value).startswith(f"clusters[c1]: kubeconfig {kubeconfig}")
    assert message in str(raised.value)


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "config", cluster={"server": "https://127.0.0.1:6443"},
                             user={"client-certificate": "gw.crt", "client-key": "gw.key"})
    with pytest.raises(ConfigError) as raised:
        load_connection(ClusterSettings.model_validate({"id": "c1", "kubeconfig": str(kubeconfig)}))
    assert str(raised.value) == (f"clusters[c1]: cannot set up the connection: No such file or directory: "
                                 f"{tmp_path / 'gw.crt'}")


def test_kubeconfig_relative_paths_and_socks_proxies(tmp_path: Path, kubesim: Any) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes(Path(kubesim.ca_file).read_bytes())
    (tmp_path / "token").write_text("from-a-file")
    kubeconfig = _kubeconfig(tmp_path / "config", cluster={"server": kubesim.url,
                                                          "certificate-authority": "certs/ca.crt"},
                             user={"tokenFile": "token"})
    connection = load_connection(ClusterSettings.model_validate({"id": "c1", "kubeconfig": str(kubeconfig)}))
    assert connection.credentials.describe() == f"token file {tmp_path / 'token'}"
    assert "from-a-file" not in repr(connection)
    socks = _kubeconfig(tmp_path / "socks", cluster={"server": kubesim.url, "proxy-url": "socks5://u:p@h:1080"},
                        user={})
    with pytest.raises(ConfigError, match=r"proxy URL must be http:// or https://") as raised:
        load_connection(ClusterSettings.model_validate({"id": "c1", "kubeconfig": str(socks)}))
    assert "u:p" not in str(raised.value)


