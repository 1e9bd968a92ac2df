"""`cnnbench status STUDY`: where every cell of a study stands, from the study's files alone (its cell list in
study.json, the run folders, their locks and the events journal), wherever the cells run."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..engine.runtime import duration_text
from ..errors import ConfigError
from ..fileio import read_json
from ..layout import CONFIG_JSON, EVENTS_JSONL, RUNS_DIR, STUDY_SPEC, SUMMARY, run_dirs_of
from . import events
from .cell import finished
from .lock import is_stale, read_lock


@dataclass
class CellStatus:
    name: str
    state: str  # pending | running | finished | failed
    host: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    images_per_s: float | None = None
    eta_s: float | None = None  # running: seconds to finish at its pace so far
    test_top1: float | None = None
    reason: str | None = None  # failed: why

    def to_dict(self) -> dict:
        return asdict(self)


def study_cells(study_dir: Path, journal: events.Journal | None = None) -> list[CellStatus]:
    """Every cell's state (``journal``: the events journal already scanned, so that status reads it once)."""
    study_dir = Path(study_dir)
    if not (study_dir / STUDY_SPEC).exists():
        raise ConfigError(f"{study_dir} is not a study folder (no {STUDY_SPEC}): give the --out of `cnnbench compare`.")
    try:
        spec = read_json(study_dir / STUDY_SPEC)
        cells = [c for c in spec.get("cells", []) if isinstance(c, dict) and "name" in c and "config" in c]
    except (ValueError, AttributeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{study_dir / STUDY_SPEC} is damaged ({e}): run the study's `cnnbench compare` again."
        ) from None
    if not cells:  # a study from before launchers recorded its cells: its run folders are its cells
        cells = [{"name": d.name, "config": _config(d)} for d in run_dirs_of(study_dir)]
    journal = journal or events.scan(study_dir)
    last, epochs_seen = journal.last, {cell: list(seen) for cell, seen in journal.epochs.items()}
    out = []
    for cell in cells:
        name, run_dir = cell["name"], study_dir / RUNS_DIR / cell["name"]
        if finished(run_dir):
            try:
                summary = read_json(run_dir / SUMMARY)
                top1 = float(summary["test_top1"])
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):  # hand-edited: finished, number unknown
                top1 = None
            out.append(CellStatus(name, "finished", test_top1=top1, epochs=cell["config"].get("epochs")))
            continue
        lock = read_lock(run_dir)
        event = last.get(name, {})
        if lock and not is_stale(lock):
            seen = epochs_seen.get(name, [])
            epoch = seen[-1]["epoch"] if seen else 0
            total = cell["config"].get("epochs")
            pace = sum(e["epoch_time_s"] for e in seen[-3:]) / len(seen[-3:]) if seen else None
            out.append(
                CellStatus(
                    name,
                    "running",
                    host=lock.get("host"),
                    epoch=epoch,
                    epochs=total,
                    images_per_s=seen[-1]["images_per_s"] if seen else None,
                    eta_s=pace * (total - epoch) if pace and total else None,
                )
            )
        elif event.get("event") == "failed":
            out.append(CellStatus(name, "failed", host=event.get("host"), reason=event.get("reason")))
        elif lock:  # a lock whose owner stopped without a word: killed, or its node lost
            seen = epochs_seen.get(name, [])
            at = f" after epoch {seen[-1]['epoch']}" if seen else ""
            reason = (
                f"its worker (pid {lock.get('pid')} on {lock.get('host')}) stopped{at} without finishing: killed, or "
                "its machine lost; the run resumes from its folder"
            )
            out.append(CellStatus(name, "failed", host=lock.get("host"), reason=reason))
        else:
            out.append(CellStatus(name, "pending", epochs=cell["config"].get("epochs")))
    return out


def _config(run_dir: Path) -> dict:
    try:
        config = read_json(run_dir / CONFIG_JSON)
    except (ValueError, UnicodeDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _duration(seconds: float | None) -> str:
    return "?" if seconds is None else duration_text(seconds)


def status_text(study_dir: Path, cells: list[CellStatus], journal: events.Journal | None = None) -> str:
    """The cells as lines, then the unreadable journal lines counted and the totals (``journal``: as scanned for
    ``cells``; read again where not given)."""
    try:
        command = read_json(Path(study_dir) / STUDY_SPEC).get("command")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        command = None
    retry = f"`{command}`" if command else "the same `cnnbench compare` again"
    lines = []
    for c in cells:
        if c.state == "finished":
            detail = f"test top-1 {c.test_top1:.2%}" if c.test_top1 is not None else ""
        elif c.state == "running":
            rate = f", {c.images_per_s:.0f} images/s" if c.images_per_s else ""
            detail = f"on {c.host}, epoch {c.epoch} of {c.epochs}{rate}, about {_duration(c.eta_s)} left"
        elif c.state == "failed":
            detail = f"{c.reason} (retry: {retry}; only unfinished runs train)"
        else:
            detail = ""
        lines.append(f"{c.name:<44} {c.state:<9} {detail}".rstrip())
    counts = {s: sum(c.state == s for c in cells) for s in ("finished", "running", "pending", "failed")}
    running = [c for c in cells if c.state == "running"]
    paces = [c.eta_s / max(c.epochs - c.epoch, 1) * c.epochs for c in running if c.eta_s is not None and c.epochs]
    per_run = sum(paces) / len(paces) if paces else None
    left = None
    if per_run is not None:
        parallel = max(len(running), 1)
        left = (sum(c.eta_s or 0 for c in running) + per_run * counts["pending"]) / parallel
    skipped = (journal or events.scan(study_dir)).skipped
    if skipped:
        lines.append(f"({skipped} unreadable line(s) of {EVENTS_JSONL} skipped: cut short by a crash, or damaged)")
    lines.append(
        f"{len(cells)} runs: {counts['finished']} finished, {counts['running']} running, {counts['pending']} pending, "
        f"{counts['failed']} failed" + (f"; about {_duration(left)} to go at the running workers' pace" if left else "")
    )
    return "\n".join(lines)


def watch(study_dir: Path, every: float = 10.0, rounds: int | None = None) -> list[CellStatus]:
    """Print the status every ``every`` seconds until every cell has finished or failed (or ``rounds`` ran out)."""
    n = 0
    while True:
        journal = events.scan(study_dir)
        cells = study_cells(study_dir, journal)
        print(status_text(study_dir, cells, journal), flush=True)
        n += 1
        if all(c.state in ("finished", "failed") for c in cells) or (rounds is not None and n >= rounds):
            return cells
        time.sleep(every)
        print()
