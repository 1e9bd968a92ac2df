"""Peak memory of training: the CUDA allocator's counter on a GPU, the process's resident memory on a CPU."""
from __future__ import annotations

import threading
import time

import torch


class PeakRSS:
    """Peak resident memory of this process, sampled every ``interval`` seconds (CPU has no allocator counter)."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def __enter__(self):
        self.base = self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


class PeakMemory:
    """Peak memory while the ``with`` block runs, in MB: PyTorch's allocated peak on CUDA, resident peak of the process on CPU
    (so on CPU it includes the data set held in memory and the libraries)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._rss = PeakRSS(interval=0.02) if device.type != "cuda" else None  # 50 samples/s: no measurable cost

    @property
    def kind(self) -> str:
        return "CUDA allocator peak" if self._rss is None else "process resident peak (data set included)"

    def __enter__(self):
        if self._rss is None:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._rss.__enter__()
        return self

    def __exit__(self, *exc):
        if self._rss is not None:
            self._rss.__exit__(*exc)

    def peak_mb(self) -> float:
        if self._rss is None:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return max(self._rss.peak, PeakRSS.rss()) / 2**20
