"""Optional TensorBoard logging (``--tensorboard DIR``; ``pip install 'cnnbench[tensorboard]'``): per-epoch
metrics, the per-layer dynamics recorded by WeightDynamics, and weight and gradient histograms, so runs can be
compared in the tool people already use."""

from __future__ import annotations

from pathlib import Path

from ...engine.callbacks import Callback
from ...engine.run import Run
from ...errors import ConfigError
from .stages import weight_layers

EPOCH_SCALARS = (
    "train_loss",
    "train_acc",
    "test_loss",
    "test_top1",
    "test_top5",
    "val_loss",
    "val_top1",
    "val_top5",
    "lr",
    "images_per_s",
)


def summary_writer(log_dir: str | Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'cnnbench[tensorboard]' "
            "(or pip install tensorboard), or leave --tensorboard out."
        ) from None
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardLogger(Callback):
    """Logs into ``log_dir/<run folder name>``; give it the run's WeightDynamics (placed before it in the callback
    list) to log the per-layer update ratios and gradient norms too."""

    def __init__(self, log_dir: str | Path, dynamics=None):
        self.log_dir = Path(log_dir)
        self.dynamics = dynamics
        self.writer = None
        try:  # fail before training when tensorboard is missing, not after the first epoch
            import tensorboard  # noqa: F401
        except ImportError:
            summary_writer(self.log_dir)

    def on_train_start(self, run: Run) -> None:
        self.writer = summary_writer(self.log_dir / run.out.name)

    def on_epoch_end(self, run: Run, row: dict) -> None:
        epoch = row["epoch"]
        for key in EPOCH_SCALARS:
            if row.get(key) is not None:
                self.writer.add_scalar(f"epoch/{key}", row[key], epoch)
        if self.dynamics is not None:
            for r in self.dynamics.rows:
                if int(r["epoch"]) == epoch:
                    step = int(r["global_step"])
                    self.writer.add_scalar(f"update_ratio/{r['layer']}", float(r["update_ratio"]), step)
                    self.writer.add_scalar(f"grad_norm/{r['layer']}", float(r["grad_norm"]), step)
        for name, module in weight_layers(run.model):
            self.writer.add_histogram(f"weights/{name}", module.weight.detach().float().cpu(), epoch)
            if module.weight.grad is not None:
                self.writer.add_histogram(f"gradients/{name}", module.weight.grad.detach().float().cpu(), epoch)
        self.writer.flush()

    def on_train_end(self, run: Run, summary: dict) -> None:
        self._close()

    def on_exception(self, run: Run, error: BaseException) -> None:
        self._close()  # flush what was logged; the resumed run appends to the same folder

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
