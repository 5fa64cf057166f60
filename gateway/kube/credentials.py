"""How the gateway reaches and authenticates to one cluster, the way client-go does it.

Contract:
- `load_connection(settings, *, environ=None) -> Connection` (at start; raises `ConfigError` naming the
  cluster and the key): the API server URL, a TLS context, the TLS server name, an optional proxy and a
  `TokenSource`, from exactly one of
  - `server` + `token`/`tokenFile` + `caFile` (+ `proxyUrl`);
  - `kubeconfig` (+ `context`), parsed here: `certificate-authority(-data)`, `insecure-skip-tls-verify`,
    `tls-server-name`, `proxy-url` of the cluster; `token`, `tokenFile`, `client-certificate(-data)`,
    `client-key(-data)` and `exec` of the user. Relative paths are relative to the kubeconfig's folder.
    `auth-provider`, basic auth and `as` impersonation are refused with a clear message;
  - `inCluster`: `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, the service account's `token`
    (re-read: projected tokens rotate) and `ca.crt` from `serviceAccountDir`.
- Nothing is written to disk: CA data goes to `SSLContext.load_verify_locations(cadata=...)`; a client
  certificate and key given as data are handed to `load_cert_chain` through an anonymous in-memory file
  (`os.memfd_create`, read back as `/proc/self/fd/N`); only where the kernel offers no memfd are they
  written, with mode 0600, into the cluster's `credentialsDir` (a private directory the deployment
  provides) and removed again at once. Without either, start fails and says so.
- `TokenSource.token()` gives the bearer token to send now (None: none, e.g. client certificates);
  `refresh(rejected)` is called after a 401 and says whether one retry with a fresh token is worth it.
  - `StaticToken`: never refreshed. `TokenFile`: re-read when the file changes (and after a 401).
  - `ExecPlugin` (`client.authentication.k8s.io/v1` and `v1beta1` ExecCredential): run with
    `KUBERNETES_EXEC_INFO` (`spec.interactive: false`, `spec.cluster` when `provideClusterInfo`),
    standard input closed (never interactive: `interactiveMode: Always` is refused at start), bounded
    by `EXEC_TIMEOUT_SECONDS`; its token is cached until shortly before `expirationTimestamp` (a tenth
    of its lifetime, at most a minute) and the plugin is run again once after a 401. One run at a time.
    A failure raises `ClusterCredentialsError` naming the cluster and the command, never the token.
- No token, key or plugin output is ever logged or put in an error message; `repr()` shows none.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
import yaml

from gateway.config import ClusterSettings, ConfigError
from gateway.kube.errors import ClusterCredentialsError

log = structlog.get_logger(__name__)

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_TIMEOUT_SECONDS = 60.0
_REFRESH_MARGIN_MAX_SECONDS = 60.0
_REFRESH_MARGIN_FRACTION = 0.1
_MAX_PLUGIN_OUTPUT = 1024 * 1024
_PROXY_SCHEMES = ("http", "https")


# --------------------------------------------------------------------------- token sources


class TokenSource(Protocol):
    """Where the bearer token of a cluster comes from."""

    async def token(self) -> str | None:
        """The token to send now (None: send no Authorization header)."""
        ...

    async def refresh(self, rejected: str | None) -> bool:
        """The cluster answered 401 to `rejected`: forget it; True when one retry may now succeed."""
        ...

    def describe(self) -> str:
        """What kind of credential this is, for logs (never the secret)."""
        ...


class NoToken:
    """No bearer token (client certificates, or an anonymous cluster)."""

    async def token(self) -> str | None:
        return None

    async def refresh(self, rejected: str | None) -> bool:
        return False

    def describe(self) -> str:
        return "no token"


class StaticToken:
    """A token given inline (config `token`, kubeconfig `token`): nothing to refresh."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str | None:
        return self._token

    async def refresh(self, rejected: str | None) -> bool:
        return False

    def describe(self) -> str:
        return "static token"

    def __repr__(self) -> str:
        return "StaticToken(<hidden>)"


