"""A lock per run folder, so two launchers, two `compare` commands on one --out, or a requeued job never train the
same run at once. The lock file names its owner (host, pid) and carries a heartbeat; a lock whose heartbeat stopped
(its process was killed, its node lost) is stale and taken over, with a line saying so."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOCK_FILE = ".lock"
HEARTBEAT_S = 10.0  # how often an owner refreshes its lock
STALE_AFTER_S = 60.0  # a lock not refreshed for this long belongs to a worker that is gone


def _now() -> float:
    return time.time()


def read_lock(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _alive_here(owner: dict) -> bool | None:
    """Whether the owner process still runs, where it ran on this host (None: another host, cannot tell)."""
    if owner.get("host") != socket.gethostname():
        return None
    import psutil  # portable: os.kill(pid, 0) would terminate the process on Windows

    try:
        return psutil.pid_exists(int(owner["pid"]))
    except (ValueError, KeyError, TypeError):
        return True  # an unreadable owner: leave it to the heartbeat


def is_stale(owner: dict | None, stale_after: float = STALE_AFTER_S) -> bool:
    if owner is None:
        return True
    if _alive_here(owner) is False:  # a dead process on this host: no need to wait for the heartbeat to age
        return True
    return _now() - float(owner.get("heartbeat", 0)) > stale_after


class RunLock:
    """``with RunLock(run_dir) as lock:`` holds the folder or raises LockedError (another live worker has it)."""

    def __init__(
        self,
        run_dir: Path,
        log: Callable[[str], None] = print,
        stale_after: float = STALE_AFTER_S,
        heartbeat: float = HEARTBEAT_S,
    ):
        self.path = Path(run_dir) / LOCK_FILE
        self.log, self.stale_after, self.heartbeat = log, stale_after, heartbeat
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.took_over: dict | None = None

    def _write_new(self) -> bool:
        """Create the lock file only if there is none (atomic on every file system cnnbench writes to)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({**self.owner, "started": _now(), "heartbeat": _now()}, f)
        return True

    def acquire(self) -> None:
        if self._write_new():
            return self._beat()
        previous = read_lock(self.path.parent)
        if not is_stale(previous, self.stale_after):
            raise LockedError(self.path.parent, previous)
        self.log(
            f"{self.path.parent.name}: taking over a stale lock of {previous or 'an unreadable lock file'} "
            "(its worker stopped: killed, or its node lost); the run resumes from its folder"
        )
        self.path.unlink(missing_ok=True)
        if not self._write_new():  # another worker took it over first
            raise LockedError(self.path.parent, read_lock(self.path.parent))
        self.took_over = previous
        return self._beat()

    def _beat(self) -> None:
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(self.heartbeat):
            lock = read_lock(self.path.parent)
            if not lock or lock.get("pid") != self.owner["pid"] or lock.get("host") != self.owner["host"]:
                return  # taken over: never write over another owner's lock
            lock["heartbeat"] = _now()
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(lock), encoding="utf-8")
            os.replace(tmp, self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        lock = read_lock(self.path.parent)
        if lock and lock.get("pid") == self.owner["pid"] and lock.get("host") == self.owner["host"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class LockedError(RuntimeError):
    """The run folder is being trained by another live worker."""

    def __init__(self, run_dir: Path, owner: dict | None):
        self.run_dir, self.owner = run_dir, owner
        who = f"{owner.get('host')} pid {owner.get('pid')}" if owner else "another worker"
        super().__init__(f"{run_dir.name} is being trained by {who}")
