"""Log output: JSON lines on stdout, secrets never written, info lines buffered until the next flush while
warnings go out at once with everything before them, in order."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, sys, structlog
    from gateway.logging import configure_logging, flush_logs
    configure_logging(level="info", fmt="json")
    log = structlog.get_logger("demo")
    log.info("first", token="s3cret", header="Bearer abc.def")
    {then}
    os._exit(0)  # no flush at exit: only what was written out is there
""")


def _lines(then: str) -> list[dict[str, object]]:
    run = subprocess.run([sys.executable, "-c", SCRIPT.format(then=then)], capture_output=True, text=True,
                         timeout=60, check=True)
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_an_info_line_waits_for_the_flush() -> None:
    assert _lines("pass") == []
    [line] = _lines("flush_logs()")
    assert line["event"] == "first" and line["level"] == "info" and line["logger"] == "demo"
    assert line["token"] == "[redacted]" and line["header"] == "Bearer [redacted]"


def test_a_warning_goes_out_at_once_after_what_came_before() -> None:
    lines = _lines('log.warning("second"); log.info("third")')
    assert [line["event"] for line in lines] == ["first", "second"]
