"""A run's resumable state: what a checkpoint holds, and putting it back."""

from __future__ import annotations

import torch

from .checkpoint import load_latest, save_checkpoint


def _rng_state(run) -> dict:
    state = {"torch": torch.get_rng_state(), "data": run.generator.get_state()}
    if run.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def _set_rng_state(run, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    run.generator.set_state(state["data"])
    if "cuda" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], run.device)


def save_state(run) -> None:
    """Checkpoint everything a resume needs (main process only)."""
    if not run.dist.is_main:
        return
    save_checkpoint(
        run.out / "checkpoints",
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "epoch": run.epoch,
            "rows": run.rows,
            "start_time": run.start_time,
            "rng": _rng_state(run),
            "config": run.config.to_dict(),
            "variant": run.variant,
            "partial": run.partial,
            # the moving average (what was evaluated) and its update count, for evaluate/predict/export and resume
            **({"ema_model": run.average.module.state_dict(), "ema": run.average.state_dict()} if run.average else {}),
        },
    )


def restore_state(run) -> None:
    """Continue ``run`` from its folder's newest readable checkpoint, if any (problems go to ``run.warnings``)."""
    state, run.warnings = load_latest(run.out / "checkpoints")
    if state is None:
        return
    run.model.load_state_dict(state["model"])
    if run.average is not None:
        run.average.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    _set_rng_state(run, state["rng"])
    run.epoch, run.rows, run.start_time = state["epoch"], list(state["rows"]), state["start_time"]
    run.partial = state.get("partial")
