"""Ctrl-C (SIGINT) or SIGTERM (what schedulers and `docker stop` send) during training: finish the current step,
save a checkpoint with the partial epoch, then stop. A second signal stops at once."""

from __future__ import annotations

import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after the checkpoint of an interrupted run was written; ``signal_number`` says which signal."""

    def __init__(self, signal_number: int = signal.SIGINT):
        super().__init__(signal_number)
        self.signal_number = signal_number

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal_number)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


# SIGTERM exists on every platform Python runs on; on Windows only a process's own raise() delivers it.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt:
    def __init__(self):
        self.requested = False
        self.signal_number: int = signal.SIGINT
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.requested:  # second signal: the user (or the scheduler) really wants out now
            raise KeyboardInterrupt
        self.requested = True
        self.signal_number = signum

    def interrupted(self) -> TrainingInterrupted:
        return TrainingInterrupted(self.signal_number)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
