"""Peak memory of training: the CUDA allocator's counter on a GPU, the process's resident memory on a CPU."""

from __future__ import annotations

import os
import threading
import time
import warnings
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _process(pid: int):
    """psutil's handle on process ``pid``, made once: the sampling thread reads it every few milliseconds."""
    import psutil

    return psutil.Process(pid)


def resident_bytes() -> int | None:
    """This process's resident memory in bytes (psutil: Linux, macOS, Windows), None where it cannot be read."""
    try:
        return int(_process(os.getpid()).memory_info().rss)
    except Exception:  # a failed measurement must never stop training
        return None


def mps_allocated_bytes() -> int | None:
    """Memory the MPS driver holds for this process (Apple GPUs), None where it cannot be read."""
    try:
        return int(torch.mps.driver_allocated_memory())
    except Exception:  # a failed measurement must never stop training
        return None


class PeakRSS:
    """Peak resident memory of this process, sampled every ``interval`` seconds (CPU has no allocator counter).
    ``peak`` stays None where the platform does not tell."""

    def __init__(self, interval: float = 0.002, reader=None):
        self.interval, self.peak, self._stop = interval, None, threading.Event()
        self.reader = reader or resident_bytes

    def _update(self) -> None:
        now = self.reader()
        if now is not None:
            self.peak = now if self.peak is None else max(self.peak, now)

    def __enter__(self):
        self.base = self.peak = self.reader()
        self._thread = None
        if self.base is None:
            warnings.warn("cannot read this process's resident memory here: peak memory is not recorded", stacklevel=2)
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self._update()
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._update()


class PeakMemory:
    """Peak memory while the ``with`` block runs, in MB: PyTorch's allocated peak on CUDA, resident peak of the
    process on CPU (so on CPU it includes whatever the process holds: the data set in memory, the libraries).
    ``base_mb`` is the same measure when the block began, so ``peak_mb() - base_mb`` is what the block added."""

    def __init__(self, device: torch.device, interval: float = 0.02):
        self.device = device
        self.base_mb = 0.0
        # 50 samples/s by default: no measurable cost over an epoch; a single step needs finer sampling.
        # MPS has no peak counter: its driver's allocation is sampled like the CPU's resident memory.
        reader = mps_allocated_bytes if device.type == "mps" else None
        self._rss = PeakRSS(interval, reader) if device.type != "cuda" else None

    @property
    def kind(self) -> str:
        if self._rss is None:
            return "CUDA allocator peak"
        return "MPS driver allocation peak (sampled)" if self.device.type == "mps" else "process resident peak"

    def __enter__(self):
        if self._rss is None:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_mb = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self._rss.__enter__()
            self.base_mb = self._rss.base / 2**20 if self._rss.base is not None else None
        return self

    def __exit__(self, *exc):
        if self._rss is None:
            if exc[0] is None:  # after a CUDA error a sync would raise again and hide it
                torch.cuda.synchronize(self.device)
        else:
            self._rss.__exit__(*exc)

    def peak_mb(self) -> float | None:
        if self._rss is None:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        self._rss._update()
        return self._rss.peak / 2**20 if self._rss.peak is not None else None
