"""Structured logging: structlog, one JSON object per line on stdout (or console format for humans).

Contract: `configure_logging(level=, fmt=)` is called once by the CLI; library code only does
`structlog.get_logger(__name__)`. Secrets never reach the output: any event key that looks like a
credential (`token`, `authorization`, `password`, `secret`, ...) is replaced by "[redacted]", and
bearer tokens inside string values are masked, as a last line of defence behind not logging them.

Cost: the gateway's own lines (one per request among them) go through a short structlog chain straight
to stdout as orjson-encoded bytes, without the stdlib `logging` machinery; third-party libraries'
records (aiohttp, redis-py, kubernetes_asyncio) still go through stdlib logging, rendered the same way.
Debug and info lines are buffered and written out by `flush_logs_periodically` (every
`LOG_FLUSH_SECONDS`, run by the app) or when `LOG_BUFFER_BYTES` are waiting: a write per request line
cost about a seventh of a cached read. Warnings and errors, and third-party records, are written at once,
after what was buffered before them (the order holds); the app flushes once more when it stops.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

_SECRET_KEYS = re.compile(r"(token|authorization|password|secret|credential|cookie|api_?key)", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
REDACTED = "[redacted]"


@functools.cache
def _is_secret_key(key: str) -> bool:
    return key != "event" and _SECRET_KEYS.search(key) is not None


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: hide credential-looking keys and bearer tokens in values."""
    for key, value in event_dict.items():
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str) and "earer" in value:
            event_dict[key] = _BEARER.sub(r"\1" + REDACTED, value)
    return event_dict


class FastTimeStamper:
    """structlog processor: an ISO 8601 UTC `timestamp` with microseconds, the date and time of day
    formatted once per second (structlog's TimeStamper builds a datetime for every line)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


LOG_FLUSH_SECONDS = 0.2
# Buffered lines are written out before they exceed this many bytes.
LOG_BUFFER_BYTES = 64 * 1024


class _LineBuffer:
    """The lines waiting for the next flush. Ours, not stdout's: with PYTHONUNBUFFERED (common in images)
    stdout has no buffer at all."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._bytes = 0

    def add(self, line: bytes) -> None:
        self._lines.append(line)
        self._bytes += len(line)
        if self._bytes > LOG_BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        lines, self._lines, self._bytes = self._lines, [], 0
        with contextlib.suppress(ValueError, OSError):  # stdout closed or gone: nothing to write to
            out = sys.stdout.buffer
            if lines:
                out.write(b"".join(lines))
            out.flush()


_BUFFER = _LineBuffer()


class _NamedBytesLogger:
    """JSON lines on stdout for one module: debug and info buffered, the rest written at once (after what
    was buffered, so the order holds)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def buffered(self, message: bytes) -> None:
        """A line that may wait for the next flush."""
        _BUFFER.add(message + b"\n")

    def flushed(self, message: bytes) -> None:
        """A line written out now, with whatever was buffered before it."""
        _BUFFER.add(message + b"\n")
        _BUFFER.flush()

    debug = info = buffered
    msg = log = warn = warning = err = error = critical = exception = fatal = failure = flushed


def flush_logs() -> None:
    """Write out the buffered log lines."""
    _BUFFER.flush()


async def flush_logs_periodically(interval: float = LOG_FLUSH_SECONDS) -> None:
    """Flush the buffered log lines every `interval` seconds, until cancelled (then once more)."""
    try:
        while True:
            await asyncio.sleep(interval)
            flush_logs()
    finally:
        flush_logs()


class _OrderedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Third-party libraries' records, written after the gateway's buffered lines (the order holds)."""

    def emit(self, record: logging.LogRecord) -> None:
        flush_logs()
        super().emit(record)


def _named_logger(*args: Any) -> _NamedBytesLogger:
    return _NamedBytesLogger(str(args[0]) if args else "")


def add_logger_name(logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the module name the logger was made for."""
    name = getattr(logger, "name", None)
    if name:
        event_dict["logger"] = name
    return event_dict


def _orjson_bytes(data: Any, **_kwargs: Any) -> bytes:
    return orjson.dumps(data, default=repr)


def configure_logging(*, level: str = "info", fmt: str = "json") -> None:
    """Route structlog (directly) and stdlib logging (through a formatter) to stdout."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    atexit.unregister(flush_logs)  # registered once, however often this is called
    atexit.register(flush_logs)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        FastTimeStamper(),
        redact_secrets,
    ]
    if fmt == "json":
        structlog.configure(
            processors=[*shared, add_logger_name, structlog.processors.format_exc_info,
                        structlog.processors.JSONRenderer(serializer=_orjson_bytes)],
            logger_factory=_named_logger,
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            cache_logger_on_first_use=True,
        )
        renderer: Any = structlog.processors.JSONRenderer()
    else:
        structlog.configure(
            processors=[*shared, add_logger_name, structlog.dev.ConsoleRenderer(colors=False)],
            logger_factory=structlog.PrintLoggerFactory(),
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            cache_logger_on_first_use=True,
        )
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    handler = _OrderedStreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log duplicates our own request log line; kubernetes_asyncio logs bodies at debug.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
