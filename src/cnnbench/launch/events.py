"""The study's append-only journal, events.jsonl: one line per cell event (queued, started, epoch, finished, failed
with its reason), with the time, host and process, so `cnnbench status` and a person can follow a study anywhere."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

EVENTS = "events.jsonl"


def record(study_dir: Path, cell: str, event: str, **details) -> None:
    """Append one event. One write() of one line to a file opened for appending: lines from several processes
    never interleave within a line on POSIX file systems (and on NFS where lines are short, as these are)."""
    line = json.dumps(
        {
            "time": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "cell": cell,
            "event": event,
            **details,
        },
        default=str,
    )
    path = Path(study_dir) / EVENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def read(study_dir: Path) -> list[dict]:
    """Every readable event, oldest first (a line cut short by a crash is skipped)."""
    path = Path(study_dir) / EVENTS
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def latest_by_cell(study_dir: Path) -> dict[str, dict]:
    """Each cell's last event (epochs update a running cell's line; finished and failed close it)."""
    last: dict[str, dict] = {}
    for e in read(study_dir):
        last[e["cell"]] = e
    return last