class TokenFile:
    """A token file, re-read whenever it changes (projected service-account tokens rotate)."""

    def __init__(self, path: str, *, cluster: str) -> None:
        self._path = path
        self._cluster = cluster
        self._stamp: tuple[int, int, int] | None = None
        self._token: str | None = None

    def load(self) -> str:
        """The current token (read again when the file's mtime, size or inode changed)."""
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp and self._token is not None:
                return self._token
            with open(self._path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ClusterCredentialsError(
                self._cluster, f"cluster {self._cluster}: cannot read the token file {self._path}: "
                               f"{getattr(e, 'strerror', None) or type(e).__name__}") from e
        if not token:
            raise ClusterCredentialsError(self._cluster,
                                          f"cluster {self._cluster}: the token file {self._path} is empty")
        self._stamp, self._token = stamp, token
        return token

    async def token(self) -> str | None:
        return self.load()

    async def refresh(self, rejected: str | None) -> bool:
        self._stamp = None  # read again even if the file looks unchanged
        return self.load() != rejected

    def describe(self) -> str:
        return f"token file {self._path}"

    def __repr__(self) -> str:
        return f"TokenFile({self._path!r})"


@dataclass(frozen=True, slots=True)
class ExecConfig:
    """A kubeconfig `user.exec` section."""

    api_version: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    interactive_mode: str = "IfAvailable"
    provide_cluster_info: bool = False
    install_hint: str = ""
    cluster_info: dict[str, Any] = field(default_factory=dict)


class ExecPlugin:
    """A client-go exec credential plugin (see module docstring)."""

    def __init__(self, config: ExecConfig, *, cluster: str, clock: Callable[[], float] = time.time,
                 timeout: float = EXEC_TIMEOUT_SECONDS) -> None:
        self._config = config
        self._cluster = cluster
        self._clock = clock
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at: float | None = None

    async def token(self) -> str | None:
        async with self._lock:
            if self._token is None or (self._refresh_at is not None and self._clock() >= self._refresh_at):
                await self._run()
            return self._token

    async def refresh(self, rejected: str | None) -> bool:
        async with self._lock:
            if self._token == rejected:
                self._token = None  # run the plugin again; another caller may have done so meanwhile
        return True

    def describe(self) -> str:
        return f"exec plugin {self._config.command}"

    def __repr__(self) -> str:
        return f"ExecPlugin({self._config.command!r})"

    def _failure(self, why: str) -> ClusterCredentialsError:
        return ClusterCredentialsError(
            self._cluster, f"cluster {self._cluster}: the exec credential plugin {self._config.command!r} {why}")

    async def _run(self) -> None:
        config = self._config
        info: dict[str, Any] = {"apiVersion": config.api_version, "kind": "ExecCredential",
                                "spec": {"interactive": False}}
        if config.provide_cluster_info:
            info["spec"]["cluster"] = config.cluster_info
        env = dict(os.environ)
        env.update(dict(config.env))
        env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        started = self._clock()
        try:
            process = await asyncio.create_subprocess_exec(
                config.command, *config.args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env)
        except FileNotFoundError as e:
            hint = f" ({config.install_hint.strip()[:300]})" if config.install_hint.strip() else ""
            raise self._failure(f"was not found{hint}") from e
        except OSError as e:
            raise self._failure(f"could not be started: {e.strerror or type(e).__name__}") from e
        try:
            async with asyncio.timeout(self._timeout):
                stdout, stderr = await process.communicate()
        except TimeoutError as e:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise self._failure(f"did not finish within {self._timeout:g}s") from e
        if process.returncode != 0:
            last = next((line for line in reversed(stderr.decode("utf-8", "replace").splitlines()) if line.strip()),
                        "")
            # The last line of its standard error says why, usually; the output (a token, maybe) never.
            log.warning("exec credential plugin failed", cluster=self._cluster, command=config.command,
                        exitCode=process.returncode, stderr=last.strip()[:200])
            raise self._failure(f"exited with code {process.returncode}")
        self._token, expires = self._parse(stdout)
        if expires is None:
            self._refresh_at = None
        else:
            margin = min(_REFRESH_MARGIN_MAX_SECONDS, max(0.0, expires - started) * _REFRESH_MARGIN_FRACTION)
            self._refresh_at = expires - margin
        log.info("exec credential plugin ran", cluster=self._cluster, command=config.command,
                 expiresInSeconds=None if expires is None else round(expires - self._clock(), 1))

    def _parse(self, stdout: bytes) -> tuple[str, float | None]:
        if len(stdout) > _MAX_PLUGIN_OUTPUT:
            raise self._failure("wrote more than 1 MiB")
        try:
            credential = json.loads(stdout)
        except ValueError as e:
            raise self._failure("did not write an ExecCredential (not JSON)") from e
        if not isinstance(credential, dict) or credential.get("kind") != "ExecCredential":
            raise self._failure("did not write an ExecCredential")
        if credential.get("apiVersion") != self._config.api_version:
            raise self._failure(f"answered apiVersion {str(credential.get('apiVersion'))[:80]!r}, configured "
                                f"{self._config.api_version!r}")
        status = credential.get("status")
        if not isinstance(status, dict):
            raise self._failure("wrote an ExecCredential without status")
        token = status.get("token")
        if not isinstance(token, str) or not token:
            if status.get("clientCertificateData"):
                raise self._failure("returned a client certificate; only token credentials are supported")
            raise self._failure("wrote an ExecCredential without status.token")
        expiry = status.get("expirationTimestamp")
        if expiry is None:
            return token, None
        try:
            expires = datetime.fromisoformat(str(expiry)).timestamp()
        except ValueError as e:
            raise self._failure("wrote an unreadable status.expirationTimestamp") from e
        return token, expires


# --------------------------------------------------------------------------- the connection


@dataclass(frozen=True, slots=True)
class Connection:
    """Everything needed to talk to one API server (see module docstring)."""

    server: str
    ssl: ssl.SSLContext | None
    tls_server_name: str | None
    proxy: str | None
    credentials: TokenSource
    source: str

    def __repr__(self) -> str:
        return f"Connection(server={self.server!r}, source={self.source!r}, credentials={self.credentials.describe()!r})"


def load_connection(settings: ClusterSettings, *, environ: Mapping[str, str] | None = None) -> Connection:
    """The connection of one configured cluster (see module docstring); `ConfigError` when unusable."""
    env = os.environ if environ is None else environ
    try:
        if settings.server is not None:
            connection = _from_server(settings)
        elif settings.kubeconfig is not None:
            connection = _from_kubeconfig(settings)
        else:
            connection = _in_cluster(settings, env)
    except ConfigError:
        raise
    except ClusterCredentialsError as e:
        raise ConfigError(f"clusters[{settings.id}]: {e.message.removeprefix(f'cluster {settings.id}: ')}") from e
    except (OSError, ssl.SSLError, ValueError) as e:
        # ssl.SSLError is an OSError: its text names the problem (e.g. a key that does not match), not secrets.
        why = (f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror and e.filename
               else str(e) or type(e).__name__)
        raise ConfigError(f"clusters[{settings.id}]: cannot set up the connection: {why}") from e
    return connection


def _bad(settings: ClusterSettings, message: str) -> ConfigError:
    return ConfigError(f"clusters[{settings.id}]: {message}")


def _from_server(s: ClusterSettings) -> Connection:
    assert s.server is not None
    credentials: TokenSource
    if s.token is not None:
        credentials = StaticToken(s.token)
    elif s.token_file is not None:
        source = TokenFile(s.token_file, cluster=s.id)
        source.load()  # unreadable at start: fail now, not on the first request
        credentials = source
    else:
        credentials = NoToken()
    context = _tls_context(s, server=s.server, ca_file=s.ca_file, insecure=s.insecure_skip_tls_verify)
    return Connection(server=s.server.rstrip("/"), ssl=context, tls_server_name=None,
                      proxy=_proxy(s, s.proxy_url), credentials=credentials, source="server")


def _in_cluster(s: ClusterSettings, env: Mapping[str, str]) -> Connection:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise _bad(s, "inCluster needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (is the gateway running "
                      "in a pod?)")
    server = f"https://{f'[{host}]' if ':' in host else host}:{port}"
    directory = Path(s.service_account_dir)
    tokens = TokenFile(str(directory / "token"), cluster=s.id)
    tokens.load()
    context = _tls_context(s, server=server, ca_file=str(directory / "ca.crt"), insecure=s.insecure_skip_tls_verify)
    return Connection(server=server, ssl=context, tls_server_name=None, proxy=_proxy(s, s.proxy_url),
                      credentials=tokens, source="inCluster")


def _from_kubeconfig(s: ClusterSettings) -> Connection:
    assert s.kubeconfig is not None
    path = Path(s.kubeconfig)
    where = f"kubeconfig {s.kubeconfig}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise _bad(s, f"cannot read {where}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise _bad(s, f"{where} is not valid YAML") from e
    if not isinstance(data, dict):
        raise _bad(s, f"{where} holds no kubeconfig")
    context_name = s.context or data.get("current-context")
    if not context_name:
        raise _bad(s, f"{where} has no current-context; set context")
    context = _named(s, data, "contexts", "context", str(context_name), where)
    cluster = _named(s, data, "clusters", "cluster", str(context.get("cluster") or ""), where)
    user_name = context.get("user")
    user = _named(s, data, "users", "user", str(user_name), where) if user_name else {}
    base = path.parent

    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise _bad(s, f"{where}: cluster {context.get('cluster')!r} has no https:// server")
    for unsupported, why in (("auth-provider", "auth-provider plugins are not supported; use an exec plugin"),
                             ("username", "basic authentication is not supported"),
                             ("password", "basic authentication is not supported"),
                             ("as", "impersonation in the kubeconfig (as) is not supported; see impersonate"),
                             ("as-groups", "impersonation in the kubeconfig (as-groups) is not supported")):
        if user.get(unsupported):
            raise _bad(s, f"{where}: user {user_name!r}: {why}")

    ca_data = _b64(s, cluster, "certificate-authority-data", where)
    ca_file = _file(base, cluster.get("certificate-authority"))
    insecure = bool(cluster.get("insecure-skip-tls-verify")) or s.insecure_skip_tls_verify
    cert_data = _b64(s, user, "client-certificate-data", where)
    key_data = _b64(s, user, "client-key-data", where)
    cert_file = _file(base, user.get("client-certificate"))
    key_file = _file(base, user.get("client-key"))
    if cert_data is None and cert_file is not None:
        cert_data = Path(cert_file).read_bytes()
    if key_data is None and key_file is not None:
        key_data = Path(key_file).read_bytes()
    if (cert_data is None) != (key_data is None):
        raise _bad(s, f"{where}: user {user_name!r} gives a client certificate without its key, or a key without "
                      "its certificate")
    context_ssl = _tls_context(s, server=server, ca_file=None if ca_data is not None else ca_file,
                               ca_data=ca_data, insecure=insecure,
                               client=(cert_data, key_data) if cert_data is not None and key_data is not None
                               else None)
    tls_server_name = cluster.get("tls-server-name") or None
    proxy = _proxy(s, cluster.get("proxy-url") or s.proxy_url)

    credentials: TokenSource
    exec_section = user.get("exec")
    if user.get("token"):
        credentials = StaticToken(str(user["token"]))
    elif user.get("tokenFile"):
        source = TokenFile(str(_file(base, user["tokenFile"])), cluster=s.id)
        source.load()
        credentials = source
    elif isinstance(exec_section, dict):
        cluster_info = {"server": server, "insecure-skip-tls-verify": insecure}
        if tls_server_name:
            cluster_info["tls-server-name"] = tls_server_name
        if proxy:
            cluster_info["proxy-url"] = proxy
        if ca_data is not None:
            cluster_info["certificate-authority-data"] = base64.b64encode(ca_data).decode()
        extensions = cluster.get("extensions")
        for extension in extensions if isinstance(extensions, list) else []:
            if isinstance(extension, dict) and extension.get("name") == "client.authentication.k8s.io/exec":
                cluster_info["config"] = extension.get("extension")
        credentials = ExecPlugin(_exec_config(s, exec_section, base, where, cluster_info), cluster=s.id)
    elif exec_section is not None:
        raise _bad(s, f"{where}: user {user_name!r}: exec must be a mapping")
    else:
        credentials = NoToken()
    return Connection(server=server.rstrip("/"), ssl=context_ssl, tls_server_name=tls_server_name, proxy=proxy,
                      credentials=credentials, source=f"kubeconfig context {context_name}")


def _named(s: ClusterSettings, data: dict[str, Any], section: str, key: str, name: str,
           where: str) -> dict[str, Any]:
    entries = data.get(section)
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key)
            return value if isinstance(value, dict) else {}
    raise _bad(s, f"{where} has no {section[:-1]} named {name!r}")


