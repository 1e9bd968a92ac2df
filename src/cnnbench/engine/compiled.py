"""torch.compile before the first epoch: compiled on one batch, timed apart from training, and undone where it
fails (training then goes on eagerly, and the run's warnings say why)."""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from ..data.loader import normalize
from .run import Run
from .runtime import autocast, begin_compiled_step, short_reason, synchronize, warm_up_calls


def compile_before_training(run: Run, step_model: nn.Module, eager: nn.Module, criterion: nn.Module) -> nn.Module:
    """Compile (and, in reduce-overhead mode, capture CUDA graphs) on one batch before the first epoch, so that its
    cost is reported as ``compile_s`` instead of hiding in the first epoch's rate. Weights, batch-norm statistics,
    gradients and random state are left as they were. Where compiling fails (no C++ compiler, an unsupported
    platform or operator), training goes on eagerly and the run's warnings say why."""
    cfg = run.config
    buffers = {name: b.clone() for name, b in run.model.named_buffers()}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None
    x = normalize(run.data.train_x[: cfg.batch_size], run.data.mean, run.data.std, cfg.channels_last)
    y = run.data.train_y[: cfg.batch_size]
    start = time.perf_counter()
    try:
        run.model.train()
        for _ in range(warm_up_calls(cfg.compile_mode)):
            begin_compiled_step(cfg.compile_mode)
            with autocast(run.device, run.precision):
                loss = criterion(step_model(x), y)
            loss.backward()
        synchronize(run.device)
        run.notes.compile_s = time.perf_counter() - start
    except Exception as e:  # compiling is an optimisation: its failure must not stop the run
        run.notes.warnings.append(f"torch.compile failed ({short_reason(e)}); trained without it.")
        step_model = eager
    finally:
        run.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, b in run.model.named_buffers():
                b.copy_(buffers[name])
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, run.device)
    return step_model
