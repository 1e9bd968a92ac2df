"""Observers of the training loop: progress display, and anything else that plugs in without editing it."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import torch

from ..models.registry import width_description
from .run import Run
from .runtime import duration_text


class Callback:
    """Hooks called by ``fit`` (Lightning's Callback in miniature); every method is optional.

    ``run`` holds what does not change while training (config, data, model, optimizer, device) and, in
    ``run.state``, what a checkpoint saves. A callback with state of its own returns it from ``state_dict`` (plain
    data and tensors): it is saved in every checkpoint under the callback's class name and handed back to
    ``load_state_dict`` on resume, before ``on_train_start``."""

    def on_train_start(self, run: Run) -> None: ...

    def on_epoch_start(self, run: Run, epoch: int, steps: int) -> None: ...

    def on_step_end(self, run: Run, epoch: int, step: int, loss: torch.Tensor) -> None:
        """After every optimizer step; ``loss`` is the step's loss as a 0-d tensor on the training device (reading
        it, e.g. ``float(loss)``, waits for the GPU: do it rarely)."""

    def on_epoch_end(self, run: Run, row: dict) -> None: ...

    def on_train_end(self, run: Run, summary: dict) -> None: ...

    def on_exception(self, run: Run, error: BaseException) -> None:
        """Training stopped with ``error`` (Ctrl-C, SIGTERM, divergence, out of memory, a bug): release what the
        callback holds (hooks, open files). The error is raised again afterwards."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class ConsoleProgress(Callback):
    """A progress bar per epoch on a terminal; plain lines when output is a file or a pipe."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width
        self._last_draw = 0.0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def on_train_start(self, run: Run) -> None:
        c = run.config
        self._write(
            f"{c.model} ({run.variant}{width_description(c.width)}) on {run.data.name} [{run.data.source}]: "
            f"{len(run.data.train_y)} train / {len(run.data.test_y)} test images, {run.device_name}, {run.precision}, "
            f"{c.epochs} epochs\n"
        )

    def on_epoch_start(self, run: Run, epoch: int, steps: int) -> None:
        self.steps, self.epoch, self.t0 = steps, epoch, time.perf_counter()

    def on_step_end(self, run: Run, epoch: int, step: int, loss: torch.Tensor) -> None:
        now = time.perf_counter()
        if not self.tty or (now - self._last_draw < 0.2 and step < self.steps):
            return  # the loss is read (a GPU sync) only when the bar is redrawn, at most 5 times a second
        self._last_draw = now
        done = int(self.width * step / max(self.steps, 1))
        rate = step / max(now - self.t0, 1e-9)
        eta = (self.steps - step) / max(rate, 1e-9)
        bar = "#" * done + "." * (self.width - done)
        self._write(
            f"\repoch {epoch}/{run.config.epochs} [{bar}] {step}/{self.steps} loss {float(loss):.4f} {eta:4.0f}s left "
        )

    def on_epoch_end(self, run: Run, row: dict) -> None:
        prefix = "\r" if self.tty else ""
        self._write(
            f"{prefix}epoch {row['epoch']}/{run.config.epochs}: train loss {row['train_loss']:.4f} acc "
            f"{row['train_acc']:.4f} | "
            f"test loss {row['test_loss']:.4f} top1 {row['test_top1']:.4f} top5 {row['test_top5']:.4f} | "
            f"{row['epoch_time_s']:.1f}s, {row['images_per_s']:.0f} img/s" + self._left(run, row) + " " * 10 + "\n"
        )

    @staticmethod
    def _left(run: Run, row: dict) -> str:
        """The run's estimated time to finish, at the pace of its epochs so far."""
        remaining = run.config.epochs - row["epoch"]
        if remaining <= 0:
            return ""
        per_epoch = sum(r["epoch_time_s"] for r in run.state.rows) / max(len(run.state.rows), 1)
        return f" | about {duration_text(per_epoch * remaining)} left"

    def on_train_end(self, run: Run, summary: dict) -> None:
        self._write(
            f"done: {summary['model']} on {summary['dataset']}: test top-1 {summary['test_top1']:.2%}, "
            f"top-5 {summary['test_top5']:.2%}, loss {summary['test_loss']:.4f}, trained "
            f"{summary['train_time_s']:.0f}s "
            f"-> {run.out}\n"
        )
