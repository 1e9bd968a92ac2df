"""The study's append-only journal, events.jsonl: one line per cell event (queued, started, epoch, finished, failed
with its reason), with the time, host and process, so `cnnbench status` and a person can follow a study anywhere."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..layout import EVENTS_JSONL


def scheduler_job() -> dict:
    """The Slurm job this process runs in, as `squeue` names it (an array task: JOB_TASK); {} outside Slurm."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return {"slurm_job": f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"}
    return {"slurm_job": env["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in env else {}


def record(study_dir: Path, cell: str, event: str, **details) -> None:
    """Append one event. One write() of one line to a file opened for appending: lines from several processes
    never interleave within a line on POSIX file systems (and on NFS where lines are short, as these are)."""
    line = json.dumps(
        {
            "time": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **scheduler_job(),
            "cell": cell,
            "event": event,
            **details,
        },
        default=str,
    )
    path = Path(study_dir) / EVENTS_JSONL
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def _lines(path: Path) -> Iterator[dict | None]:
    """Each line of the journal as an event, None where it cannot be read (cut short by a crash, binary junk, not an
    event): streamed, so a journal of any size takes the memory of one line."""
    with open(path, "rb") as f:
        for raw in f:
            try:
                event = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                yield None
                continue
            ok = isinstance(event, dict) and isinstance(event.get("cell"), str) and isinstance(event.get("event"), str)
            yield event if ok else None


def read(study_dir: Path) -> list[dict]:
    """Every readable event, in the journal's order (unreadable lines are skipped: see scan)."""
    path = Path(study_dir) / EVENTS_JSONL
    return [e for e in _lines(path) if e is not None] if path.exists() else []


@dataclass
class Journal:
    """What `cnnbench status` needs from the journal, gathered in one streamed pass."""

    last: dict[str, dict] = field(default_factory=dict)  # each cell's latest event (by its time)
    epochs: dict[str, deque] = field(default_factory=dict)  # each cell's last few epoch events (by time)
    skipped: int = 0  # lines that could not be read


def _time(event: dict) -> float:
    t = event.get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else float("-inf")


def scan(study_dir: Path, recent: int = 3) -> Journal:
    """Each cell's latest event and its ``recent`` latest epochs. Lines are taken by their time, not their place in
    the file (several hosts append to one journal; a line may come late, or twice)."""
    journal = Journal()
    path = Path(study_dir) / EVENTS_JSONL
    if not path.exists():
        return journal
    for event in _lines(path):
        if event is None:
            journal.skipped += 1
            continue
        cell = event["cell"]
        if cell not in journal.last or _time(event) >= _time(journal.last[cell]):
            journal.last[cell] = event
        if event["event"] == "epoch" and isinstance(event.get("epoch"), int):
            seen = journal.epochs.setdefault(cell, deque(maxlen=recent))
            older = len(seen) == recent and _time(event) < _time(seen[0])  # older than every one kept
            if not older and not any(e["epoch"] == event["epoch"] for e in seen):  # a duplicated line counts once
                seen.append(event)
                if len(seen) > 1 and _time(seen[-2]) > _time(event):  # came late: back into time order
                    ordered = sorted(seen, key=_time)
                    seen.clear()
                    seen.extend(ordered)
    return journal


def latest_by_cell(study_dir: Path) -> dict[str, dict]:
    """Each cell's last event (epochs update a running cell's line; finished and failed close it)."""
    return scan(study_dir).last
