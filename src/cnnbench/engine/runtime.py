"""Device, precision and environment: resolved once per run and recorded with it."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from functools import cache

import torch

from ..errors import ConfigError


def compile_model(module: torch.nn.Module, mode: str = "default"):
    return torch.compile(module, mode=None if mode == "default" else mode)


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def begin_compiled_step(mode: str | None) -> None:
    """Tell torch.compile's CUDA graphs that a new step starts, so that replaying a graph may reuse the memory of the
    last step's outputs. Without it a compiled training step (forward, then backward) failed on an H200 with
    "accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run". A no-op in other modes."""
    if mode in CUDA_GRAPH_MODES:
        torch.compiler.cudagraph_mark_step_begin()


def warm_up_calls(mode: str) -> int:
    """Calls a compiled module needs before it runs at speed: reduce-overhead records its CUDA graphs on later calls."""
    return 3 if mode == "reduce-overhead" else 1


def duration_text(seconds: float) -> str:
    """A time to go as people say it: seconds up to a minute and a half, then minutes, then hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def pace_note(elapsed: float, done: int, left: int) -> str:
    """How long the ``left`` runs still take, at the pace of the ``done`` ones so far (runs differ: a rough guide)."""
    return f"{left} run(s) to go: about {duration_text(elapsed / max(done, 1) * left)} at the pace so far"


def short_reason(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else 'no details'}"


def mps_available() -> bool:
    """An Apple-silicon GPU PyTorch can use (the MPS backend)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """auto: a CUDA GPU, else an Apple GPU (MPS), else the CPU; an asked-for device that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine. Use --device cpu or auto."
        )
    if name == "mps" and not mps_available():
        raise ConfigError(
            "--device mps was asked for, but PyTorch sees no Apple GPU here (MPS needs Apple silicon, macOS 12.3 or "
            "later and a PyTorch built with MPS). Use --device cpu or auto."
        )
    return torch.device(name)


def mps_supports_bf16() -> bool:
    """bf16 on MPS depends on the macOS and PyTorch versions: ask the backend directly."""
    try:
        (torch.ones(2, dtype=torch.bfloat16, device="mps") * 2).sum().item()
        return True
    except (RuntimeError, TypeError):
        return False


@cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@cache
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matrix products run about 2x fp32 there (docs/BENCHMARKS.md, precision rows)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "bf16" if mps_supports_bf16() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it; nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU (MPS) on {cpu_name()}"
    return f"CPU: {cpu_name()} ({os.cpu_count()} cores)"


def environment(device: torch.device, precision: str) -> dict:
    import numpy
    import torchvision

    from ..version import __version__

    return {
        "cnnbench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
    }


@contextlib.contextmanager
def restored_torch_state():
    """Put back the process-wide settings a run changes (threads, deterministic algorithms, cudnn.benchmark, matmul
    precision) when it ends, so a second ``fit`` in the same process, or the caller's code, gets its own."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.get_float32_matmul_precision(),
    )
    try:
        yield
    finally:
        threads, deterministic, warn_only, benchmark, matmul = saved
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_float32_matmul_precision(matmul)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """The model in eval mode inside the block, back in the mode it was in afterwards (also after an error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
