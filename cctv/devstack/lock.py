"""One `cctv up` per broker port: a lock file held (flock) for as long as the stack runs.

The kernel drops the lock when the holder dies, so a crashed `cctv up` never blocks the next one; the
file's JSON says who holds it, for the refusal message and for `cctv down`."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cctv.devstack.process import cache_dir


def lock_path(kafka_port: int) -> Path:
    return cache_dir() / f"stack-{kafka_port}.lock"


class StackRunning(Exception):
    """Another `cctv up` holds the stack; `holder` is what it wrote (pid, started, services)."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        started = time.strftime("%H:%M:%S", time.localtime(holder.get("started", 0)))
        super().__init__(
            f"a dev stack is already running on 127.0.0.1:{holder.get('kafka_port')} "
            f"(`cctv up` pid {holder.get('pid')}, started {started}, state in {holder.get('state_dir')}); "
            "use it (cctv status, cctv alerts tail) or stop it first with `cctv down`"
        )


@dataclass
class StackLock:
    path: Path
    handle: IO[str]

    def release(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def acquire(kafka_port: int, details: dict[str, Any]) -> StackLock:
    """Take the stack lock or raise StackRunning naming the holder."""
    path = lock_path(kafka_port)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 — held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _parse(handle.read())
        handle.close()
        raise StackRunning(holder | {"kafka_port": kafka_port}) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(details | {"pid": os.getpid(), "started": time.time(), "kafka_port": kafka_port}))
    handle.flush()
    return StackLock(path, handle)


def holder(kafka_port: int) -> dict[str, Any] | None:
    """Who runs the stack on this port now (None when nobody holds the lock)."""
    path = lock_path(kafka_port)
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return _parse(handle.read()) | {"kafka_port": kafka_port}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
