"""``cnnbench profile``: parameters, MACs/FLOPs, peak training memory and measured throughput of models.

Throughput is the median over timed repeats after warm-up, on synthetic input of the given shape (as
timm's benchmark.py reports it); speeds on a shared machine vary, so compare models measured in one call.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..engine.memory import PeakMemory
from ..engine.runtime import (
    autocast,
    begin_compiled_step,
    compile_model,
    resolve_device,
    resolve_precision,
    short_reason,
    synchronize,
    warm_up_calls,
)
from ..errors import ConfigError
from ..models import create_model, min_input_size
from ..models.complexity import count_flops, count_params


@dataclass(frozen=True)
class ProfileConfig:
    input_shape: tuple[int, int, int] = (3, 32, 32)  # C x H x W of one image
    num_classes: int = 10
    batch_size: int | None = None  # None: what suits the device and the input size (default_batch_size)
    variant: str = "auto"
    width: float = 1.0  # every layer's channels times this
    precision: str = "auto"
    device: str = "auto"
    train: bool = False  # also time training steps and measure their peak memory
    infer: bool = True  # time inference (off where only the training rate is wanted: a study's time estimate)
    warmup: int = 2  # untimed iterations first
    repeats: int = 50  # timed iterations at most; the median is reported
    seconds: float = 3.0  # time budget per model and measurement: timed iterations stop once it is spent (at least 1)
    timing: bool = True  # False: parameters and MACs only, on the meta device (no memory, no time)
    channels_last: bool = True
    compile: bool = False  # time torch.compile'd steps; the first call (compiling) is timed on its own
    compile_mode: str = "default"


def parse_input(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input must look like 3x32x32 (channels x height x width); got {text!r}.") from None
    if min(c, h, w) < 1:
        raise ConfigError(f"--input dimensions must be positive; got {text!r}.")
    return c, h, w


def default_batch_size(device: torch.device, input_shape: tuple[int, int, int]) -> int:
    """A batch that keeps one step short where compute is scarce: 128 images of 32x32 on a CPU (fewer for larger
    images, at least 8), 512 on a GPU (at least 32), scaled by pixels and rounded to a power of two."""
    pixels = input_shape[1] * input_shape[2]
    top, low = (128, 8) if device.type == "cpu" else (512, 32)
    scaled = top * 1024 / pixels
    return int(max(low, min(top, 2 ** round(math.log2(max(scaled, 1))))))


def _median_rate(step, batch: int, cfg: ProfileConfig, device: torch.device) -> float:
    """Images per second: the median over timed steps, as many as fit in ``cfg.seconds`` (at least one, at most
    ``cfg.repeats``), after ``cfg.warmup`` untimed ones (also cut short by the budget)."""
    start = time.perf_counter()
    for _ in range(cfg.warmup):
        step()
        if time.perf_counter() - start > cfg.seconds / 2:
            break
    synchronize(device)
    times: list[float] = []
    budget_end = time.perf_counter() + cfg.seconds
    while not times or (len(times) < cfg.repeats and time.perf_counter() < budget_end):
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def _compiled_or_eager(
    model: nn.Module, cfg: ProfileConfig, record: dict, what: str, call, device, precision, inference: bool = False
) -> nn.Module:
    """The module to time: compiled where asked, its first call (the compiling) timed into ``<what>_compile_s``;
    eager, with the reason in ``<what>_compile_error``, where compiling fails."""
    if not cfg.compile:
        return model
    compiled = compile_model(model, cfg.compile_mode)
    start = time.perf_counter()
    try:
        with torch.inference_mode(inference), autocast(device, precision):
            for _ in range(warm_up_calls(cfg.compile_mode)):
                begin_compiled_step(cfg.compile_mode)
                call(compiled)
        synchronize(device)
    except Exception as e:  # compiling is an optimisation: report why it failed and time the eager model
        record[f"{what}_compile_error"] = short_reason(e)
        return model
    finally:
        model.zero_grad(set_to_none=True)
    record[f"{what}_compile_s"] = time.perf_counter() - start
    return compiled


def _infer_rate(model: nn.Module, cfg: ProfileConfig, record: dict, x: torch.Tensor, device, precision) -> float:
    infer_model = _compiled_or_eager(model, cfg, record, "infer", lambda m: m(x), device, precision, inference=True)

    def infer():
        if infer_model is not model:
            begin_compiled_step(cfg.compile_mode)
        with torch.inference_mode(), autocast(device, precision):
            infer_model(x)

    return _median_rate(infer, cfg.batch_size, cfg, device)


def profile_model(name: str, cfg: ProfileConfig) -> dict:
    c, h, w = cfg.input_shape
    need = min_input_size(name)
    if min(h, w) < need:
        raise ConfigError(f"{name} needs inputs of at least {need}x{need} pixels; --input {c}x{h}x{w} is too small.")
    if not cfg.timing:  # shapes only: no weights are made, so even the largest model answers at once
        with torch.device("meta"):
            model = create_model(
                name,
                num_classes=cfg.num_classes,
                in_chans=c,
                variant=cfg.variant,
                width=cfg.width,
                image_size=min(h, w),
            )
        flops = count_flops(model, cfg.input_shape)
        return {
            "model": name,
            "variant": model.variant,
            "input": f"{c}x{h}x{w}",
            "batch_size": None,
            "params": count_params(model),
            "macs": flops // 2,
            "flops": flops,
            "precision": None,
            "device": "meta",
            "channels_last": None,
            "compile": None,
            "train_images_per_s": None,
            "infer_images_per_s": None,
            "peak_memory_mb": None,
        }
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size or default_batch_size(device, cfg.input_shape))
    torch.manual_seed(0)
    model = create_model(
        name, num_classes=cfg.num_classes, in_chans=c, variant=cfg.variant, width=cfg.width, image_size=min(h, w)
    )
    params = count_params(model)
    flops = count_flops(model, cfg.input_shape)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    x = torch.randn(cfg.batch_size, c, h, w, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), device=device)

    model.eval()
    record = {
        "model": name,
        "variant": model.variant,
        "input": f"{c}x{h}x{w}",
        "batch_size": cfg.batch_size,
        "params": params,
        "macs": flops // 2,
        "flops": flops,
        "precision": precision,
        "device": str(device),
        "channels_last": cfg.channels_last,
        "compile": cfg.compile_mode if cfg.compile else None,
        "train_images_per_s": None,
        "peak_memory_mb": None,
    }
    record["infer_images_per_s"] = _infer_rate(model, cfg, record, x, device, precision) if cfg.infer else None
    if cfg.train:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        train_model = _compiled_or_eager(
            model, cfg, record, "train", lambda m: loss_fn(m(x), y).backward(), device, precision
        )

        def train_step():
            if train_model is not model:
                begin_compiled_step(cfg.compile_mode)
            with autocast(device, precision):
                loss = loss_fn(train_model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        train_step()  # optimizer state exists before memory is measured
        with PeakMemory(device, interval=0.002) as mem:
            train_step()
        peak = record["peak_memory_mb"] = mem.peak_mb()
        record["peak_memory_note"] = (
            f"{mem.kind} during one step ({peak - mem.base_mb:.0f} MB above before it)"
            if peak is not None and mem.base_mb is not None
            else "not measurable on this platform"
        )
        record["train_images_per_s"] = _median_rate(train_step, cfg.batch_size, cfg, device)
    return record


PROFILE_COLUMNS = [
    "model",
    "variant",
    "input",
    "batch_size",
    "params",
    "macs",
    "flops",
    "precision",
    "device",
    "train_images_per_s",
    "infer_images_per_s",
    "peak_memory_mb",
]
