"""A run's resumable state: what a checkpoint holds, and putting it back."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..layout import CHECKPOINTS_DIR
from .callbacks import Callback
from .checkpoint import load_latest, remove_stale_temporaries, save_checkpoint
from .run import PartialEpoch, Run


def _rng_state(run: Run) -> dict:
    state = {"torch": torch.get_rng_state(), "data": run.generator.get_state()}
    if run.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(run.device)
    elif run.device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(run: Run, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    run.generator.set_state(state["data"])
    if "cuda" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], run.device)
    if "mps" in state and run.device.type == "mps":
        torch.mps.set_rng_state(state["mps"])


def save_state(run: Run, callbacks: Sequence[Callback] = ()) -> None:
    """Checkpoint everything a resume needs (main process only)."""
    if not run.dist.is_main:
        return
    save_checkpoint(
        run.out / CHECKPOINTS_DIR,
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "epoch": run.state.epoch,
            "rows": run.state.rows,
            "start_time": run.state.start_time,
            "rng": _rng_state(run),
            "config": run.config.to_dict(),
            "variant": run.variant,
            "partial": run.state.partial.to_dict() if run.state.partial is not None else None,
            # the moving average (what was evaluated) and its update count, for evaluate/predict/export and resume
            **({"ema_model": run.average.module.state_dict(), "ema": run.average.state_dict()} if run.average else {}),
            # callbacks' own state, by class name (most keep theirs in the run folder's files and have none)
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in callbacks if cb.state_dict()},
        },
    )


def restore_state(run: Run, callbacks: Sequence[Callback] = ()) -> None:
    """Continue ``run`` (and ``callbacks``) from its folder's newest readable checkpoint, if any; problems go to
    ``run.notes.warnings``."""
    remove_stale_temporaries(run.out / CHECKPOINTS_DIR)
    state, run.notes.warnings = load_latest(run.out / CHECKPOINTS_DIR)
    if state is None:
        return
    run.model.load_state_dict(state["model"])
    if run.average is not None:
        run.average.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    _set_rng_state(run, state["rng"])
    run.state.epoch, run.state.rows, run.state.start_time = state["epoch"], list(state["rows"]), state["start_time"]
    partial = state.get("partial")
    run.state.partial = PartialEpoch(**partial) if partial else None
    saved = state.get("callbacks", {})
    for cb in callbacks:
        if type(cb).__name__ in saved:
            cb.load_state_dict(saved[type(cb).__name__])
