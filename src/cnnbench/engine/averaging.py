"""An exponential moving average of a model's weights (``--ema``), on torch.optim.swa_utils.AveragedModel.

The average is what gets evaluated, checkpointed as ``ema_model`` and used by predict/export: its batch-norm
buffers are averaged along with the weights, and precise batch norm (when on) recomputes them for the averaged
weights before each evaluation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel


class WeightAverage:
    """The average updates with decay min(decay, (1 + n) / (10 + n)) after n updates: early on, when the weights move
    fast, it follows them closely instead of remembering the random initialisation for thousands of steps.

    The update count is kept on the host: AveragedModel.update_parameters reads its count tensor on every step, and
    reading a GPU tensor makes the host wait for the GPU, so the next step's kernels cannot be queued ahead. That is
    the likeliest cause of the fast preset training vgg16_bn at 30,000 images/s on an H200 where `profile --train`
    timed the same step at 70,000 (not yet measured on a GPU since). The averaged tensors are updated with one
    multi-tensor lerp instead of a kernel launch per tensor. AveragedModel still holds the copy and its checkpoint
    format (``module.*``, and ``n_averaged``, written from the host count when saved)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.averaged = AveragedModel(model, use_buffers=True)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [*model.parameters(), *model.buffers()]
        if self.updates == 0:
            torch._foreach_copy_(averaged, current)
        else:
            floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
            weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
            for a, c in zip(averaged, current):  # counters such as num_batches_tracked follow the model
                if not a.is_floating_point():
                    a.copy_(c)
        self.updates += 1

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def state_dict(self) -> dict:
        self.averaged.n_averaged.fill_(self.updates)  # the count lives on the host; checkpoints keep torch's format
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)
        self.updates = int(self.averaged.n_averaged)  # once, on resuming


def evaluated_weights(state: dict) -> dict:
    """The weights a checkpoint's results were measured with: the average where the run kept one."""
    return state.get("ema_model") or state["model"]
