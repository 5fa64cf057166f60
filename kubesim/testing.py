"""`KubeSim`: an in-process Kubernetes API server (plus simulated controllers) for tests and the demo.

Contract (common brief): `KubeSim(namespaces=("default",), token=..., tfjob_operator=..., volcano=...,
time_scale=0.01, default_scenario="succeed", tls=True, host="127.0.0.1", port=0, history_limit=1000,
watch_buffer=1000, gang_scheduler=None, jobset=None)` (`watch_buffer`: events a watcher may fall behind
before its stream is closed) (`gang_scheduler="volcano"`: training-operator gang-schedules TFJobs through Volcano
PodGroups, see kubesim.controllers) (`jobset`: run the JobSet controller, kubernetes-sigs/jobset v0.12.0;
None, the default, runs it whenever another operator runs, as a Trainer v2 cluster has JobSet installed,
so `tfjob_operator=None, volcano=False` still means no controllers at all; `jobset=True` alone gives a
JobSet cluster: JobSet + Job controllers and the kubelet);
`await start()` / `await stop()` or `async with KubeSim() as sim:`. After start: `url`, `ca_file`, `token`,
`store`, `controllers` (None when every operator is off or kubesim.controllers provides no `Controllers`),
`faults`, `policy`, `impersonations`, `write_kubeconfig(path)`.
Authentication hooks for client tests: `KubeSim(client_certificates=True)` also accepts client certificates
signed by its CA (`issue_client_certificate(user, groups)` makes one); `server.token_validator` accepts
more bearer tokens (e.g. short-lived ones); `server.on_request` observes every request (headers included).
The listener is a real TCP socket with a self-signed CA (HTTPS by default), so clients exercise their TLS
and bearer-token paths exactly as against a real cluster. `faults.down("refuse")` really stops listening and
drops open connections; `faults.up()` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from aiohttp import web

from kubesim.faults import Faults
from kubesim.policy import AccessPolicy
from kubesim.server import ApiServer
from kubesim.store import Store
from kubesim.tls import CertificateFiles, issue_client_certificate, make_certificates, server_ssl_context

log = logging.getLogger(__name__)


class KubeSim:
    """A running kubesim: API server + store + optional controllers."""

    def __init__(self, *, namespaces: Iterable[str] = ("default",), token: str = "kubesim-token",
                 tfjob_operator: str | None = "training-operator", volcano: bool = True, time_scale: float = 0.01,
                 default_scenario: str = "succeed", tls: bool = True, host: str = "127.0.0.1", port: int = 0,
                 history_limit: int = 1000, watch_buffer: int = 1000, bookmark_interval: float = 1.0,
                 gang_scheduler: str | None = None, jobset: bool | None = None,
                 client_certificates: bool = False) -> None:
        self.namespaces = list(namespaces)
        self.token = token
        self.tfjob_operator = tfjob_operator
        self.volcano = volcano
        self.gang_scheduler = gang_scheduler
        self.jobset = bool(tfjob_operator or volcano) if jobset is None else jobset
        self.client_certificates = client_certificates
        self._certificates: CertificateFiles | None = None
        self.time_scale = time_scale
        self.default_scenario = default_scenario
        self.tls = tls
        self.host = host
        self.port = port
        self.store = Store(history_limit=history_limit, watch_buffer=watch_buffer, namespaces=self.namespaces)
        self.policy = AccessPolicy()
        self.impersonations: list[dict[str, Any]] = []
        self.faults = Faults(self.store, on_down=self._stop_listening, on_up=self._listen_again)
        self.controllers: Any = None
        self.server = ApiServer(self.store, token=token, faults=self.faults, policy=self.policy,
                                impersonations=self.impersonations, bookmark_interval=bookmark_interval,
                                controllers_getter=lambda: self.controllers,
                                tfjob_dialect=tfjob_operator or "training-operator")
        self.url = ""
        self.ca_file = ""
        self._tmpdir: str | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ssl: ssl.SSLContext | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def bookmark_interval(self) -> float:
        """Seconds between BOOKMARK events on watches that allow them."""
        return self.server.bookmark_interval

    @bookmark_interval.setter
    def bookmark_interval(self, seconds: float) -> None:
        self.server.bookmark_interval = seconds

    async def start(self) -> None:
        """Generate certificates, start listening, start the controllers."""
        self._tmpdir = tempfile.mkdtemp(prefix="kubesim-")
        if self.tls:
            files = make_certificates(self._tmpdir, hosts=_hosts_for(self.host))
            self.ca_file = str(files.ca_file)
            self._certificates = files
            self._ssl = server_ssl_context(files, client_certificates=self.client_certificates)
        self._runner = web.AppRunner(self.server.app(), handle_signals=False, access_log=None,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.create_server((self.host, self.port), backlog=128)
        self.port = sock.getsockname()[1]
        await self._serve(sock)
        scheme = "https" if self.tls else "http"
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{scheme}://{url_host}:{self.port}"
        await self._start_controllers()

    async def stop(self) -> None:
        """Stop controllers, close watches and connections, remove the certificates."""
        if self.controllers is not None:
            with contextlib.suppress(Exception):
                await self.controllers.stop()
        self.server.cut_watches()
        for task in list(self._pending):
            task.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def issue_client_certificate(self, user: str, groups: Iterable[str] = ()) -> tuple[bytes, bytes]:
        """A client certificate (PEM certificate, PEM key) signed by this kubesim's CA."""
        if self._certificates is None:
            raise RuntimeError("start kubesim with TLS first")
        return issue_client_certificate(self._certificates, user, groups)

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig (server URL, CA file, bearer token) usable by kubectl and client libraries."""
        path = Path(path)
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_file:
            cluster["certificate-authority"] = self.ca_file
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "kubesim", "cluster": cluster}],
            "users": [{"name": "kubesim", "user": {"token": self.token}}],
            "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim",
                                                         "namespace": self.namespaces[0] if self.namespaces
                                                         else "default"}}],
            "current-context": "kubesim", "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # ----- internals ---------------------------------------------------------------------------------------

    async def _start_controllers(self) -> None:
        if not self.tfjob_operator and not self.volcano and not self.jobset:
            return
        try:
            module = importlib.import_module("kubesim.controllers")
        except ImportError as exc:
            log.warning("kubesim.controllers not importable (%s); running without controllers", exc)
            return
        factory = getattr(module, "Controllers", None)
        if factory is None:
            log.warning("kubesim.controllers provides no Controllers; running without controllers")
            return
        self.controllers = factory(self.store, tfjob_operator=self.tfjob_operator, volcano=self.volcano,
                                   time_scale=self.time_scale, default_scenario=self.default_scenario,
                                   gang_scheduler=self.gang_scheduler, jobset=self.jobset)
        await self.controllers.start()

    async def _serve(self, sock: socket.socket) -> None:
        assert self._runner is not None and self._runner.server is not None
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._server = await loop.create_server(self._runner.server, sock=sock, ssl=self._ssl)

    def _stop_listening(self) -> None:
        """Synchronously stop accepting and drop every open connection (a real outage)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.server.cut_watches()
        if self._runner is not None and self._runner.server is not None:
            for handler in list(self._runner.server.connections):
                transport = handler.transport
                if transport is not None:
                    transport.abort()

    def _listen_again(self) -> None:
        """Bind the same port now (connections queue in the backlog) and start serving it."""
        sock = socket.create_server((self.host, self.port), backlog=128)
        task = asyncio.get_running_loop().create_task(self._serve(sock))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _hosts_for(host: str) -> list[str]:
    hosts = ["127.0.0.1", "localhost", "::1"]
    if host not in hosts and host not in ("0.0.0.0", "::"):
        hosts.append(host)
    return hosts


__all__ = ["KubeSim"]
