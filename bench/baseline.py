"""The baseline server: the least a Python service must do to answer a read from Redis.

A bare aiohttp server on uvloop: `GET /kv/{name}` does one Redis GET of `bench:baseline:{name}` and
answers its bytes as `application/json` (404 with a small orjson body when absent). The suite stores
there the exact bytes the gateway answered (one job, the lists), so both servers send the same payload
from the same Redis; every gateway figure is a ratio against this one, measured in the same run on the
same CPU. Same Redis client as the gateway (redis-py + hiredis), a blocking pool of `--pool` connections
(waits, never fails), aiohttp's default listen backlog (as the gateway), no access log, no middleware.

Run: `python -m bench.baseline --port P --redis-url redis://127.0.0.1:R/0` (serves until SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import orjson
import uvloop
from aiohttp import web
from redis import asyncio as redis_asyncio

KEY_PREFIX = "bench:baseline:"
REDIS: web.AppKey[redis_asyncio.Redis] = web.AppKey("redis", redis_asyncio.Redis)
_NOT_FOUND = orjson.dumps({"code": 404, "reason": "NotFound", "message": "no such key"})


async def get_key(request: web.Request) -> web.Response:
    """GET /kv/{name}: the stored bytes."""
    body = await request.app[REDIS].get(KEY_PREFIX + request.match_info["name"])
    if body is None:
        return web.Response(status=404, body=_NOT_FOUND, content_type="application/json")
    return web.Response(body=body, content_type="application/json")


def make_app(redis_url: str, pool: int) -> web.Application:
    """The baseline application."""
    app = web.Application()
    app.router.add_get("/kv/{name}", get_key)

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        connections = redis_asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=pool,
                                                                    timeout=None)
        app[REDIS] = redis_asyncio.Redis(connection_pool=connections)
        yield
        await app[REDIS].aclose()

    app.cleanup_ctx.append(redis_ctx)
    return app


async def serve(host: str, port: int, redis_url: str, pool: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    runner = web.AppRunner(make_app(redis_url, pool), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()  # aiohttp's default backlog, as the gateway
    print(f"baseline listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--pool", type=int, default=64, help="Redis connections (the gateway's default)")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.redis_url, args.pool))


if __name__ == "__main__":
    main()
