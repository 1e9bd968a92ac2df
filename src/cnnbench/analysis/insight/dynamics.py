"""How the weights update while a model trains (the study's future work): a training callback.

Every ``every`` steps and at each epoch's last step, for every convolution and linear layer: the weight norm,
the gradient norm, the update-to-weight ratio ||W_after - W_before|| / ||W_before|| of the step the optimizer
actually took (momentum and weight decay included), and the distance from the initial weights. The values stay
on the training device until the epoch ends (one transfer per epoch, no host sync per step on a GPU).
Per epoch, on a fixed probe batch of training images, the share of ReLU channels that are silent for every image
("dead"), per stage. The first convolution's filters are kept at every epoch.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ...data.loader import normalize
from ...engine.callbacks import Callback
from ...engine.checkpoint import load_file
from ...engine.run import Run
from ...engine.runtime import autocast, eval_mode
from ...fileio import read_csv, write_bytes, write_csv, write_npz
from ...layout import DEAD_UNITS_CSV, DYNAMICS_CSV, FILTERS_NPZ, INIT_WEIGHTS
from .stages import first_filters, model_stages, stage_of, weight_layers

DYNAMICS_COLUMNS = [
    "epoch",
    "step",
    "global_step",
    "layer",
    "stage",
    "lr",
    "weight_norm",
    "grad_norm",
    "update_ratio",
    "dist_from_init",
]
DEAD_COLUMNS = ["epoch", "stage", "dead_fraction", "channels"]


def dead_channel_fractions(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[float, int]]:
    """Per stage: (share of ReLU output channels that are zero for every image and position of ``x``, channels).

    Each call of a ReLU module counts as its own units, so a ReLU reused inside a block (torchvision's ResNet
    blocks) is counted once per use."""
    stages = model_stages(model)
    alive: dict[str, list[torch.Tensor]] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module, _inputs, out):
        if out.ndim == 4:
            stage = stage_of(names[module], stages)
            alive.setdefault(stage, []).append((out > 0).flatten(2).any(2).any(0))  # channel alive for some input

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.inference_mode(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    result = {}
    for stage in stages:
        if stage.name in alive:
            flags = torch.cat(alive[stage.name])
            result[stage.name] = (1.0 - flags.float().mean().item(), int(flags.numel()))
    return result


class WeightDynamics(Callback):
    """Writes dynamics.csv, dead_units.csv, filters.npz and checkpoints/init.pt into the run folder."""

    def __init__(self, rows_per_epoch: int = 20, probe_images: int = 256):
        self.rows_per_epoch = rows_per_epoch
        self.probe_images = probe_images

    # -- set-up --------------------------------------------------------------------------------------------
    def on_train_start(self, run: Run) -> None:
        self.run = run
        self.layers = weight_layers(run.model)
        stages = model_stages(run.model)
        self.stage_names = [stage_of(n, stages) for n, _ in self.layers]
        self.init = self._initial_weights(run)
        self.rows = self._kept_rows(run.out / DYNAMICS_CSV, run.state.epoch)
        self.dead_rows = self._kept_rows(run.out / DEAD_UNITS_CSV, run.state.epoch)
        self.filters = self._kept_filters(run.out / FILTERS_NPZ, run.state.epoch)
        if run.state.epoch == 0:
            self.filters["epoch_0"] = first_filters(run.model)
        self.probe = run.data.train_x[: self.probe_images]
        self.pending: list[tuple[int, int, float, torch.Tensor]] = []
        self.before: list[torch.Tensor] | None = None
        self.handles = [
            run.optimizer.register_step_pre_hook(self._before_step),
            run.optimizer.register_step_post_hook(self._after_step),
        ]

    def _initial_weights(self, run: Run) -> list[torch.Tensor] | None:
        path = run.out / INIT_WEIGHTS
        if run.state.epoch == 0 and run.state.partial is None:
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in run.model.state_dict().items()}, buf)
            write_bytes(path, buf.getvalue())
        if not path.exists():  # resumed from a run that trained without --dynamics: no distance from init
            return None
        state = load_file(path)
        return [state[f"{n}.weight"].to(run.device, torch.float32) for n, _ in self.layers]

    @staticmethod
    def _kept_rows(path: Path, epoch: int) -> list[dict]:
        """Rows of epochs that finished before a resume (later ones belong to the epoch being redone)."""
        return [r for r in read_csv(path) if int(r["epoch"]) <= epoch] if path.exists() else []

    @staticmethod
    def _kept_filters(path: Path, epoch: int) -> dict[str, np.ndarray]:
        if not path.exists():
            return {}
        with np.load(path) as z:
            return {k: z[k] for k in z.files if int(k.split("_")[1]) <= epoch}

    # -- per step ------------------------------------------------------------------------------------------
    def on_epoch_start(self, run: Run, epoch: int, steps: int) -> None:
        self.epoch, self.steps = epoch, steps
        self.every = max(1, steps // self.rows_per_epoch)
        self.first_step = (epoch - 1) * steps  # global steps before this epoch (also when resuming mid-epoch)

    def _step_in_epoch(self) -> int:
        return self.run.scheduler.last_epoch + 1 - self.first_step

    def _records(self) -> bool:
        step = self._step_in_epoch()
        return step % self.every == 0 or step == self.steps

    @torch.no_grad()
    def _before_step(self, _optimizer, _args, _kwargs) -> None:
        if not self._records():
            self.before = None
            return
        self.before = [m.weight.detach().float().clone() for _, m in self.layers]
        self.grad_norms = torch.stack(
            [
                m.weight.grad.detach().float().norm()
                if m.weight.grad is not None
                else torch.zeros((), device=m.weight.device)
                for _, m in self.layers
            ]
        )

    @torch.no_grad()
    def _after_step(self, optimizer, _args, _kwargs) -> None:
        if self.before is None:
            return
        after = [m.weight.detach().float() for _, m in self.layers]
        before_norms = torch.stack([b.norm() for b in self.before])
        values = torch.stack(
            [
                torch.stack([a.norm() for a in after]),
                self.grad_norms,
                torch.stack([(a - b).norm() for a, b in zip(after, self.before)]) / before_norms.clamp_min(1e-12),
                torch.stack([(a - i).norm() for a, i in zip(after, self.init)])
                if self.init is not None
                else torch.full_like(before_norms, math.nan),
            ],
            1,
        )
        step = self._step_in_epoch()
        self.pending.append((step, self.first_step + step, optimizer.param_groups[0]["lr"], values))
        self.before = None

    # -- per epoch -----------------------------------------------------------------------------------------
    def on_epoch_end(self, run: Run, row: dict) -> None:
        epoch = row["epoch"]
        if self.pending:
            values = torch.stack([v for *_, v in self.pending]).cpu().numpy()  # one transfer per epoch
            for (step, global_step, lr, _), per_layer in zip(self.pending, values):
                for (name, _), stage, (w, g, u, d) in zip(self.layers, self.stage_names, per_layer):
                    self.rows.append(
                        {
                            "epoch": epoch,
                            "step": step,
                            "global_step": global_step,
                            "layer": name,
                            "stage": stage,
                            "lr": f"{lr:.6g}",
                            "weight_norm": f"{w:.6g}",
                            "grad_norm": f"{g:.6g}",
                            "update_ratio": f"{u:.6g}",
                            "dist_from_init": "" if math.isnan(d) else f"{d:.6g}",
                        }
                    )
            self.pending = []
        probe = normalize(self.probe, run.data.mean, run.data.std, run.config.channels_last)
        with autocast(run.device, run.precision):  # the training precision: half the probe's cost on this CPU
            fractions = dead_channel_fractions(run.model, probe)
        for stage, (fraction, channels) in fractions.items():
            self.dead_rows.append(
                {"epoch": epoch, "stage": stage, "dead_fraction": f"{fraction:.6g}", "channels": channels}
            )
        self.filters[f"epoch_{epoch}"] = first_filters(run.model)
        write_csv(run.out / DYNAMICS_CSV, self.rows, DYNAMICS_COLUMNS)
        write_csv(run.out / DEAD_UNITS_CSV, self.dead_rows, DEAD_COLUMNS)
        write_npz(run.out / FILTERS_NPZ, **self.filters)

    def on_train_end(self, run: Run, summary: dict) -> None:
        self._release()

    def on_exception(self, run: Run, error: BaseException) -> None:
        self._release()  # the optimizer hooks would otherwise outlive the run (a study trains the next one)

    def _release(self) -> None:
        for h in getattr(self, "handles", ()):
            h.remove()
        self.handles = []
