"""The `clever-gateway` command.

    clever-gateway serve --config FILE     serve per FILE (or $CLEVER_GATEWAY_CONFIG), env overrides applied
    clever-gateway demo [--port 8080]      a self-contained demo: in-process simulated cluster, embedded
                                           Redis, auth off (see gateway.demo)

A bad configuration exits with status 2 and the key paths at fault on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from gateway.config import ConfigError, load_settings
from gateway.logging import configure_logging
from gateway.version import VERSION

# In-flight requests get this long to finish at SIGTERM (the Deployment's grace period is longer).
SHUTDOWN_TIMEOUT_SECONDS = 20.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clever-gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"clever-gateway {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the legacy API per a configuration file")
    serve.add_argument("--config", help="YAML configuration file (default: $CLEVER_GATEWAY_CONFIG)")
    serve.add_argument("--check", action="store_true", help="validate the configuration and exit")
    demo = commands.add_parser("demo", help="run a self-contained demo (simulated cluster, auth off)")
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from gateway.demo import run_demo

        configure_logging(level="info", fmt="json")
        try:
            run_async(run_demo(host=args.host, port=args.port))
        except KeyboardInterrupt:
            pass
        return 0
    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"clever-gateway: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"configuration OK: {len(settings.clusters)} cluster(s): "
              f"{', '.join(c.id for c in settings.clusters)}")
        return 0
    configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    from gateway.app import create_app, server_options
    from gateway.web.server import serve

    try:
        run_async(serve(create_app(settings), host=settings.listen.host, port=settings.listen.port,
                        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS, server_options=server_options(settings)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
