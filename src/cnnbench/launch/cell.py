"""One cell of a study, trained to the end by whichever launcher runs it: under its run folder's lock, with its
events in the study's journal, resumed from its folder if an earlier worker got part of the way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig, config_differences, config_from_dict
from ..data.loader import load_dataset
from ..engine.callbacks import Callback
from ..engine.evaluate_run import write_evaluation_files
from ..engine.run import Run
from ..engine.runtime import short_reason
from ..engine.train import fit
from ..errors import ConfigError
from ..fileio import read_json
from ..layout import CHECKPOINTS_DIR, CONFIG_JSON, PER_CLASS_CSV, PREDICTIONS, SUMMARY, run_dir_for
from . import events
from .lock import LOCK_FILE, LockedError, RunLock

FINISHED, SKIPPED, BUSY = "finished", "finished earlier", "busy"


def finished(run_dir: Path, holding_lock: bool = False) -> bool:
    """Trained and evaluated. A worker holds the run's lock until its last evaluation file is written, so a lock
    left beside a summary means that worker died part-way through the evaluation (``holding_lock``: the caller's
    own lock, which does not count)."""
    done = (run_dir / SUMMARY).exists() and (run_dir / PER_CLASS_CSV).exists()
    return done and (holding_lock or not (run_dir / LOCK_FILE).exists())


class OtherSettingsError(ConfigError):
    """The cell's run folder belongs to a run with other settings (another command on the same study folder)."""


def check_same_settings(run_dir: Path, cfg: TrainConfig, study_dir: Path) -> None:
    """Refuse a run folder begun with settings other than this study's: taking it as this study's cell would mix
    recipes in one comparison (two `compare` commands with different settings on one --out)."""
    try:
        saved = read_json(run_dir / CONFIG_JSON)
    except (OSError, ValueError, UnicodeDecodeError):
        return  # not begun yet, or being written: training checks it again before it resumes anything
    changes = config_differences(saved, cfg) if isinstance(saved, dict) else ""
    if changes:
        raise OtherSettingsError(
            f"{run_dir.name} was begun with other settings than this study asks for ({changes}): another command on "
            f"{study_dir} is training (or trained) it, so taking it as this study's run would mix recipes in one "
            "comparison. Run studies with different settings in different --out folders; this one's finished runs "
            "are kept."
        )


def write_run_evaluation(run_dir: Path, model: str, data) -> None:
    """A trained run's confusion matrix, per-class table and misclassified images, from its test predictions."""
    from ..report.plots import misclassified_figure

    with np.load(run_dir / PREDICTIONS) as z:
        logits = torch.from_numpy(z["logits"])
    write_evaluation_files(run_dir, logits, data.test_y, data.classes)
    misclassified_figure(run_dir, data.test_x.cpu().numpy(), f"{model} on {data.name}")


def finish_run_files(run_dir: Path) -> None:
    """A lone run's evaluation files, as a study writes them for its runs (`cnnbench train` calls it, so that
    `cnnbench report RUN_DIR` has them): from its saved test predictions and its data set's test images."""
    cfg = config_from_dict(read_json(run_dir / CONFIG_JSON), where=str(run_dir / CONFIG_JSON))
    write_run_evaluation(run_dir, cfg.model, load_dataset(cfg.dataset, cfg.data_dir, cfg.data_options()))


class EpochEvents(Callback):
    """Each finished epoch as an event in the study's journal (what `cnnbench status` reads for running cells)."""

    def __init__(self, study_dir: Path, cell: str):
        self.study_dir, self.cell = study_dir, cell

    def on_epoch_end(self, run: Run, row: dict) -> None:
        events.record(
            self.study_dir,
            self.cell,
            "epoch",
            epoch=row["epoch"],
            epochs=run.config.epochs,
            images_per_s=round(row["images_per_s"], 1),
            epoch_time_s=round(row["epoch_time_s"], 2),
        )


def train_cell(
    study_dir: str | Path,
    config: dict,
    threads: int | None = None,
    callbacks: Sequence[Callback] = (),
    data=None,
    log: Callable[[str], None] = print,
) -> str:
    """Train the study's cell ``config`` (a TrainConfig as a dict: plain data, so any launcher can ship it) into its
    run folder. Returns FINISHED, SKIPPED (finished before) or BUSY (another live worker holds it); a failure is
    recorded with its reason and raised again. ``threads``: CPU threads for this worker (a share of the cores)."""
    study_dir = Path(study_dir)
    cfg: TrainConfig = config_from_dict(config, where="the study's cell")
    if threads:
        cfg = cfg.replace(threads=threads)  # a result-neutral setting: the run's recipe is unchanged
    run_dir = run_dir_for(study_dir, cfg)
    cell = run_dir.name
    check_same_settings(run_dir, cfg, study_dir)  # before anything else: a mismatch is refused, not recorded
    if finished(run_dir):
        return SKIPPED

    def say_takeover(text: str) -> None:  # in the log and in the journal, where status and people look
        log(text)
        events.record(study_dir, cell, "takeover", note=text)

    try:
        with RunLock(run_dir, log=say_takeover) as lock:
            return _train_locked(study_dir, cfg, run_dir, lock, threads, callbacks, data)
    except LockedError as e:  # only entering the lock raises it: another live worker holds the run
        check_same_settings(run_dir, cfg, study_dir)  # the holder's settings, where it has written them
        log(f"{cell}: {e}; left to it")
        return BUSY


def _train_locked(study_dir: Path, cfg: TrainConfig, run_dir: Path, lock: RunLock, threads, callbacks, data) -> str:
    """The cell's training and evaluation, under its run folder's lock."""
    cell = run_dir.name
    try:
        check_same_settings(run_dir, cfg, study_dir)  # begun by another command since the first look
        # finished while this worker waited for the lock (a lock taken over from a dead worker: its evaluation may
        # be part-written, so it is written again)
        if finished(run_dir, holding_lock=True) and lock.took_over is None:
            return SKIPPED
        events.record(study_dir, cell, "started", resumed=(run_dir / CHECKPOINTS_DIR).exists(), threads=threads)
        data = data if data is not None else load_dataset(cfg.dataset, cfg.data_dir, cfg.data_options())
        summary = fit(cfg, run_dir, resume=True, callbacks=[*callbacks, EpochEvents(study_dir, cell)], data=data)
        write_run_evaluation(run_dir, cfg.model, data)
        events.record(study_dir, cell, "finished", test_top1=summary.get("test_top1"))
        return FINISHED
    except OtherSettingsError:
        raise  # the folder is another command's run: nothing of this cell failed
    except BaseException as e:
        reason = "interrupted" if isinstance(e, KeyboardInterrupt) else short_reason(e)
        events.record(study_dir, cell, "failed", reason=reason)
        raise