def _b64(s: ClusterSettings, section: dict[str, Any], key: str, where: str) -> bytes | None:
    value = section.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad(s, f"{where}: {key} is not base64") from e


def _file(base: Path, value: Any) -> str | None:
    if not value:
        return None
    path = Path(str(value))
    return str(path if path.is_absolute() else base / path)


def _exec_config(s: ClusterSettings, section: dict[str, Any], base: Path, where: str,
                 cluster_info: dict[str, Any]) -> ExecConfig:
    api_version = section.get("apiVersion")
    if api_version not in EXEC_API_VERSIONS:
        raise _bad(s, f"{where}: exec apiVersion must be one of {', '.join(EXEC_API_VERSIONS)} "
                      f"(got {str(api_version)[:80]!r})")
    command = section.get("command")
    if not isinstance(command, str) or not command:
        raise _bad(s, f"{where}: exec needs a command")
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)  # as client-go: a relative path with a slash is relative to the file
    mode = section.get("interactiveMode")
    if mode is None:
        if api_version.endswith("/v1"):
            raise _bad(s, f"{where}: exec interactiveMode must be set for {api_version}")
        mode = "IfAvailable"
    if mode not in ("Never", "IfAvailable", "Always"):
        raise _bad(s, f"{where}: exec interactiveMode must be Never, IfAvailable or Always")
    if mode == "Always":
        raise _bad(s, f"{where}: exec interactiveMode Always needs a terminal; the gateway never runs plugins "
                      "interactively (use Never)")
    args = section.get("args") or []
    env_entries = section.get("env") or []
    if not isinstance(args, list) or not isinstance(env_entries, list):
        raise _bad(s, f"{where}: exec args and env must be lists")
    env = tuple((str(e.get("name")), str(e.get("value", ""))) for e in env_entries
                if isinstance(e, dict) and e.get("name"))
    return ExecConfig(api_version=str(api_version), command=command, args=tuple(str(a) for a in args), env=env,
                      interactive_mode=str(mode), provide_cluster_info=bool(section.get("provideClusterInfo")),
                      install_hint=str(section.get("installHint") or ""), cluster_info=cluster_info)


