"""The practical peak of a device for one precision, as the benchmarks compare achieved rates with: the faster of
a square matmul and a 256-channel 3x3 convolution, timed in the same run. On CPUs the two go through different
libraries (MKL's matmul, oneDNN's convolution) and can differ twofold: a matmul-only yardstick would understate
what the cores can do. Also what the CPU-step benchmarks share: their options, their machine line, the model
and the training step they time."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn

from cnnbench.engine.runtime import autocast, synchronize
from cnnbench.models import create_model
from cnnbench.models.small_maps import use_small_map_convolutions


def practical_peak(dtype: torch.dtype, device: torch.device | None = None, seconds: float = 2.0) -> dict[str, float]:
    """GFLOP/s of a 2048x2048 matmul and of a 256-channel 3x3 convolution on 16x16 maps (batch 64), each the
    median of the repeats that fit in ``seconds``."""

    def rate(fn, flops: float) -> float:
        for _ in range(2):
            fn()
        synchronize(device)
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 3:
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        return flops / float(np.median(times)) / 1e9

    device = device or torch.device("cpu")
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device, dtype, memory_format=torch.channels_last)
    x = torch.randn(64, 256, 16, 16, dtype=dtype, device=device).to(memory_format=torch.channels_last)
    conv_flops = 2 * 64 * 256 * 256 * 9 * 16 * 16
    with torch.no_grad():
        return {"matmul": rate(lambda: a @ b, 2 * n**3), "conv": rate(lambda: conv(x), conv_flops)}


def step_benchmark_parser() -> argparse.ArgumentParser:
    """The options every CPU-step benchmark shares: which models, which precisions, which batch size."""
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vgg16_bn,resnet18")
    p.add_argument("--precisions", default="bf16,fp32")
    p.add_argument("--batch-size", type=int, default=128)
    return p


def machine_line() -> str:
    """What a benchmark's numbers were measured on, for its first line."""
    from cnnbench.engine.runtime import cpu_name

    return (
        f"CPU: {cpu_name()} ({torch.get_num_threads()} threads), torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def cifar_model(name: str, small_maps: bool = False) -> nn.Module:
    """The model's small-image variant for 10 classes, seeded, channels_last, in training mode; with
    ``small_maps``, routed as cnnbench trains it on a CPU (models/small_maps.py)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=3, variant="small").to(memory_format=torch.channels_last)
    if small_maps:
        use_small_map_convolutions(model)
    return model.train()


def training_step(forward, optimizer: torch.optim.Optimizer, criterion: nn.Module, precision: str):
    """step(x, y): one forward under the precision's autocast, backward and optimizer step, on the CPU."""
    device = torch.device("cpu")

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(device, precision):
            loss = criterion(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step
