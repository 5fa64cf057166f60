"""The processes the suite starts, and their end.

Each process is started in its own session (a Ctrl-C in the terminal reaches only the suite, which then
stops them in order) with a parent-death signal (a suite killed outright takes them along), optionally
pinned to one CPU with `taskset -c`, its output in a log file under the run's temporary directory.
`Processes.stop_all()` ends them in reverse start order: SIGTERM, then SIGKILL after a grace period.
Also here: free loopback ports, HTTP readiness polling, and a process's RSS and CPU time from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_pin() -> bool:
    """Pinning needs two CPUs and `taskset`."""
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


@dataclass
class Proc:
    """A started process."""

    name: str
    process: asyncio.subprocess.Process
    log: Path
    cpu: int | None

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Still running."""
        return self.process.returncode is None

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Processes:
    """Every process of a run (see module docstring)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[Proc] = []

    async def start(self, name: str, argv: Sequence[str], *, cpu: int | None,
                    env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
        """Start `argv` (pinned to `cpu` when not None); output goes to `<logdir>/<name>.log`."""
        log = self.logdir / f"{name}.log"
        command = [*(["taskset", "-c", str(cpu)] if cpu is not None else []), *argv]
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent)
        proc = Proc(name=name, process=process, log=log, cpu=cpu)
        self.started.append(proc)
        return proc

    async def stop(self, proc: Proc, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()
        if proc in self.started:
            self.started.remove(proc)

    async def stop_all(self) -> None:
        """Stop every process, last started first."""
        for proc in reversed(list(self.started)):
            await self.stop(proc)

    def kill_all(self) -> None:
        """SIGKILL whatever is left (last resort, synchronous)."""
        for proc in self.started:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str,
                     proc: Proc | None = None, interval: float = 0.1) -> None:
    """Poll `check` until true; RuntimeError after `timeout` or when `proc` died (with its log's end)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            code = proc.process.returncode
            raise RuntimeError(f"{proc.name} exited ({code}) before {what}:\n{proc.tail()}")
        with contextlib.suppress(Exception):
            if await check():
                return
        if time.monotonic() > deadline:
            tail = f":\n{proc.tail()}" if proc is not None else ""
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        await asyncio.sleep(interval)


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS of /proc/<pid>/status) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed by the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