def _proxy(s: ClusterSettings, url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname:
        # Never echo the URL: it may carry a proxy password.
        raise _bad(s, f"the proxy URL must be http:// or https:// with a host (got scheme {parts.scheme!r})")
    return url


# --------------------------------------------------------------------------- TLS


def _tls_context(s: ClusterSettings, *, server: str, ca_file: str | None, insecure: bool,
                 ca_data: bytes | None = None, client: tuple[bytes, bytes] | None = None) -> ssl.SSLContext | None:
    """The client TLS context: only the given CA (or the system's when none), optional client certificate."""
    if not server.startswith("https://"):
        if client is not None:
            raise _bad(s, "a client certificate needs an https:// server")
        return None
    if ca_data is not None:
        # PEM text, or one DER certificate: both are what `cadata` accepts.
        try:
            context = ssl.create_default_context(cadata=ca_data.decode("ascii"))
        except UnicodeDecodeError:
            context = ssl.create_default_context(cadata=ca_data)
    elif ca_file is not None:
        context = ssl.create_default_context(cafile=ca_file)
    else:
        context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning("TLS verification disabled for cluster: never use this in production", cluster=s.id)
    if client is not None:
        load_client_certificate(context, client[0], client[1], private_dir=s.credentials_dir, cluster=s.id)
    return context


def load_client_certificate(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, *, private_dir: str | None,
                            cluster: str) -> str:
    """Load a client certificate and key held in memory into `context` without leaving them on disk.

    Returns how: "memfd" (an anonymous in-memory file), or "private-dir" (written 0600 into
    `private_dir` and removed at once). `ConfigError` when neither is possible.
    """
    material = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        try:
            fd = memfd("clever-gateway-client-certificate", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                _write_all(fd, material)
                context.load_cert_chain(f"/proc/self/fd/{fd}")
                return "memfd"
            except FileNotFoundError:
                pass  # no /proc: fall back to the private directory
            finally:
                os.close(fd)
    if not private_dir:
        raise ConfigError(f"clusters[{cluster}]: client certificate data cannot be loaded without a file here "
                          "(no memfd_create); set credentialsDir to a private directory")
    path = os.path.join(private_dir, f".client-{cluster}-{os.getpid()}-{os.urandom(6).hex()}.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            _write_all(fd, material)
        finally:
            os.close(fd)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return "private-dir"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


__all__ = ["Connection", "ExecConfig", "ExecPlugin", "NoToken", "StaticToken", "TokenFile", "TokenSource",
           "load_client_certificate", "load_connection"]
