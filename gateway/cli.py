"""The `clever-gateway` command.

    clever-gateway serve [--config FILE] [--host H] [--port P] [--check]
                                           serve per FILE (or $CLEVER_GATEWAY_CONFIG), env overrides applied;
                                           --check validates the file and every file it names, then exits
    clever-gateway check [--config FILE]  check that the configuration works where it is deployed: files,
                                           Redis, the OIDC issuer, each cluster (reachable, the backend's
                                           resource served, the RBAC it needs allowed); prints a table,
                                           exit status 0 only when every check passed
    clever-gateway translate --cluster ID [--config FILE] [--partition P] [--user U] [FILE|-]
                                           print the exact cluster object a legacy create body becomes on
                                           that cluster (no cluster is called)
    clever-gateway config-reference       print the configuration reference (docs/configuration.md)
    clever-gateway demo [--host H] [--port 8080]
                                           a self-contained demo: simulated clusters in-process, embedded
                                           Redis, auth off (see gateway.demo)

Every start-up error is one line on stderr that names the key, path or flag at fault, never a traceback:
exit status 2 for a bad configuration or input, 1 when the gateway cannot start (an address in use, a
cluster's credentials that cannot be loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, Settings, load_settings, unreadable_files
from gateway.logging import configure_logging
from gateway.version import VERSION

EXIT_CONFIG, EXIT_START = 2, 1


class StartupError(Exception):
    """The gateway cannot start; the message is the one line to print."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clever-gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"clever-gateway {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the legacy API per a configuration file")
    serve.add_argument("--config", help="YAML configuration file (default: $CLEVER_GATEWAY_CONFIG)")
    serve.add_argument("--host", help="listen address (overrides listen.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides listen.port)")
    serve.add_argument("--check", action="store_true",
                       help="validate the configuration and the files it names, then exit")
    check = commands.add_parser("check", help="check files, Redis, the OIDC issuer and every cluster, then exit")
    check.add_argument("--config", help="YAML configuration file (default: $CLEVER_GATEWAY_CONFIG)")
    translate = commands.add_parser("translate", help="print the cluster object of a legacy create body")
    translate.add_argument("body", nargs="?", default="-", help="JSON file of the body (default: stdin)")
    translate.add_argument("--config", help="YAML configuration file (default: $CLEVER_GATEWAY_CONFIG)")
    translate.add_argument("--cluster", required=True, help="cluster id (clusters[].id)")
    translate.add_argument("--partition", default="default", help="partition (default: default)")
    translate.add_argument("--user", default="someone", help="owner of the job (default: someone)")
    commands.add_parser("config-reference", help="print the configuration reference (docs/configuration.md)")
    demo = commands.add_parser("demo", help="run a self-contained demo (simulated clusters, auth off)")
    demo.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    return parser


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run the server's coroutine on uvloop where it is installed (Linux/macOS), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _fail(message: str, status: int) -> int:
    print(f"clever-gateway: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "config-reference":
            from gateway.config_reference import config_reference

            print(config_reference(), end="")
            return 0
        settings = _settings(args)
        if args.command == "translate":
            return _translate(args, settings)
        if args.command == "check":
            return _check(settings)
        problems = unreadable_files(settings)
        if problems:
            return _fail("files named by the configuration cannot be read:\n  " + "\n  ".join(problems),
                         EXIT_CONFIG)
        if args.check:
            print(f"configuration OK: {len(settings.clusters)} cluster(s): "
                  f"{', '.join(c.id for c in settings.clusters)}; every file it names is readable")
            return 0
        return _serve(settings)
    except ConfigError as e:
        return _fail(str(e), EXIT_CONFIG)
    except StartupError as e:
        return _fail(str(e), EXIT_START)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    settings = load_settings(args.config)
    if overrides:
        try:
            settings = settings.model_copy(update={"listen": settings.listen.model_validate(
                {**settings.listen.model_dump(), **overrides})})
        except ValueError as e:
            raise ConfigError(f"--port/--host: {e}") from e
    return settings


def _serve(settings: Settings) -> int:
    configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    from gateway.app import create_app, server_options
    from gateway.web.server import serve

    async def start() -> None:
        try:
            await serve(create_app(settings), host=settings.listen.host, port=settings.listen.port,
                        shutdown_timeout=settings.listen.shutdown_timeout_seconds, server_options=server_options(settings))
        except OSError as e:
            why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise StartupError(f"cannot listen on {settings.listen.host}:{settings.listen.port} "
                               f"(listen.host/listen.port, --host/--port): {why}") from e

    try:
        run_async(start())
    except KeyboardInterrupt:
        pass
    return 0


def _check(settings: Settings) -> int:
    from gateway.checks import render, run_checks

    # The table is the output; the clients' own log lines would only interleave with it.
    configure_logging(level="critical", fmt="console")
    checks: list[Any] = []

    async def run() -> None:
        checks.extend(await run_checks(settings))

    run_async(run())
    print(render(checks), end="")
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks passed" + (f"; {failed} FAILED" if failed else ""))
    return 0 if not failed else EXIT_START


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    configure_logging(level="info", fmt="json")
    try:
        run_async(run_demo(host=args.host, port=args.port))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise StartupError(f"cannot listen on {args.host}:{args.port} (--host/--port): {why}") from e
    return 0


def _translate(args: argparse.Namespace, settings: Settings) -> int:
    from translators.backends import to_cluster_object
    from translators.clever import parse_create
    from translators.errors import SpecError
    from translators.spec import JobIdentity

    cluster = settings.cluster(args.cluster)
    if cluster is None:
        known = ", ".join(c.id for c in settings.clusters)
        raise ConfigError(f"--cluster: no cluster {args.cluster!r} in the configuration (clusters: {known})")
    try:
        text = sys.stdin.read() if args.body == "-" else Path(args.body).read_text(encoding="utf-8")
        body = json.loads(text)
    except OSError as e:
        raise ConfigError(f"{args.body}: {e.strerror or e}") from e
    except ValueError as e:
        raise ConfigError(f"{args.body}: not JSON: {e}") from e
    profile = cluster.profile()
    try:
        spec = parse_create(body, partition=args.partition, profile=profile)
    except SpecError as e:
        lines = [f"{f.path or '(body)'}: {f.message}" for f in e.fields] or [e.message]
        raise ConfigError("the body is not a valid job:\n  " + "\n  ".join(lines)) from e
    identity = JobIdentity(id="000000000000", owner=args.user, cluster=cluster.id, partition=args.partition,
                           created="1970-01-01T00:00:00Z", updated="1970-01-01T00:00:00Z")
    print(json.dumps(to_cluster_object(spec, identity, profile), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
