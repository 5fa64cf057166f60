"""Structured logging: structlog, one JSON object per line on stdout (or console format for humans).

Contract: `configure_logging(level=, fmt=)` is called once by the CLI; library code only does
`structlog.get_logger(__name__)`. Secrets never reach the output: any event key that looks like a
credential (`token`, `authorization`, `password`, `secret`, ...) is replaced by "[redacted]", and
bearer tokens inside string values are masked, as a last line of defence behind not logging them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|authorization|password|secret|credential|cookie|api_?key)", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: hide credential-looking keys and bearer tokens in values."""
    for key in list(event_dict):
        value = event_dict[key]
        if _SECRET_KEYS.search(key) and key != "event":
            event_dict[key] = REDACTED
        elif isinstance(value, str) and "earer" in value:
            event_dict[key] = _BEARER.sub(r"\1" + REDACTED, value)
    return event_dict


def configure_logging(*, level: str = "info", fmt: str = "json") -> None:
    """Route structlog and stdlib logging to stdout as JSON lines (or console lines)."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log duplicates our own request log line; kubernetes_asyncio logs bodies at debug.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
